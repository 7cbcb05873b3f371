package disruption

import (
	"strings"
	"testing"
)

// Balanced takes a move only when its share of the pool's cost saved is at
// least half its share of the pool's disruption (Karpenter v1.14, k=2).
func TestBalancedWeighsSavingsAgainstDisruption(t *testing.T) {
	nodes := func(t *testing.T, aPods []Pod) []Node {
		return []Node{
			testNode(t, "a", "gp", "m5.xlarge", od, aPods...),
			testNode(t, "b", "gp", "m5.xlarge", od, pod("b1", 3000, 1)),
			testNode(t, "c", "gp", "m5.xlarge", od, pod("c1", 3000, 1)),
		}
	}
	busy := pods("tiny", 10, 100, 0.1)   // a: disruption 11 of the pool's 15, saves 1/3 of its cost: score 0.45
	light := []Pod{pod("one", 500, 0.5)} // a: disruption 2 of 6, saves 1/3: score 1

	for _, c := range []struct {
		policy string
		aPods  []Pod
		delete bool
	}{
		{WhenEmptyOrUnderutilized, busy, true},
		{Balanced, busy, false},
		{Balanced, light, true},
	} {
		p := testPool("gp")
		p.ConsolidationPolicy = c.policy
		plan := Decide(snapshot(t, []Pool{p}, nodes(t, c.aPods)...), t0, Options{})
		d := decisionFor(plan, "a")
		if c.delete {
			if d == nil || d.Reason != ReasonUnderutilized {
				t.Errorf("%s with %d pods on a: want a consolidated, got %+v; skips %+v", c.policy, len(c.aPods), d, plan.Skipped)
				continue
			}
			// Karpenter's ConsolidationApproved message, only where scored.
			want := ""
			if c.policy == Balanced {
				want = "score 1.00 >= threshold 0.50 (k: 2, savings 33.3%, disruption 33.3%)"
			}
			if d.Approved != want {
				t.Errorf("%s: Approved %q, want %q", c.policy, d.Approved, want)
			}
			continue
		}
		if d != nil {
			t.Errorf("%s with %d pods on a: want a kept, got %s: %s", c.policy, len(c.aPods), d.Reason, d.Message)
			continue
		}
		s := skipFor(plan, "a", ReasonUnderutilized)
		if s == nil || s.Code != SkipBalanced || !strings.Contains(s.Message, "threshold 0.50") {
			t.Errorf("%s: want skip %s with the score, got %+v", c.policy, SkipBalanced, s)
		}
	}
}
