package disruption

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
)

const od = cloud.CapacityTypeOnDemand

func TestConsolidation(t *testing.T) {
	pinned := func(p Pool, typesIn ...string) Pool {
		p.Requirements = append(p.Requirements, corev1.NodeSelectorRequirement{Key: LabelType, Operator: corev1.NodeSelectorOpIn, Values: typesIn})
		return p
	}
	type want struct {
		node   string
		reason Reason // "" = not disrupted
		skip   string // expected skip code when not disrupted ("" = don't care)
		check  func(t *testing.T, d *Decision)
	}
	cases := []struct {
		name  string
		pool  func(Pool) Pool
		nodes func(t *testing.T) []Node
		now   time.Time
		want  []want
	}{
		{
			name: "empty node is removed, busy node stays",
			nodes: func(t *testing.T) []Node {
				return []Node{
					testNode(t, "a", "gp", "m5.large", od, daemon("ds-a")),
					testNode(t, "b", "gp", "m5a.large", od, append(pods("web", 2, 800, 2), daemon("ds-b"))...),
				}
			},
			want: []want{{node: "a", reason: ReasonEmpty}, {node: "b", skip: SkipNoCheaperFit}},
		},
		{
			name: "underutilized node is deleted when its pods fit elsewhere",
			nodes: func(t *testing.T) []Node {
				return []Node{
					testNode(t, "a", "gp", "m5.xlarge", od, pod("small", 500, 1)),
					testNode(t, "b", "gp", "m5.xlarge", od, pods("big", 2, 1000, 2)...),
				}
			},
			want: []want{
				{node: "a", reason: ReasonUnderutilized, check: func(t *testing.T, d *Decision) {
					if d.Replacement != nil {
						t.Errorf("want a plain delete, got replacement %+v", d.Replacement)
					}
				}},
				{node: "b", skip: SkipReceivingPods},
			},
		},
		{
			name: "two half-empty m5.xlarge become one cheaper node",
			nodes: func(t *testing.T) []Node {
				return []Node{
					testNode(t, "a", "gp", "m5.xlarge", od, pod("a1", 2500, 2)),
					testNode(t, "b", "gp", "m5.xlarge", od, pod("b1", 2500, 2)),
				}
			},
			want: []want{
				{node: "a", reason: ReasonUnderutilized, check: func(t *testing.T, d *Decision) {
					if len(d.Nodes) != 2 || d.Replacement == nil {
						t.Fatalf("want one multi-node replacement of both, got %+v", d)
					}
					if d.Replacement.Price >= 0.384 || d.Savings <= 0 {
						t.Errorf("replacement $%.4f is not cheaper than $0.384", d.Replacement.Price)
					}
					if !d.Replacement.Requests.Fits(Resources{MilliCPU: 5000, Memory: 4 * gi, Pods: 2}) {
						t.Errorf("replacement must hold both pods: %+v", d.Replacement.Requests)
					}
				}},
				{node: "b", reason: ReasonUnderutilized},
			},
		},
		{
			name: "oversized node is replaced by a cheaper type",
			nodes: func(t *testing.T) []Node {
				return []Node{testNode(t, "a", "gp", "m5.2xlarge", od, pod("one", 1000, 2), daemon("ds"))}
			},
			want: []want{{node: "a", reason: ReasonUnderutilized, check: func(t *testing.T, d *Decision) {
				r := d.Replacement
				if r == nil || r.Price >= 0.384 || r.Options[0].InstanceType == "m5.2xlarge" {
					t.Fatalf("want a cheaper type, got %+v", r)
				}
				for i := 1; i < len(r.Options); i++ {
					if r.Options[i].Price < r.Options[i-1].Price {
						t.Fatalf("options not cheapest first")
					}
				}
				if r.Requests.MilliCPU != 1100 {
					t.Errorf("replacement must carry the DaemonSet too: %+v", r.Requests)
				}
			}}},
		},
		{
			name: "never replaced by the same type or the same price",
			pool: func(p Pool) Pool { return pinned(p, "m5.large", "m6i.large") }, // m6i.large costs the same
			nodes: func(t *testing.T) []Node {
				return []Node{testNode(t, "a", "gp", "m5.large", od, pod("one", 300, 1))}
			},
			want: []want{{node: "a", skip: SkipNoCheaperFit}},
		},
		{
			name: "minimum savings annotation holds back a small saving",
			pool: func(p Pool) Pool { p.MinSavings = 0.15; return p },
			nodes: func(t *testing.T) []Node {
				return []Node{testNode(t, "a", "gp", "m5.large", od, pod("one", 1500, 5))}
			},
			want: []want{{node: "a", skip: SkipMinSavings}},
		},
		{
			name: "without minimum savings the same node is replaced",
			nodes: func(t *testing.T) []Node {
				return []Node{testNode(t, "a", "gp", "m5.large", od, pod("one", 1500, 5))}
			},
			want: []want{{node: "a", reason: ReasonUnderutilized}},
		},
		{
			name: "consolidateAfter not reached",
			nodes: func(t *testing.T) []Node {
				n := testNode(t, "a", "gp", "m5.large", od)
				n.LastPodChange = t0.Add(-10 * time.Second)
				return []Node{n}
			},
			want: []want{{node: "a", skip: SkipConsolidateAfter}},
		},
		{
			name:  "consolidateAfter Never disables",
			pool:  func(p Pool) Pool { p.ConsolidateAfter = nil; return p },
			nodes: func(t *testing.T) []Node { return []Node{testNode(t, "a", "gp", "m5.large", od)} },
			want:  []want{{node: "a", skip: SkipDisabled}},
		},
		{
			name: "WhenEmpty removes empty nodes only",
			pool: func(p Pool) Pool { p.ConsolidationPolicy = WhenEmpty; return p },
			nodes: func(t *testing.T) []Node {
				return []Node{testNode(t, "a", "gp", "m5.large", od), testNode(t, "b", "gp", "m5.2xlarge", od, pod("x", 100, 1))}
			},
			want: []want{{node: "a", reason: ReasonEmpty}, {node: "b", skip: SkipPolicy}},
		},
		{
			name: "do-not-disrupt pod, do-not-disrupt node, PDB and initializing are never disrupted",
			nodes: func(t *testing.T) []Node {
				p := pod("precious", 100, 1)
				p.DoNotDisrupt = true
				a := testNode(t, "a", "gp", "m5.2xlarge", od, p)
				b := testNode(t, "b", "gp", "m5.2xlarge", od)
				b.Annotations[AnnotationDoNotDisrupt] = "true"
				q := pod("guarded", 100, 1)
				q.BlockingPDB = "default/guard"
				c := testNode(t, "c", "gp", "m5.2xlarge", od, q)
				d := testNode(t, "d", "gp", "m5.2xlarge", od)
				d.Initialized = false
				return []Node{a, b, c, d}
			},
			want: []want{
				{node: "a", skip: SkipDoNotDisruptPod}, {node: "b", skip: SkipDoNotDisruptNode},
				{node: "c", skip: SkipPDB}, {node: "d", skip: SkipInitializing},
			},
		},
		{
			name: "business hours: underutilized blocked, empty removed",
			pool: func(p Pool) Pool {
				p.Budgets = []budget.Budget{
					{Nodes: "0", Reasons: []Reason{ReasonUnderutilized, ReasonDrifted}, Schedule: "0 9 * * 1-5", Duration: 8 * time.Hour},
					{Nodes: "100%", Reasons: []Reason{ReasonEmpty}},
					{Nodes: "10%"},
				}
				return p
			},
			now: t0.Add(7 * time.Hour), // Monday 10:00 UTC
			nodes: func(t *testing.T) []Node {
				return []Node{
					testNode(t, "e1", "gp", "m5.large", od), testNode(t, "e2", "gp", "m5.large", od),
					testNode(t, "u", "gp", "m5.2xlarge", od, pod("x", 100, 1)),
				}
			},
			want: []want{{node: "e1", reason: ReasonEmpty}, {node: "e2", reason: ReasonEmpty}, {node: "u", skip: SkipBudget}},
		},
		{
			name: "business hours: underutilized allowed in the evening",
			pool: func(p Pool) Pool {
				p.Budgets = []budget.Budget{
					{Nodes: "0", Reasons: []Reason{ReasonUnderutilized, ReasonDrifted}, Schedule: "0 9 * * 1-5", Duration: 8 * time.Hour},
					{Nodes: "100%", Reasons: []Reason{ReasonEmpty}},
					{Nodes: "10%"},
				}
				return p
			},
			now: t0.Add(15 * time.Hour), // Monday 18:00 UTC
			nodes: func(t *testing.T) []Node {
				return []Node{testNode(t, "u", "gp", "m5.2xlarge", od, pod("x", 100, 1))}
			},
			want: []want{{node: "u", reason: ReasonUnderutilized}},
		},
		{
			name: "spot to spot needs enough cheaper types",
			pool: func(p Pool) Pool {
				p.Requirements[0].Values = []string{cloud.CapacityTypeSpot}
				return pinned(p, "m5.2xlarge", "m5.xlarge", "m5.large", "m6i.large")
			},
			nodes: func(t *testing.T) []Node {
				return []Node{testNode(t, "a", "gp", "m5.2xlarge", cloud.CapacityTypeSpot, pod("x", 500, 1))}
			},
			want: []want{{node: "a", skip: SkipSpotFlexibility}},
		},
		{
			name: "spot to spot with a wide pool is allowed",
			pool: func(p Pool) Pool { p.Requirements[0].Values = []string{cloud.CapacityTypeSpot}; return p },
			nodes: func(t *testing.T) []Node {
				return []Node{testNode(t, "a", "gp", "m5.2xlarge", cloud.CapacityTypeSpot, pod("x", 500, 1))}
			},
			want: []want{{node: "a", reason: ReasonUnderutilized, check: func(t *testing.T, d *Decision) {
				if n := distinctTypes(d.Replacement.Options, cloud.CapacityTypeSpot); n < 15 {
					t.Errorf("only %d spot types offered", n)
				}
			}}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := testPool("gp")
			if c.pool != nil {
				p = c.pool(p)
			}
			now := c.now
			if now.IsZero() {
				now = t0
			}
			plan := Decide(snapshot(t, []Pool{p}, c.nodes(t)...), now, Options{})
			for _, w := range c.want {
				d := decisionFor(plan, w.node)
				if w.reason == "" {
					if d != nil {
						t.Errorf("node %s: want not disrupted, got %s: %s", w.node, d.Reason, d.Message)
						continue
					}
					if w.skip != "" {
						s := skipFor(plan, w.node, ReasonUnderutilized)
						if s == nil {
							s = skipFor(plan, w.node, ReasonEmpty)
						}
						if s == nil || s.Code != w.skip {
							t.Errorf("node %s: want skip %s, got %+v", w.node, w.skip, s)
						} else if strings.TrimSpace(s.Message) == "" {
							t.Errorf("node %s: skip without a message", w.node)
						}
					}
					continue
				}
				if d == nil {
					t.Errorf("node %s: want %s, not disrupted; skips: %+v", w.node, w.reason, plan.Skipped)
					continue
				}
				if d.Reason != w.reason {
					t.Errorf("node %s: reason %s, want %s", w.node, d.Reason, w.reason)
				}
				if w.check != nil {
					w.check(t, d)
				}
			}
		})
	}
}

