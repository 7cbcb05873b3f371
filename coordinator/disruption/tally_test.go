package disruption

import (
	"testing"

	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
)

// The eligible-node counts and allowed disruptions Karpenter's metrics
// carry: an empty node is a candidate for Empty, a busy node with no
// budget-blocked fit for Underutilized, a do-not-disrupt node for neither; the
// budget's count is before the nodes already disrupting are taken off.
func TestPlanTally(t *testing.T) {
	pool := testPool("gp")
	pool.Budgets = []budget.Budget{{Nodes: "50%"}}
	pinned := testNode(t, "c", "gp", "m5.large", od)
	pinned.Annotations[AnnotationDoNotDisrupt] = "true"
	notReady := testNode(t, "d", "gp", "m5.large", od, pod("x", 100, 0.1))
	notReady.Ready = false
	s := snapshot(t, []Pool{pool},
		testNode(t, "a", "gp", "m5.large", od, daemon("ds-a")),
		testNode(t, "b", "gp", "m5a.large", od, append(pods("web", 2, 800, 2), daemon("ds-b"))...),
		pinned, notReady)
	p := Decide(s, t0, Options{})
	if got := p.Eligible[ReasonEmpty]; got != 1 {
		t.Errorf("eligible Empty = %d, want 1 (node a); skipped %+v", got, p.Skipped)
	}
	if got := p.Eligible[ReasonDrifted]; got != 0 {
		t.Errorf("eligible Drifted = %d, want 0", got)
	}
	// b and d were candidates, blocked by the budget after candidacy; c
	// (do-not-disrupt) never was one.
	if got := p.Eligible[ReasonUnderutilized]; got != 2 {
		t.Errorf("eligible Underutilized = %d, want 2 (b, d)", got)
	}
	if sk := skipFor(p, "c", ReasonUnderutilized); sk == nil || sk.Code != SkipDoNotDisruptNode {
		t.Errorf("node c: skip %+v, want %s", sk, SkipDoNotDisruptNode)
	}
	// 4 initialized nodes, 50 %: 2, whatever is disrupting already.
	for _, r := range VoluntaryMethods {
		if got := p.AllowedDisruptions["gp"][r]; got != 2 {
			t.Errorf("allowed %s = %d, want 2", r, got)
		}
	}
	// d (NotReady) was disrupting when the pass began; what the pass
	// decides is not counted.
	if got := p.ConsumingBudgets["gp"]; got != 1 {
		t.Errorf("nodes consuming budgets = %d, want 1 (d)", got)
	}
}
