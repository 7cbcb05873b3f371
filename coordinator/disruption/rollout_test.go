package disruption

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// fleet is a tiny stand-in for the controller + cluster: it applies a
// plan's decisions to the ledger, brings replacements up and retires nodes.
type fleet struct {
	t       *testing.T
	s       *Snapshot
	now     time.Time
	seq     int
	broken  bool // replacements never become Ready
	maxBusy int
}

func (f *fleet) apply(p Plan) {
	for _, c := range p.Commands {
		if rs, ok := c.(fsm.RolloutSet); ok {
			f.s.Rollouts[rs.Rollout.NodePool] = rs.Rollout
		}
	}
	for _, d := range p.Decisions {
		for _, name := range d.Nodes {
			f.seq++
			f.s.Ledger[name] = fsm.Disruption{NodeName: name, NodePool: d.Pool, Reason: string(d.Reason), Since: f.now,
				Replacements: []string{fmt.Sprintf("repl-%d", f.seq)}}
		}
	}
	if len(f.s.Ledger) > f.maxBusy {
		f.maxBusy = len(f.s.Ledger)
	}
}

// progress: Ready replacements take over, old nodes go away.
func (f *fleet) progress() {
	for name, d := range f.s.Ledger {
		if f.broken {
			continue
		}
		for _, r := range d.Replacements {
			f.s.ReplacementReady[r] = true
			n := testNode(f.t, r, d.NodePool, "m5.large", od, pod(r+"-moved", 100, 1))
			n.ImageID = "ami-new"
			f.s.Nodes = append(f.s.Nodes, n)
		}
		f.s.Nodes = slices.DeleteFunc(f.s.Nodes, func(n Node) bool { return n.Name == name })
		delete(f.s.Ledger, name)
	}
}

func newFleet(t *testing.T, n int) *fleet {
	p := noConsolidation(testPool("gp"))
	p.Budgets = []budget.Budget{{Nodes: "20%"}}
	var nodes []Node
	for i := range n {
		nodes = append(nodes, testNode(t, fmt.Sprintf("old-%02d", i), "gp", "m5.large", od, pod(fmt.Sprintf("app-%02d", i), 100, 1)))
	}
	s := snapshot(t, []Pool{p}, nodes...)
	s.Ledger = map[string]fsm.Disruption{}
	s.Rollouts = map[string]fsm.Rollout{}
	s.ReplacementReady = map[string]bool{}
	return &fleet{t: t, s: s, now: t0}
}

func TestRolloutRollsWholePoolInsideBudget(t *testing.T) {
	f := newFleet(t, 10)
	if p := Decide(f.s, f.now, Options{}); len(p.Decisions) != 0 || len(p.Rollouts) != 0 {
		t.Fatalf("nothing to roll yet: %+v", p)
	}
	f.s.NodeClasses[0].AMIs = []AMIRef{{ID: "ami-new", Arch: "amd64"}} // a new release behind al2023@latest
	for step := 0; step < 20; step++ {
		f.now = f.now.Add(time.Minute)
		plan := Decide(f.s, f.now, Options{})
		f.apply(plan)
		r := f.s.Rollouts["gp"]
		if r.TargetAMI != "ami-new" || r.Paused {
			t.Fatalf("step %d: rollout %+v", step, r)
		}
		if step == 3 {
			// Leader failover: a new leader starts from the Raft state only.
			f.s = cloneForFailover(f.s)
		}
		f.progress()
	}
	if f.maxBusy > 2 {
		t.Fatalf("20%% of 10 allows 2 at once, saw %d", f.maxBusy)
	}
	plan := Decide(f.s, f.now.Add(time.Minute), Options{})
	f.apply(plan)
	done, total, state := RolloutProgress(f.s.Rollouts["gp"])
	if done != 10 || total != 10 || state != "Complete" {
		t.Fatalf("rollout %d/%d %s, want 10/10 Complete: %+v", done, total, state, f.s.Rollouts["gp"])
	}
	for _, n := range f.s.Nodes {
		if n.ImageID != "ami-new" {
			t.Fatalf("node %s still on %s", n.Name, n.ImageID)
		}
	}
}

// cloneForFailover keeps only what a new leader would see: the cluster and
// the Raft state (ledger, rollouts).
func cloneForFailover(s *Snapshot) *Snapshot {
	c := *s
	c.Nodes = slices.Clone(s.Nodes)
	c.Ledger = map[string]fsm.Disruption{}
	for k, v := range s.Ledger {
		c.Ledger[k] = v
	}
	c.Rollouts = map[string]fsm.Rollout{}
	for k, v := range s.Rollouts {
		c.Rollouts[k] = v
	}
	return &c
}