func TestPendingPodsKeepRoom(t *testing.T) {
	p := testPool("gp")
	a := testNode(t, "a", "gp", "m5.xlarge", od, pod("small", 1500, 1))
	b := testNode(t, "b", "gp", "m5.xlarge", od, pod("big", 2000, 2))
	s := snapshot(t, []Pool{p}, a, b)
	if d := decisionFor(Decide(s, t0, Options{}), "a"); d == nil || d.Replacement != nil {
		t.Fatalf("without pending pods a should be deleted, got %+v", d)
	}
	s.PendingPods = []Pod{pod("pending", 1000, 1)}
	d := decisionFor(Decide(s, t0, Options{}), "a")
	if d != nil && d.Replacement == nil {
		t.Fatalf("a pending pod needs b's room: a must not be deleted outright, got %s", d.Message)
	}
}

func TestDisruptingNodesCountAgainstBudget(t *testing.T) {
	p := testPool("gp")
	p.Budgets = []budget.Budget{{Nodes: "2"}}
	var nodes []Node
	for _, name := range []string{"e1", "e2", "e3", "e4"} {
		nodes = append(nodes, testNode(t, name, "gp", "m5.large", od))
	}
	nodes[3].Deleting = true
	plan := Decide(snapshot(t, []Pool{p}, nodes...), t0, Options{})
	got := 0
	for _, d := range plan.Decisions {
		got += len(d.Nodes)
	}
	if got != 1 {
		t.Fatalf("budget 2 with one node deleting allows 1 more, got %d: %+v", got, plan.Decisions)
	}
	if s := skipFor(plan, "e3", ReasonEmpty); s == nil || s.Code != SkipBudget {
		t.Fatalf("e3 should be skipped for the budget, got %+v", s)
	}
}

