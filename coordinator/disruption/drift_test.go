package disruption

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
	"github.com/dovetail-dev/dovetail/coordinator/drifthash"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

func noConsolidation(p Pool) Pool { p.ConsolidateAfter = nil; return p }

func TestDriftDetection(t *testing.T) {
	base := func() (Node, Pool, NodeClass) {
		n := testNode(t, "a", "gp", "m5.large", od)
		n.SubnetID = "subnet-1"
		n.SecurityGroups = []string{"sg-1", "sg-2"}
		n.Annotations[AnnotationNodePoolHash] = "111"
		n.Annotations[AnnotationNodePoolHashVer] = drifthash.HashVersion
		p := testPool("gp")
		p.TemplateHash = "111"
		c := NodeClass{Name: "default", AMIs: []AMIRef{{ID: "ami-old"}}, Subnets: []string{"subnet-1", "subnet-2"}, SecurityGroups: []string{"sg-2", "sg-1"}}
		return n, p, c
	}
	cases := []struct {
		name   string
		mutate func(n *Node, p *Pool, c *NodeClass)
		want   DriftKind
	}{
		{"matches", func(*Node, *Pool, *NodeClass) {}, ""},
		{"NodePool changed from m5.large to c5.large", func(_ *Node, p *Pool, _ *NodeClass) {
			p.Requirements = append(p.Requirements, corev1.NodeSelectorRequirement{Key: LabelType, Operator: corev1.NodeSelectorOpIn, Values: []string{"c5.large"}})
		}, DriftRequirements},
		{"requirements widened do not drift", func(_ *Node, p *Pool, _ *NodeClass) {
			p.Requirements[2].Values = append(p.Requirements[2].Values, "t")
		}, ""},
		{"generation raised", func(_ *Node, p *Pool, _ *NodeClass) { p.Requirements[3].Values = []string{"5"} }, DriftRequirements},
		{"template hash changed", func(_ *Node, p *Pool, _ *NodeClass) { p.TemplateHash = "222" }, DriftTemplateHash},
		{"hash version differs: not judged", func(n *Node, p *Pool, _ *NodeClass) {
			p.TemplateHash = "222"
			n.Annotations[AnnotationNodePoolHashVer] = "v0"
		}, ""},
		{"AMI no longer resolved", func(_ *Node, _ *Pool, c *NodeClass) { c.AMIs = []AMIRef{{ID: "ami-new"}} }, DriftAMI},
		{"NodeClass resolved nothing: no drift", func(_ *Node, _ *Pool, c *NodeClass) { c.AMIs = nil }, ""},
		{"subnet dropped", func(_ *Node, _ *Pool, c *NodeClass) { c.Subnets = []string{"subnet-2"} }, DriftSubnet},
		{"security groups changed", func(_ *Node, _ *Pool, c *NodeClass) { c.SecurityGroups = []string{"sg-1"} }, DriftSecurityGroup},
		{"nodeclass hash changed", func(n *Node, _ *Pool, c *NodeClass) {
			n.Annotations[AnnotationNodeClassHash] = "1"
			c.Hash = "2"
		}, DriftNodeClassHash},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, p, nc := base()
			c.mutate(&n, &p, &nc)
			got, detail := Drift(&n, &p, &nc)
			if got != c.want {
				t.Fatalf("drift = %q (%s), want %q", got, detail, c.want)
			}
			if got != "" && detail == "" {
				t.Fatalf("drift without detail")
			}
		})
	}
}

func TestTemplateHashStable(t *testing.T) {
	a := drifthash.TemplateHash(drifthash.TemplateStatic{Labels: map[string]string{"a": "1", "b": "2"}, Taints: []corev1.Taint{{Key: "x", Effect: corev1.TaintEffectNoSchedule}, {Key: "a", Effect: corev1.TaintEffectNoSchedule}}})
	b := drifthash.TemplateHash(drifthash.TemplateStatic{Labels: map[string]string{"b": "2", "a": "1"}, Taints: []corev1.Taint{{Key: "a", Effect: corev1.TaintEffectNoSchedule}, {Key: "x", Effect: corev1.TaintEffectNoSchedule}}})
	c := drifthash.TemplateHash(drifthash.TemplateStatic{Labels: map[string]string{"a": "1", "b": "3"}})
	if a != b || a == c || a == "" {
		t.Fatalf("hash not canonical: %s %s %s", a, b, c)
	}
}