func TestRolloutSurvivesFailoverWithoutRestarting(t *testing.T) {
	f := newFleet(t, 5)
	f.s.NodeClasses[0].AMIs = []AMIRef{{ID: "ami-new"}}
	for range 2 {
		f.now = f.now.Add(time.Minute)
		f.apply(Decide(f.s, f.now, Options{}))
		f.progress()
	}
	before := f.s.Rollouts["gp"]
	f.now = f.now.Add(time.Minute)
	f.apply(Decide(cloneForFailover(f.s), f.now, Options{}))
	after := f.s.Rollouts["gp"]
	if !after.StartedAt.Equal(before.StartedAt) || len(after.Done) < len(before.Done) || len(after.Done) == 0 {
		t.Fatalf("rollout restarted after failover: before %+v after %+v", before, after)
	}
}

func TestRolloutHaltsWhenReplacementsFail(t *testing.T) {
	f := newFleet(t, 10)
	f.broken = true
	f.s.NodeClasses[0].AMIs = []AMIRef{{ID: "ami-bad"}}
	f.apply(Decide(f.s, f.now, Options{}))
	if len(f.s.Ledger) != 2 {
		t.Fatalf("first step should take 2 nodes, took %d", len(f.s.Ledger))
	}
	f.now = f.now.Add(16 * time.Minute)
	plan := Decide(f.s, f.now, Options{})
	f.apply(plan)
	r := f.s.Rollouts["gp"]
	if !r.Paused || r.BlockedReason == "" {
		t.Fatalf("rollout should halt itself: %+v", r)
	}
	// Make budget room: even then no further node is taken while halted.
	f.s.Ledger = map[string]fsm.Disruption{}
	plan = Decide(f.s, f.now.Add(time.Minute), Options{})
	if len(plan.Decisions) != 0 {
		t.Fatalf("halted rollout must not take more nodes: %+v", plan.Decisions)
	}
	if s := skipFor(plan, "old-05", ReasonDrifted); s == nil || s.Code != SkipRolloutHalted {
		t.Fatalf("want RolloutHalted skip, got %+v", s)
	}
	_, _, state := RolloutProgress(f.s.Rollouts["gp"])
	if state != "Halted" {
		t.Fatalf("state %s", state)
	}
	// A newer AMI starts a fresh rollout.
	f.s.NodeClasses[0].AMIs = []AMIRef{{ID: "ami-fixed"}}
	plan = Decide(f.s, f.now.Add(2*time.Minute), Options{})
	if len(plan.Decisions) == 0 || plan.Rollouts["gp"].Paused {
		t.Fatalf("a new target should start a new rollout: %+v", plan.Rollouts["gp"])
	}
}

func TestRolloutWaitsForMovedPods(t *testing.T) {
	f := newFleet(t, 10)
	f.s.NodeClasses[0].AMIs = []AMIRef{{ID: "ami-new"}}
	moved := pod("moved", 100, 1)
	moved.Ready = false
	moved.Created = t0.Add(-time.Minute)
	f.s.Nodes[9].Pods = append(f.s.Nodes[9].Pods, moved)
	plan := Decide(f.s, t0, Options{})
	if len(plan.Decisions) != 0 {
		t.Fatalf("must wait for the moved pod: %+v", plan.Decisions)
	}
	if s := skipFor(plan, "old-00", ReasonDrifted); s == nil || s.Code != SkipSurge {
		t.Fatalf("want surge skip, got %+v", s)
	}
	if plan.Rollouts["gp"].BlockedReason == "" {
		t.Fatalf("rollout should say what it waits for")
	}
	f.s.Nodes[9].Pods[1].Ready = true
	if plan := Decide(f.s, t0, Options{}); len(plan.Decisions) != 2 {
		t.Fatalf("after the pod is Ready 2 nodes go, got %d", len(plan.Decisions))
	}
}

func TestRolloutOfDeletedNodePoolIsForgotten(t *testing.T) {
	f := newFleet(t, 2)
	f.s.Rollouts["gone"] = fsm.Rollout{NodePool: "gone", TargetAMI: "ami-1", Paused: true}
	f.s.Rollouts["gp"] = fsm.Rollout{NodePool: "gp", TargetAMI: "ami-1"}
	p := Decide(f.s, f.now, Options{})
	var deleted []string
	for _, c := range p.Commands {
		if d, ok := c.(fsm.RolloutDelete); ok {
			deleted = append(deleted, d.NodePool)
		}
	}
	if len(deleted) != 1 || deleted[0] != "gone" {
		t.Fatalf("RolloutDelete for %v, want only the deleted pool \"gone\"", deleted)
	}
}
