package disruption

import (
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

func staticPool(name string, replicas int64) Pool {
	p := testPool(name)
	p.Replicas = &replicas
	// A budget that would block every voluntary disruption: scale-down
	// must go ahead anyway (Karpenter: scale operations bypass budgets).
	p.Budgets = []budget.Budget{{Nodes: "0"}}
	return p
}

func claimsOf(nodes []Node, extra ...Claim) []Claim {
	var out []Claim
	for _, n := range nodes {
		out = append(out, Claim{Name: n.NodeClaim, Pool: n.Pool, Resolved: true, Created: n.Created})
	}
	return append(out, extra...)
}

// Karpenter's order: unlaunched claims, then empty nodes, then the
// cheapest to reschedule, do-not-disrupt nodes last.
func TestStaticScaleDownOrder(t *testing.T) {
	dnd := pod("dnd", 100, 0.1)
	dnd.DoNotDisrupt = true
	heavy := pods("heavy", 3, 100, 0.1)
	light := pods("light", 1, 100, 0.1)
	nodes := []Node{
		testNode(t, "n-dnd", "static", "m5.large", "on-demand", dnd),
		testNode(t, "n-heavy", "static", "m5.large", "on-demand", heavy...),
		testNode(t, "n-light", "static", "m5.large", "on-demand", light...),
		testNode(t, "n-empty", "static", "m5.large", "on-demand", daemon("ds")),
	}
	s := snapshot(t, []Pool{staticPool("static", 1)}, nodes...)
	s.Claims = claimsOf(nodes, Claim{Name: "static-pending", Pool: "static", Created: t0})
	p := Decide(s, t0, Options{})
	if len(p.DeleteClaims) != 1 || p.DeleteClaims[0].NodeClaim != "static-pending" {
		t.Fatalf("unlaunched claim should go first: %+v", p.DeleteClaims)
	}
	var got []string
	for _, d := range p.Decisions {
		if d.Reason != ReasonOverprovisioned {
			t.Fatalf("unexpected decision %+v", d)
		}
		if d.Forceful {
			t.Errorf("static scale-down must drain respecting PDBs (not forceful): %+v", d)
		}
		got = append(got, d.Nodes[0])
	}
	want := []string{"n-empty", "n-light", "n-heavy"}
	if len(got) != len(want) {
		t.Fatalf("scale-down picked %v, want %v (5 claims, 1 replica)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("scale-down order %v, want %v", got, want)
		}
	}
}

// Priority and deletion cost weigh in; and a node expiring sooner is
// cheaper to take (lifetime remaining scales the cost).
func TestStaticScaleDownCost(t *testing.T) {
	pricey := pod("pricey", 100, 0.1)
	pricey.EvictionCost = 5
	cheap := pods("cheap", 2, 100, 0.1)
	for i := range cheap {
		cheap[i].EvictionCost = 1
	}
	a := testNode(t, "a", "static", "m5.large", "on-demand", pricey)
	b := testNode(t, "b", "static", "m5.large", "on-demand", cheap...)
	s := snapshot(t, []Pool{staticPool("static", 1)}, a, b)
	s.Claims = claimsOf([]Node{a, b})
	p := Decide(s, t0, Options{})
	if len(p.Decisions) != 1 || p.Decisions[0].Nodes[0] != "b" {
		t.Fatalf("want b (cost 2 < 5), got %+v", p.Decisions)
	}
	// a is nearly expired: 5 × ~0 beats 2 × ~1.
	pool := staticPool("static", 1)
	pool.ExpireAfter = dur(61 * time.Minute)
	b.Created = t0 // fresh: its whole lifetime ahead
	s = snapshot(t, []Pool{pool}, a, b)
	s.Claims = claimsOf([]Node{a, b})
	p = Decide(s, t0, Options{})
	if len(p.Decisions) != 1 || p.Decisions[0].Nodes[0] != "a" {
		t.Fatalf("want a (lifetime almost over), got %+v", p.Decisions)
	}
}

// A drift replacement in flight makes N+1 claims for a moment: the node
// being replaced (in the ledger) is not active, so nothing is scaled down.
// Static pools are never consolidated.
func TestStaticPoolNoConsolidationNoDoubleCount(t *testing.T) {
	old := testNode(t, "old", "static", "m5.large", "on-demand")
	keep := testNode(t, "keep", "static", "m5.large", "on-demand")
	s := snapshot(t, []Pool{staticPool("static", 2)}, old, keep)
	s.Claims = claimsOf([]Node{old, keep}, Claim{Name: "replacement", Pool: "static", Created: t0})
	s.Ledger = map[string]fsm.Disruption{"old": {NodeName: "old", NodeClaim: old.NodeClaim, NodePool: "static", Reason: string(ReasonDrifted), Replacements: []string{"replacement"}, Phase: PhaseReplacing}}
	p := Decide(s, t0, Options{})
	if len(p.DeleteClaims) != 0 || len(p.Decisions) != 0 {
		t.Fatalf("replacement counted as surplus: %+v %+v", p.DeleteClaims, p.Decisions)
	}
	// Without the drift: two empty nodes for two replicas stay.
	s = snapshot(t, []Pool{staticPool("static", 2)}, old, keep)
	s.Claims = claimsOf([]Node{old, keep})
	s.Pools[0].Budgets = []budget.Budget{{Nodes: "100%"}}
	p = Decide(s, t0, Options{})
	if len(p.Decisions) != 0 {
		t.Fatalf("static nodes consolidated: %+v", p.Decisions)
	}
	if sk := skipFor(p, "old", ReasonUnderutilized); sk == nil || sk.Code != SkipStatic {
		t.Fatalf("want skip %s, got %+v", SkipStatic, sk)
	}
}