func TestDriftInsideBudget(t *testing.T) {
	p := noConsolidation(testPool("gp"))
	p.Budgets = []budget.Budget{{Nodes: "20%"}}
	p.Requirements = append(p.Requirements, corev1.NodeSelectorRequirement{Key: LabelType, Operator: corev1.NodeSelectorOpIn, Values: []string{"c5.large"}})
	var nodes []Node
	for _, name := range []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"} {
		nodes = append(nodes, testNode(t, name, "gp", "m5.large", od, pod(name+"-p", 100, 1)))
	}
	plan := Decide(snapshot(t, []Pool{p}, nodes...), t0, Options{})
	var drifted []string
	for _, d := range plan.Decisions {
		if d.Reason != ReasonDrifted || d.Replacement == nil || d.Replacement.SameAs == "" {
			t.Fatalf("unexpected decision %+v", d)
		}
		drifted = append(drifted, d.Nodes...)
	}
	if len(drifted) != 2 {
		t.Fatalf("20%% of 10 allows 2 drift replacements, got %v", drifted)
	}
	blocked := 0
	for _, s := range plan.Skipped {
		if s.Method == ReasonDrifted && s.Code == SkipBudget {
			blocked++
			if !strings.Contains(s.Message, "c5.large") || !strings.Contains(s.Message, `nodes="20%"`) {
				t.Errorf("skip message should say what drifted and which budget blocked: %s", s.Message)
			}
		}
	}
	if blocked != 8 {
		t.Fatalf("8 drifted nodes must be skipped for the budget, got %d", blocked)
	}
}

func TestExpiry(t *testing.T) {
	p := noConsolidation(testPool("gp"))
	p.ExpireAfter = dur(GeneralPurposeExpireAfter)
	p.TerminationGracePeriod = dur(24 * time.Hour)
	p.Budgets = []budget.Budget{{Nodes: "0"}}
	young := testNode(t, "young", "gp", "m5.large", od)
	old := testNode(t, "old", "gp", "m5.large", od)
	old.Created = t0.Add(-GeneralPurposeExpireAfter - time.Hour)
	ancient := testNode(t, "ancient", "gp", "m5.large", od)
	ancient.Created = t0.Add(-GeneralPurposeExpireAfter - 25*time.Hour)
	plan := Decide(snapshot(t, []Pool{p}, young, old, ancient), t0, Options{})
	if d := decisionFor(plan, "young"); d != nil {
		t.Fatalf("young node disrupted: %+v", d)
	}
	if s := skipFor(plan, "old", ReasonExpired); s == nil || s.Code != SkipBudget {
		t.Fatalf("expired node inside its grace period waits for the budget, got %+v", s)
	}
	d := decisionFor(plan, "ancient")
	if d == nil || !d.Forceful || d.Reason != ReasonExpired || !d.DrainUntil.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("node expired past terminationGracePeriod must go forcefully, got %+v", d)
	}
	// With room in the budget, the expired node goes gracefully.
	p.Budgets = nil
	plan = Decide(snapshot(t, []Pool{p}, young, old), t0, Options{})
	if d := decisionFor(plan, "old"); d == nil || d.Forceful || d.Replacement == nil {
		t.Fatalf("expired node should be replaced inside the default budget, got %+v", d)
	}
}

