package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator"
	"github.com/dovetail-dev/dovetail/coordinator/cloudmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/provisioning"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
	"github.com/dovetail-dev/dovetail/report"
)

// fsmStore is a replica store over a real fsm.FSM without Raft: commands
// are applied in order as Raft would.
type fsmStore struct {
	mu    sync.Mutex
	f     *fsm.FSM
	index uint64
}

func newFSMStore() *fsmStore { return &fsmStore{f: fsm.New(slog.Default())} }

func (s *fsmStore) ApplyInTerm(_ context.Context, _ uint64, c fsm.Command) error {
	b, err := fsm.Encode(c)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	if res := s.f.Apply(&raft.Log{Index: s.index, Type: raft.LogCommand, Data: b}); res != nil {
		if err, ok := res.(error); ok {
			return err
		}
	}
	return nil
}
func (s *fsmStore) View(fn func(*fsm.State)) { s.f.View(fn) }
func (s *fsmStore) State() *fsm.State        { return s.f.State() }
func (s *fsmStore) FSM() *fsm.FSM            { return s.f }

func interruption(node, id string, deadline time.Time) fsm.ReportReceived {
	return fsm.ReportReceived{Report: report.Report{ID: id, Kind: report.KindInterruption, NodeName: node,
		Action: "terminate", Deadline: deadline, ObservedAt: deadline.Add(-2 * time.Minute)}, ReceivedAt: deadline.Add(-2 * time.Minute)}
}

