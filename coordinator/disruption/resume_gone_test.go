package disruption

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/drain"
)

// A leader lost mid-way through a multi-node Empty disruption, after some
// NodeClaims were deleted (their Nodes gone with them): the next leader
// resumes the ledger entry and must finish it, not fail on the missing
// Node for ever. TestAutoMode's scale-down failed this way under load
// ("drain ip-…: taint node ip-…: nodes \"ip-…\" not found" every pass,
// the entry and its nodes never released, empty nodes never consolidated).
// The real drainer runs against a clientset that holds only the node left.
func TestControllerResumeFinishesWhenANodeIsAlreadyGone(t *testing.T) {
	for _, phase := range []string{PhaseTerminating, PhaseDraining} {
		t.Run(phase, func(t *testing.T) {
			s := snapshot(t, []Pool{testPool("gp")}, testNode(t, "left", "gp", "m5.large", od))
			r := newRig(t, s)
			kube := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "left"}})
			dr, err := drain.New(kube, drain.Options{RetryInterval: 10 * time.Millisecond, PollInterval: 10 * time.Millisecond, Registry: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			r.c.drainer = dr
			for _, n := range []string{"gone", "left"} {
				if err := r.l.Apply(context.Background(), fsm.DisruptionBegin{Disruption: fsm.Disruption{NodeName: n, NodeClaim: n + "-claim", NodePool: "gp",
					Reason: string(ReasonEmpty), Since: t0.Add(-time.Minute), Phase: phase}}); err != nil {
					t.Fatal(err)
				}
			}
			r.pass(t)
			if got := r.l.f.State().Disruptions; len(got) != 0 {
				t.Fatalf("ledger not closed after the resume: %+v", got)
			}
			if !slices.Equal(r.la.deleted, []string{"gone-claim", "left-claim"}) {
				t.Fatalf("deleted %v, want both NodeClaims", r.la.deleted)
			}
			n, err := kube.CoreV1().Nodes().Get(context.Background(), "left", metav1.GetOptions{})
			if err != nil || !n.Spec.Unschedulable {
				t.Fatalf("the node still there was not drained: %+v %v", n.Spec, err)
			}
		})
	}
}

// A leader whose DisruptionBegin commit reported an error although it
// committed (Raft's "leadership lost while committing log") returned
// before its Events; the disruption then ran resumed from the ledger and
// the node never got DisruptionTerminating or TerminatingOnInterruption
// (TestAutoMode's spot interruption failed so twice under leader churn).
// The resume announces it, once however many passes resume it.
func TestResumedDisruptionIsAnnouncedOnce(t *testing.T) {
	s := snapshot(t, []Pool{noConsolidation(testPool("gp"))}, testNode(t, "n1", "gp", "m5.large", od, pod("x", 100, 1)))
	r := newRig(t, s)
	// Launches keep failing: the forceful disruption stays in the ledger
	// and every pass resumes it.
	r.c.launcher = failingLauncher{r.la}
	if err := r.l.Apply(context.Background(), fsm.DisruptionBegin{Disruption: fsm.Disruption{NodeName: "n1", NodeClaim: "n1-claim", NodePool: "gp",
		Reason: string(ReasonInterrupted), Since: t0, Phase: PhaseReplacing}}); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	r.pass(t)
	count := map[string]int{}
	r.ev.mu.Lock()
	for _, e := range r.ev.got {
		for _, want := range []string{"n1 Normal DisruptionTerminating: Disrupting Node: Interrupted", "n1 Warning TerminatingOnInterruption",
			"NodeClaim/n1-claim Normal DisruptionTerminating", "NodeClaim/n1-claim Warning TerminatingOnInterruption"} {
			if strings.HasPrefix(e, want) {
				count[want]++
			}
		}
	}
	r.ev.mu.Unlock()
	if len(count) != 4 {
		t.Fatalf("start Events of the resumed disruption: %v (all: %q)", count, r.ev.got)
	}
	for k, n := range count {
		if n != 1 {
			t.Errorf("%q sent %d times over two resuming passes, want once", k, n)
		}
	}
}

type failingLauncher struct{ *fakeLauncher }

func (failingLauncher) Launch(context.Context, string, Replacement) (string, error) {
	return "", errors.New("InsufficientInstanceCapacity everywhere")
}