func TestReplacementHonoursNodePoolSelector(t *testing.T) {
	p := pod("pinned", 500, 1)
	p.NodeSelector = map[string]string{LabelNodePool: "gp"}
	plan := Decide(snapshot(t, []Pool{testPool("gp")}, testNode(t, "a", "gp", "m5.2xlarge", od, p)), t0, Options{})
	if d := decisionFor(plan, "a"); d == nil || d.Replacement == nil {
		t.Fatalf("a pod selecting its NodePool can move to a cheaper node of that pool: %+v", plan.Skipped)
	}
}

// TestReplacementUsesTheClassTypes: a consolidation replacement for a node
// of an EC2NodeClass chooses only among the types the class can run
// (Snapshot.ClassInstanceTypes, provisioning's narrowing), never the
// shared list's cheapest type the class excludes.
func TestReplacementUsesTheClassTypes(t *testing.T) {
	node := func() Node { return testNode(t, "a", "gp", "m5.2xlarge", od, pod("small", 500, 1)) }
	shared := Decide(snapshot(t, []Pool{testPool("gp")}, node()), t0, Options{})
	d := decisionFor(shared, "a")
	if d == nil || d.Replacement == nil || len(d.Replacement.Options) == 0 {
		t.Fatalf("want a cheaper replacement from the shared list: %+v", shared.Skipped)
	}
	excluded := d.Replacement.Options[0].InstanceType
	var narrowed []cloud.InstanceType
	for _, it := range types(t) {
		if it.Name != excluded {
			narrowed = append(narrowed, it)
		}
	}
	s := snapshot(t, []Pool{testPool("gp")}, node())
	s.ClassInstanceTypes = map[string][]cloud.InstanceType{"default": narrowed}
	plan := Decide(s, t0, Options{})
	d = decisionFor(plan, "a")
	if d == nil || d.Replacement == nil || len(d.Replacement.Options) == 0 {
		t.Fatalf("the class still has cheaper types than m5.2xlarge: %+v", plan.Skipped)
	}
	for _, o := range d.Replacement.Options {
		if o.InstanceType == excluded {
			t.Fatalf("replacement option %+v is a type class default excludes", o)
		}
	}
	// A class the snapshot has no list for keeps the shared list.
	s = snapshot(t, []Pool{testPool("gp")}, node())
	s.ClassInstanceTypes = map[string][]cloud.InstanceType{"other": narrowed}
	if d := decisionFor(Decide(s, t0, Options{}), "a"); d == nil || d.Replacement == nil || d.Replacement.Options[0].InstanceType != excluded {
		t.Fatalf("a pool of a class without its own list should choose from the shared list (%s first): %+v", excluded, d)
	}
}