func TestInterruptionReplacesAtOnceDespiteBudget(t *testing.T) {
	p := testPool("gp")
	p.Budgets = []budget.Budget{{Nodes: "0"}}
	p.TerminationGracePeriod = dur(time.Hour)
	n := testNode(t, "spot", "gp", "m5.large", "spot", pod("x", 100, 1))
	n.Interruption = &Interruption{Kind: string(report.KindInterruption), Seen: t0, Deadline: t0.Add(2 * time.Minute)}
	plan := Decide(snapshot(t, []Pool{p}, n), t0, Options{})
	d := decisionFor(plan, "spot")
	if d == nil || d.Reason != ReasonInterrupted || !d.Forceful || d.Replacement == nil {
		t.Fatalf("interruption must launch a replacement at once, got %+v", d)
	}
	if !d.DrainUntil.Equal(t0.Add(2*time.Minute)) || d.DrainBy != DrainByAgent {
		t.Fatalf("drain until %s by %q, want the notice's deadline %s, drained by the agent", d.DrainUntil, d.DrainBy, t0.Add(2*time.Minute))
	}
	// Scheduled maintenance: the agent waits for the event, the executor
	// drains after the replacement is Ready, within the pool's grace.
	n.Interruption = &Interruption{Kind: string(report.KindMaintenance), Seen: t0, Deadline: t0.Add(48 * time.Hour)}
	d = decisionFor(Decide(snapshot(t, []Pool{p}, n), t0, Options{}), "spot")
	if d == nil || d.DrainBy != "" || !d.DrainUntil.Equal(t0.Add(time.Hour)) {
		t.Fatalf("maintenance: got %+v, want drained by the executor until now+terminationGracePeriod", d)
	}
	// ... but never past the event itself.
	n.Interruption.Deadline = t0.Add(30 * time.Minute)
	d = decisionFor(Decide(snapshot(t, []Pool{p}, n), t0, Options{}), "spot")
	if d == nil || !d.DrainUntil.Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("maintenance 30 min away: got %+v, want the drain bounded by the event", d)
	}
	// A spot notice without a time: EC2's two minutes from when it was seen.
	n.Interruption = &Interruption{Kind: string(report.KindInterruption), Seen: t0}
	d = decisionFor(Decide(snapshot(t, []Pool{p}, n), t0, Options{}), "spot")
	if d == nil || !d.DrainUntil.Equal(t0.Add(SpotNoticeLead)) || d.DrainBy != DrainByAgent {
		t.Fatalf("spot notice without a time: got %+v", d)
	}
}

func TestRepair(t *testing.T) {
	mk := func(n int, bad int, accel bool, badFor time.Duration) *Snapshot {
		var nodes []Node
		for i := range n {
			nd := testNode(t, "n"+string(rune('a'+i)), "gp", "m5.large", od)
			nd.Accelerated = accel
			if i < bad {
				nd.Unhealthy = &Unhealthy{Condition: "KernelReady", Since: t0.Add(-badFor)}
			}
			nodes = append(nodes, nd)
		}
		return snapshot(t, []Pool{noConsolidation(testPool("gp"))}, nodes...)
	}
	count := func(p Plan) int {
		k := 0
		for _, d := range p.Decisions {
			if d.Reason == ReasonUnhealthy {
				if !d.Forceful || d.Replacement == nil {
					t.Fatalf("repair must be forceful with a replacement: %+v", d)
				}
				k++
			}
		}
		return k
	}
	cases := []struct {
		name               string
		nodes, bad         int
		accel              bool
		badFor             time.Duration
		want, wantLimitHit int
	}{
		{"within toleration", 10, 1, false, 20 * time.Minute, 0, 0},
		{"past toleration", 10, 1, false, 31 * time.Minute, 1, 0},
		{"accelerator toleration is 10m", 10, 1, true, 11 * time.Minute, 1, 0},
		{"20% of 10 is 2", 10, 5, false, time.Hour, 2, 3},
		{"small pool may always take one", 3, 3, false, time.Hour, 1, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan := Decide(mk(c.nodes, c.bad, c.accel, c.badFor), t0, Options{})
			if got := count(plan); got != c.want {
				t.Fatalf("repairs = %d, want %d", got, c.want)
			}
			hit := 0
			for _, s := range plan.Skipped {
				if s.Code == SkipRepairLimit {
					hit++
				}
			}
			if hit != c.wantLimitHit {
				t.Fatalf("repair-limit skips = %d, want %d", hit, c.wantLimitHit)
			}
		})
	}
	// Repairs in flight count against the limit.
	s := mk(10, 3, false, time.Hour)
	s.Ledger = map[string]fsm.Disruption{"zz": {NodeName: "zz", NodePool: "gp", Reason: string(ReasonUnhealthy)}}
	if got := count(Decide(s, t0, Options{})); got != 1 {
		t.Fatalf("with one repair in flight, 1 more of 2 allowed, got %d", got)
	}
}
