package cloudmetrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dovetail-dev/dovetail/cloud"
)

func TestErrorLabelsAreKarpenters(t *testing.T) {
	for err, want := range map[error]string{
		&cloud.InsufficientCapacityError{}:                           LabelInsufficientCapacity,
		fmt.Errorf("launch: %w", &cloud.InsufficientCapacityError{}): LabelInsufficientCapacity,
		fmt.Errorf("get: %w", cloud.ErrNotFound):                     LabelNodeClaimNotFound,
		fmt.Errorf("%w: no class", ErrNodeClassNotReady):             LabelNodeClassNotReady,
		errors.New("throttled"):                                      "",
	} {
		if got := ErrorLabel(err); got != want {
			t.Errorf("ErrorLabel(%v) = %q, want %q", err, got, want)
		}
	}
}

type listing struct{ err error }

func (l listing) InstanceTypes(context.Context) ([]*cloud.InstanceType, error) {
	return []*cloud.InstanceType{{Name: "m5.large"}}, l.err
}

// Calls are observed by controller, method and provider, errors by their
// Karpenter label; a follower exposes nothing.
func TestObservedCallsOnlyWhileLeading(t *testing.T) {
	leading := true
	m := New(func() bool { return leading })
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	m.Observe(ControllerLifecycle, MethodCreate, 2*time.Second, nil)
	m.Observe(ControllerLifecycle, MethodCreate, time.Second, &cloud.InsufficientCapacityError{})
	now := time.Unix(0, 0)
	it := &InstanceTypes{Src: listing{errors.New("boom")}, Metrics: m, Controller: ControllerProvisioner,
		Now: func() time.Time { now = now.Add(250 * time.Millisecond); return now }}
	if _, err := it.InstanceTypes(context.Background()); err == nil {
		t.Fatal("listing error swallowed")
	}
	want := `
# HELP karpenter_cloudprovider_errors_total Total number of errors returned from CloudProvider calls.
# TYPE karpenter_cloudprovider_errors_total counter
karpenter_cloudprovider_errors_total{controller="nodeclaim.lifecycle",error="InsufficientCapacityError",method="Create",provider="aws"} 1
karpenter_cloudprovider_errors_total{controller="provisioner",error="",method="GetInstanceTypes",provider="aws"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "karpenter_cloudprovider_errors_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m, "karpenter_cloudprovider_duration_seconds"); n != 2 {
		t.Errorf("%d duration series, want 2 (Create, GetInstanceTypes)", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "karpenter_cloudprovider_duration_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			h := s.GetHistogram()
			method := ""
			for _, lp := range s.GetLabel() {
				if lp.GetName() == "method" {
					method = lp.GetValue()
				}
			}
			want := map[string][2]float64{MethodCreate: {2, 3}, MethodGetInstanceTypes: {1, 0.25}}[method]
			if float64(h.GetSampleCount()) != want[0] || h.GetSampleSum() != want[1] {
				t.Errorf("%s: %d calls, %gs; want %v", method, h.GetSampleCount(), h.GetSampleSum(), want)
			}
		}
	}
	leading = false
	if n := testutil.CollectAndCount(m); n != 0 {
		t.Errorf("follower exposes %d series", n)
	}
	var nilM *Metrics
	nilM.Observe(ControllerLifecycle, MethodGet, time.Second, nil) // must not panic
}
