package disruption

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/report"
)

// has reports whether an Event starting with prefix and containing every
// part was recorded.
func (f *fakeEvents) has(prefix string, parts ...string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(f.got, func(e string) bool {
		if !strings.HasPrefix(e, prefix) {
			return false
		}
		for _, p := range parts {
			if !strings.Contains(e, p) {
				return false
			}
		}
		return true
	})
}

func (f *fakeEvents) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, e := range f.got {
		if strings.HasPrefix(e, prefix) {
			n++
		}
	}
	return n
}

func TestControllerEventsOfARebalance(t *testing.T) {
	r := newRig(t, snapshot(t, []Pool{spotPool("gp")}, rebalanced(t, "a", t0, pod("x", 100, 1))))
	r.pass(t)
	var repl string
	for k := range r.la.launched {
		repl = "repl-" + k
	}
	for _, want := range []struct {
		prefix string
		parts  []string
	}{
		{"a Normal SpotRebalanceRecommendation: ", []string{"Spot rebalance recommendation was triggered for m5.large in us-east-1a", "disrupting it (RebalanceRecommended)"}},
		{"NodeClaim/a-claim Normal SpotRebalanceRecommendation: ", nil},
		{"a Normal DisruptionTerminating: Disrupting Node: RebalanceRecommended", nil},
		{"NodeClaim/a-claim Normal DisruptionTerminating: Disrupting NodeClaim: RebalanceRecommended", []string{"node a"}},
		{"NodeClaim/" + repl + " Normal DisruptionLaunching: Launching NodeClaim: RebalanceRecommended: replacing a", nil},
		{"NodeClaim/" + repl + " Normal DisruptionWaitingReadiness: Waiting on readiness to continue disruption", []string{"of a is drained"}},
	} {
		if !r.ev.has(want.prefix, want.parts...) {
			t.Errorf("no Event %q %v in\n%s", want.prefix, want.parts, strings.Join(r.ev.got, "\n"))
		}
	}
	// The same notice in the next pass is not announced again.
	r.pass(t)
	if n := r.ev.count("a Normal SpotRebalanceRecommendation"); n != 1 {
		t.Errorf("notice announced %d times, want once", n)
	}
}

func TestControllerEventsOfAnInterruption(t *testing.T) {
	n := testNode(t, "spot", "gp", "m5.large", "spot", pod("x", 100, 1))
	n.Interruption = &Interruption{Kind: string(report.KindInterruption), Action: "terminate", Seen: t0, Deadline: t0.Add(2 * time.Minute)}
	r := newRig(t, snapshot(t, []Pool{spotPool("gp")}, n))
	r.pass(t)
	for _, prefix := range []string{
		"spot Warning SpotInterrupted: Spot interruption warning was triggered: action terminate at 2026-11-23T03:02:00Z",
		"NodeClaim/spot-claim Warning SpotInterrupted: ",
		"spot Warning TerminatingOnInterruption: Interruption triggered termination for the Node",
		"NodeClaim/spot-claim Warning TerminatingOnInterruption: Interruption triggered termination for the NodeClaim",
		"spot Normal DisruptionTerminating: Disrupting Node: Interrupted",
	} {
		if !r.ev.has(prefix) {
			t.Errorf("no Event %q in\n%s", prefix, strings.Join(r.ev.got, "\n"))
		}
	}
}

func TestNoticeEventReasons(t *testing.T) {
	for _, tc := range []struct {
		kind, action, typ, reason, text string
	}{
		{string(report.KindInterruption), "stop", "Warning", karpenterevents.SpotInterrupted, "Spot interruption warning was triggered: action stop"},
		{string(report.KindRebalance), "", "Normal", karpenterevents.SpotRebalanceRecommendation, "Spot rebalance recommendation was triggered"},
		{string(report.KindMaintenance), "instance-stop", "Warning", karpenterevents.InstanceStopping, "Instance is stopping: scheduled event instance-stop"},
		{string(report.KindMaintenance), "instance-retirement", "Warning", karpenterevents.InstanceTerminating, "Instance is terminating: scheduled event instance-retirement"},
		{string(report.KindMaintenance), "system-reboot", "Warning", karpenterevents.InstanceUnhealthy, "An unhealthy warning was triggered for the instance: scheduled event system-reboot"},
		{string(report.KindMaintenance), "system-maintenance", "Warning", karpenterevents.InstanceUnhealthy, "(network work)"},
	} {
		n := testNode(t, "n", "gp", "m5.large", "spot")
		n.Interruption = &Interruption{Kind: tc.kind, Action: tc.action, Message: "network work", Seen: t0, Deadline: t0.Add(time.Hour)}
		typ, reason, msg := NoticeEvent(&n, snapshot(t, nil, n), Plan{})
		if typ != tc.typ || reason != tc.reason || !strings.Contains(msg, tc.text) {
			t.Errorf("%s/%s: %s %s %q, want %s %s containing %q", tc.kind, tc.action, typ, reason, msg, tc.typ, tc.reason, tc.text)
		}
		if !strings.Contains(msg, "no disruption planned") {
			t.Errorf("message should say what Dovetail does: %q", msg)
		}
	}
}