func TestWatchReportsWakesOnInterruptionOnly(t *testing.T) {
	s := newFSMStore()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() { watchReports(ctx, s, wake); close(done) }()

	// A command that touches no report-driven state does not wake.
	if err := s.ApplyInTerm(ctx, 1, fsm.Noop{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyInTerm(ctx, 1, fsm.ICEMark{Entries: []fsm.ICEEntry{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: "spot", Until: time.Now().Add(time.Minute)}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
		t.Fatal("woken by a command that changes no node report")
	case <-time.After(200 * time.Millisecond):
	}
	// A spot notice wakes the planner.
	if err := s.ApplyInTerm(ctx, 1, interruption("node-a", "r1", time.Now().Add(2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("an interruption report did not wake the disruption planner")
	}
	// The same report delivered again (deduplicated) does not.
	if err := s.ApplyInTerm(ctx, 1, interruption("node-a", "r1", time.Now().Add(2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
		t.Fatal("woken by a duplicate report")
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	<-done
}

type fakeTypes struct{ its []*cloud.InstanceType }

func (f fakeTypes) InstanceTypes(context.Context) ([]*cloud.InstanceType, error) { return f.its, nil }

func TestReplacementNameIsStableAndKarpenterShaped(t *testing.T) {
	a, b := ReplacementName("burst", "k1"), ReplacementName("burst", "k1")
	if a != b {
		t.Fatalf("same key gave %s and %s", a, b)
	}
	if ReplacementName("burst", "k2") == a {
		t.Fatal("different keys gave the same name")
	}
	suffix, ok := strings.CutPrefix(a, "burst-")
	if !ok || len(suffix) != 5 || strings.Trim(suffix, "abcdefghijklmnopqrstuvwxyz") != "" {
		t.Fatalf("name %q is not <pool>-<5 lowercase letters>", a)
	}
}

func TestRestrictToOptions(t *testing.T) {
	reqs := []scheduling.Requirement{
		{Key: scheduling.LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{"m5.large", "m5.xlarge"}},
		{Key: scheduling.LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}},
		{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}},
	}
	got := restrictTo(reqs, []cloud.LaunchOption{
		{InstanceType: "c6a.large", Zone: "b", CapacityType: "on-demand"},
		{InstanceType: "c5.large", Zone: "a", CapacityType: "on-demand"},
	})
	want := map[string][]string{
		scheduling.LabelInstanceType: {"c5.large", "c6a.large"}, scheduling.LabelZone: {"a", "b"},
		scheduling.LabelCapacityType: {"on-demand"}, "kubernetes.io/arch": {"amd64"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d requirements %+v, want %d", len(got), got, len(want))
	}
	for _, r := range got {
		if !slices.Equal(r.Values, want[r.Key]) {
			t.Errorf("%s = %v, want %v", r.Key, r.Values, want[r.Key])
		}
	}
}

func TestTermRegistererReleasesForTheNextTerm(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "dovetail_test_total", Help: "test"})
	}
	first := newTermRegisterer(reg)
	if err := first.Register(c()); err != nil {
		t.Fatal(err)
	}
	second := newTermRegisterer(reg)
	var are prometheus.AlreadyRegisteredError
	if err := second.Register(c()); !errors.As(err, &are) {
		t.Fatalf("while the first term runs, a second registration = %v, want AlreadyRegisteredError", err)
	}
	first.release()
	if err := second.Register(c()); err != nil {
		t.Fatalf("after the term ended: %v", err)
	}
	newTermRegisterer(nil).MustRegister(c()) // no registry: a no-op, never a panic
}

func TestAgentDrainDoneIsTheNoticesDrain(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := newFSMStore()
	done := agentDrainDone(s)
	if done("spot-1") {
		t.Fatal("no status: done")
	}
	if err := s.ApplyInTerm(context.Background(), 1, interruption("spot-1", "r1", now.Add(2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	if done("spot-1") {
		t.Fatal("notice without a drain report: done")
	}
	var at time.Time
	s.View(func(st *fsm.State) { at = st.Nodes["spot-1"].Interruption.ObservedAt })
	for i, c := range []struct {
		observed time.Time
		finished bool
		want     bool
	}{
		{at.Add(-time.Minute), true, false}, // an earlier drain's end
		{at.Add(time.Second), false, false}, // this notice's drain, running
		{at.Add(2 * time.Second), true, true},
	} {
		r := report.Report{ID: fmt.Sprintf("d%d", i), Kind: report.KindDrainProgress, NodeName: "spot-1", ObservedAt: c.observed, Done: c.finished}
		if err := s.ApplyInTerm(context.Background(), 1, fsm.ReportReceived{Report: r, ReceivedAt: c.observed}); err != nil {
			t.Fatal(err)
		}
		if got := done("spot-1"); got != c.want {
			t.Errorf("drain report %d (observed %s, done %v): done %v, want %v", i, c.observed.Sub(at), c.finished, got, c.want)
		}
	}
}

func TestComponentsWithoutKubernetesOrCloud(t *testing.T) {
	if _, err := Components(nil, Options{}); err == nil {
		t.Fatal("a nil runtime was accepted")
	}
	rt := &coordinator.Runtime{Store: &raftnode.Node{}, Registry: prometheus.NewRegistry()}
	// No Kubernetes: nothing to run, and no error (replication-only replicas).
	if comps, err := Components(rt, Options{}); err != nil || len(comps) != 0 {
		t.Fatalf("without Kubernetes: %v, %v", comps, err)
	}
	// Kubernetes but no cloud: NodePool status, the NodeClaim consistency
	// check, the karpenter_* metrics, and the built-in NodePools (when on).
	kube := &rest.Config{Host: "https://127.0.0.1:1"}
	if comps, err := Components(rt, Options{RESTConfig: kube}); err != nil || len(comps) != 3 || comps[0].Name != "nodepool-status" ||
		comps[1].Name != "nodeclaim-consistency" || comps[2].Name != "karpenter-metrics" {
		t.Fatalf("without a cloud and built-ins off: %v, %v", comps, err)
	}
	o := Options{RESTConfig: kube}
	o.Builtin.GeneralPurpose = true
	comps, err := Components(rt, o)
	if err != nil || len(comps) != 4 || comps[0].Name != "builtin-nodepools" || comps[1].Name != "nodepool-status" {
		t.Fatalf("without a cloud, built-ins on: %v, %v", comps, err)
	}
}

func TestExplainWithoutALeaderHasNoPlan(t *testing.T) {
	x := NewExplain()
	if _, _, ok := x.LatestPlan(); ok {
		t.Fatal("an unbound Explain has a plan")
	}
	x.bind(&disrupter{}) // bound, but no term running
	if _, _, ok := x.LatestPlan(); ok {
		t.Fatal("a replica that does not lead has a plan")
	}
	hs := x.Handlers()
	for _, p := range []string{disruption.ExplainNodePath, disruption.ExplainPodPath, disruption.SnapshotPath, disruption.PlanPath} {
		if hs[p] == nil {
			t.Errorf("no handler for %s", p)
		}
	}
}

// classAwareTypes also narrows per class and counts reservations.
type classAwareTypes struct {
	fakeTypes
	counts map[string]int
}

func (f classAwareTypes) CompatibleInstanceTypes(_ context.Context, _ *awsv1.EC2NodeClass, its []*cloud.InstanceType) ([]*cloud.InstanceType, error) {
	return its[:1], nil
}
func (f classAwareTypes) ReservationAvailable(id, _, _ string) bool { return f.counts[id] > 0 }
func (f classAwareTypes) ReservationAvailability(id string) (int, bool) {
	n, ok := f.counts[id]
	return n, ok
}

// The provisioner's measured source still answers the per-class and
// reservation questions (the metrics wrapper alone hid them, so every
// class planned from the shared list and every reservation as unlimited).
func TestProvisionerTypesKeepClassAndReservationAnswers(t *testing.T) {
	src := classAwareTypes{fakeTypes: fakeTypes{its: []*cloud.InstanceType{{Name: "m5.large"}, {Name: "c5.large"}}}, counts: map[string]int{"cr-a": 2}}
	ice := &cloudTypes{src: src}
	var got provisioning.InstanceTypeProvider = &measuredTypes{cloudTypes: ice,
		measured: &cloudmetrics.InstanceTypes{Src: ice, Metrics: cloudmetrics.New(nil)}}
	if its, err := got.InstanceTypes(context.Background()); err != nil || len(its) != 2 {
		t.Fatalf("InstanceTypes = %v, %v", its, err)
	}
	classes, err := provisioning.ClassInstanceTypes(context.Background(), got, []*awsv1.EC2NodeClass{{ObjectMeta: metav1.ObjectMeta{Name: "c"}}}, src.its)
	if err != nil || len(classes["c"]) != 1 {
		t.Errorf("per-class types = %v, %v: want the source's narrowing", classes, err)
	}
	rc, ok := got.(provisioning.ReservationCounter)
	if !ok {
		t.Fatal("the provisioner's source does not count reservations")
	}
	if n, known := rc.ReservationAvailability("cr-a"); n != 2 || !known {
		t.Errorf("ReservationAvailability = %d, %v; want 2, true", n, known)
	}
	if _, ok := got.(provisioning.ReservationAvailability); !ok {
		t.Error("the provisioner's source does not answer ReservationAvailable")
	}
}
