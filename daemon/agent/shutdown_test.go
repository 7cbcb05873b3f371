package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dovetail-dev/dovetail/drain"
	"github.com/dovetail-dev/dovetail/health"
	"github.com/dovetail-dev/dovetail/internal/syncbuffer"
	"github.com/dovetail-dev/dovetail/report"
)

// TestShutdownDuringDrainReportsWhatHappened is issue 15's SIGTERM case:
// the agent is stopped shortly after a spot notice, when all 30 evictions
// have been accepted but the pods are still terminating. The final result
// and log must say that (30 accepted, 30 remaining and terminating, no
// duration computed from a zero time), the last progress report must carry
// it, and the Events still queued are dropped with one line instead of one
// "context canceled" error each.
func TestShutdownDuringDrainReportsWhatHappened(t *testing.T) {
	objs := []runtime.Object{}
	for i := range 30 {
		objs = append(objs, appPod(fmt.Sprintf("web-%02d", i)))
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-9.ec2.internal"},
		Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/" + instanceID}}
	cs := fake.NewClientset(append([]runtime.Object{n}, objs...)...)
	var accepted atomic.Int32
	// Evictions are accepted; the pods stay (inside their grace period).
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		accepted.Add(1)
		return true, nil, nil
	})
	// Events are slow, so some are still queued at shutdown.
	evc := fake.NewClientset()
	evc.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		time.Sleep(100 * time.Millisecond)
		return false, nil, nil
	})
	meta, url := newMetadata(t, instanceID)
	coord := &coordinator{}
	srv := httptest.NewServer(coord.handler())
	defer srv.Close()
	var logs syncbuffer.Buffer
	stateDir := t.TempDir()
	a, err := New(Config{
		Kube: cs, EventKube: evc, IMDSEndpoint: url, IMDSInterval: 50 * time.Millisecond, Coordinators: []string{srv.URL},
		StateDir: stateDir, HealthInterval: time.Hour, Checks: []health.Check{okCheck{}}, DisableRepair: true,
		BootIDFile: filepath.Join(stateDir, "boot_id"),
		Logger:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "agent resolved its node", func() bool { return a.NodeName() != "" })

	deadline := time.Now().Add(2 * time.Minute).UTC().Truncate(time.Second)
	meta.set("spot/instance-action", fmt.Sprintf(`{"action":"terminate","time":%q}`, deadline.Format(time.RFC3339)))
	eventually(t, "all 30 evictions accepted", func() bool { return accepted.Load() == 30 })
	time.Sleep(100 * time.Millisecond) // the drain sees its workers finish
	stopAt := time.Now()
	cancel() // SIGTERM
	<-done
	if took := time.Since(stopAt); took > 3*time.Second {
		t.Errorf("shutdown took %v", took)
	}

	res := a.lastDrain.Load()
	if res == nil {
		t.Fatal("no drain result")
	}
	if res.Complete || res.Accepted() != 30 || res.Remaining() != 30 || res.Terminating() != 30 || res.Stopped == "" {
		t.Fatalf("result: complete=%v accepted=%d remaining=%d terminating=%d stopped=%q",
			res.Complete, res.Accepted(), res.Remaining(), res.Terminating(), res.Stopped)
	}
	if res.Count(drain.OutcomeStuck)+res.Count(drain.OutcomeBlocked)+res.Count(drain.OutcomePending) != 0 {
		t.Fatalf("outcomes: %+v", res.Pods)
	}
	out := logs.String()
	var doneLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `msg="drain done"`) {
			doneLine = l
		}
	}
	t.Logf("%s", doneLine)
	for _, want := range []string{"evictionsAccepted=30", "remaining=30", "terminating=30", "notEvicted=0", "complete=false", "stopped="} {
		if !strings.Contains(doneLine, want) {
			t.Errorf("drain done line lacks %s: %s", want, doneLine)
		}
	}
	if strings.Contains(doneLine, "tookToEmpty") || strings.Contains(out, "-2562047h") {
		t.Errorf("a duration from a zero time: %s", doneLine)
	}
	if c := strings.Count(out, "context canceled"); c > 2 {
		// The drain's own "stopped: context canceled" (drain finished and
		// drain done) is the only mention allowed.
		t.Errorf("%d mentions of context canceled:\n%s", c, out)
	}
	if strings.Contains(out, "could not record event") {
		t.Errorf("event errors at shutdown:\n%s", out)
	}
	if !strings.Contains(out, "events not sent were dropped") {
		t.Errorf("no line about the dropped events:\n%s", out)
	}
	// The last progress report, spooled for the next start, says the same.
	last, ok := coord.find(report.KindDrainProgress, func(r report.Report) bool { return r.Done })
	if !ok {
		files, _ := filepath.Glob(filepath.Join(stateDir, "spool", "*.json"))
		for _, f := range files {
			var e struct {
				Report report.Report `json:"report"`
			}
			if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &e) == nil && e.Report.Kind == report.KindDrainProgress {
				last = e.Report
			}
		}
	}
	if !last.Done || last.PodsEvicted != 30 || last.PodsRemaining != 30 || !strings.Contains(last.Message, "stopped") {
		t.Errorf("last progress report %+v", last)
	}
}