func TestControllerSkipEventsUseKarpentersReasons(t *testing.T) {
	p := spotPool("gp")
	p.Budgets = []budget.Budget{{Nodes: "0", Reasons: []budget.Reason{budget.ReasonDrifted}}, {Nodes: "100%"}}
	guarded := pod("guarded", 100, 1)
	guarded.BlockingPDB = "default/guard"
	wait := testPool("od")
	wait.ConsolidateAfter = dur(time.Hour)
	young := testNode(t, "young", "od", "m5.large", od, pod("y", 100, 1))
	young.LastPodChange = t0.Add(-time.Minute)
	r := newRig(t, snapshot(t, []Pool{p, wait}, rebalanced(t, "held", t0), rebalanced(t, "pdb", t0, guarded), young))
	r.pass(t)
	for _, want := range []string{
		"held Normal DisruptionBlocked: RebalanceRecommended: Budget: ",
		"NodeClaim/held-claim Normal DisruptionBlocked: RebalanceRecommended: Budget: ",
		"NodePool/gp Normal DisruptionBlocked: No allowed disruptions for disruption reason Drifted due to blocking budget",
		"pdb Normal DisruptionBlocked: RebalanceRecommended: PDB: ",
		"young Normal Unconsolidatable: Underutilized: ConsolidateAfter: ",
		"NodeClaim/young-claim Normal Unconsolidatable: ",
	} {
		if !r.ev.has(want) {
			t.Errorf("no Event %q in\n%s", want, strings.Join(r.ev.got, "\n"))
		}
	}
	if !r.ev.has("pdb Normal DisruptionBlocked: ", "PodDisruptionBudget default/guard allows no eviction of pod default/guarded") {
		t.Errorf("the PDB block should name the PDB and the pod: %s", strings.Join(r.ev.got, "\n"))
	}
	if n := r.ev.count("NodePool/gp "); n != 1 {
		t.Errorf("%d NodePool Events, want one per pool and reason", n)
	}
}

// One drainer on a spot notice: the agent drains (it read the notice and
// cordoned the node before reporting it); the executor launches the
// replacement, never drains the node itself, and deletes the NodeClaim only
// once the agent reported its drain ended (or at the notice's deadline).
func TestSpotInterruptionIsDrainedByTheAgentOnly(t *testing.T) {
	n := testNode(t, "spot", "gp", "m5.large", "spot", pod("x", 100, 1))
	n.Interruption = &Interruption{Kind: string(report.KindInterruption), Action: "terminate", Seen: t0, Deadline: t0.Add(2 * time.Minute)}
	r := newRig(t, snapshot(t, []Pool{spotPool("gp")}, n))
	var drained atomic.Bool
	r.agentDrained = func(string) bool { return drained.Load() }
	if err := r.c.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	deleted := func() []string {
		r.la.mu.Lock()
		defer r.la.mu.Unlock()
		return slices.Clone(r.la.deleted)
	}
	deadline := time.Now().Add(5 * time.Second)
	launched := func() int {
		r.la.mu.Lock()
		defer r.la.mu.Unlock()
		return len(r.la.launched)
	}
	for launched() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // ten polls of a drain that has not ended
	if got := deleted(); len(got) != 0 {
		t.Fatalf("NodeClaim deleted %v while the agent still drains", got)
	}
	drained.Store(true)
	r.c.Wait()
	if got := deleted(); !slices.Equal(got, []string{"spot-claim"}) {
		t.Fatalf("deleted %v, want the interrupted node's NodeClaim once its agent drained it", got)
	}
	r.dr.mu.Lock()
	defer r.dr.mu.Unlock()
	if len(r.dr.drained) != 0 {
		t.Fatalf("the coordinator drained %v too: one side drains a spot notice", r.dr.drained)
	}
	if !slices.Equal(r.dr.marked, []string{"spot"}) {
		t.Fatalf("tainted %v, want the interrupted node marked disrupted (its agent may not taint it)", r.dr.marked)
	}
}

// An agent that died mid-drain never reports it done: at the notice's
// deadline the executor deletes the NodeClaim anyway (the instance is gone).
func TestSpotInterruptionWithADeadAgentEndsAtTheDeadline(t *testing.T) {
	n := testNode(t, "spot", "gp", "m5.large", "spot", pod("x", 100, 1))
	n.Interruption = &Interruption{Kind: string(report.KindInterruption), Action: "terminate", Seen: t0, Deadline: t0.Add(2 * time.Minute)}
	r := newRig(t, snapshot(t, []Pool{spotPool("gp")}, n))
	r.agentDrained = func(string) bool { return false }
	r.now = t0.Add(3 * time.Minute) // past the deadline
	r.pass(t)
	r.la.mu.Lock()
	defer r.la.mu.Unlock()
	if !slices.Equal(r.la.deleted, []string{"spot-claim"}) {
		t.Fatalf("deleted %v, want the NodeClaim deleted at the deadline without the agent's report", r.la.deleted)
	}
}
