package disruption

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

// spotPool allows spot and on-demand so spot nodes do not drift.
func spotPool(name string) Pool {
	p := noConsolidation(testPool(name))
	p.Requirements[0].Values = []string{cloud.CapacityTypeSpot, od}
	return p
}

func rebalanced(t *testing.T, name string, seen time.Time, pods ...Pod) Node {
	n := testNode(t, name, "gp", "m5.large", cloud.CapacityTypeSpot, pods...)
	n.Interruption = &Interruption{Kind: string(report.KindRebalance), Seen: seen, Deadline: seen}
	return n
}

func TestRebalancePlanning(t *testing.T) {
	blockingPod := pod("guarded", 100, 1)
	blockingPod.BlockingPDB = "default/guard"
	dnd := pod("pinned", 100, 1)
	dnd.DoNotDisrupt = true
	cases := []struct {
		name    string
		pool    func(*Pool)
		nodes   func() []Node
		ledger  map[string]fsm.Disruption
		decided []string          // nodes replaced, in plan order
		skipped map[string]string // node -> skip code (method RebalanceRecommended)
	}{
		{
			name:    "replaced inside the budget",
			nodes:   func() []Node { return []Node{rebalanced(t, "a", t0.Add(-time.Minute), pod("x", 100, 1))} },
			decided: []string{"a"},
		},
		{
			name:    "opted out by the NodePool annotation",
			pool:    func(p *Pool) { p.IgnoreRebalance = true },
			nodes:   func() []Node { return []Node{rebalanced(t, "a", t0, pod("x", 100, 1))} },
			skipped: map[string]string{"a": SkipRebalanceIgnored},
		},
		{
			name: "a budget naming Drifted paces it",
			pool: func(p *Pool) {
				p.Budgets = []budget.Budget{{Nodes: "1", Reasons: []budget.Reason{budget.ReasonDrifted}}, {Nodes: "100%"}}
			},
			nodes: func() []Node {
				return []Node{rebalanced(t, "late", t0), rebalanced(t, "early", t0.Add(-2*time.Minute)), rebalanced(t, "mid", t0.Add(-time.Minute))}
			},
			decided: []string{"early"},
			skipped: map[string]string{"mid": SkipBudget, "late": SkipBudget},
		},
		{
			name: "a zero Drifted budget blocks it",
			pool: func(p *Pool) {
				p.Budgets = []budget.Budget{{Nodes: "0", Reasons: []budget.Reason{budget.ReasonDrifted}}}
			},
			nodes:   func() []Node { return []Node{rebalanced(t, "a", t0)} },
			skipped: map[string]string{"a": SkipBudget},
		},
		{
			name: "a zero Underutilized budget does not",
			pool: func(p *Pool) {
				p.Budgets = []budget.Budget{{Nodes: "0", Reasons: []budget.Reason{budget.ReasonUnderutilized}}, {Nodes: "100%"}}
			},
			nodes:   func() []Node { return []Node{rebalanced(t, "a", t0)} },
			decided: []string{"a"},
		},
		{
			name: "an in-flight drift uses up the budget",
			pool: func(p *Pool) { p.Budgets = []budget.Budget{{Nodes: "1"}} },
			nodes: func() []Node {
				return []Node{rebalanced(t, "a", t0), testNode(t, "b", "gp", "m5.large", od)}
			},
			ledger:  map[string]fsm.Disruption{"b": {NodeName: "b", NodePool: "gp", Reason: string(ReasonDrifted), Phase: PhaseDraining}},
			skipped: map[string]string{"a": SkipBudget},
		},
		{
			name:    "a blocking PDB holds it",
			nodes:   func() []Node { return []Node{rebalanced(t, "a", t0, blockingPod)} },
			skipped: map[string]string{"a": SkipPDB},
		},
		{
			name:    "a do-not-disrupt pod holds it",
			nodes:   func() []Node { return []Node{rebalanced(t, "a", t0, dnd)} },
			skipped: map[string]string{"a": SkipDoNotDisruptPod},
		},
		{
			name: "a node still initializing waits",
			nodes: func() []Node {
				n := rebalanced(t, "a", t0)
				n.Initialized = false
				return []Node{n}
			},
			skipped: map[string]string{"a": SkipInitializing},
		},
		{
			name: "already in the ledger: not planned twice",
			nodes: func() []Node {
				return []Node{rebalanced(t, "a", t0)}
			},
			ledger: map[string]fsm.Disruption{"a": {NodeName: "a", NodePool: "gp", Reason: string(ReasonRebalance), Phase: PhaseReplacing}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := spotPool("gp")
			if tc.pool != nil {
				tc.pool(&p)
			}
			s := snapshot(t, []Pool{p}, tc.nodes()...)
			s.Ledger = tc.ledger
			plan := Decide(s, t0, Options{})
			var got []string
			for _, d := range plan.Decisions {
				if d.Reason != ReasonRebalance {
					t.Fatalf("unexpected decision %+v", d)
				}
				got = append(got, d.Nodes...)
			}
			if strings.Join(got, ",") != strings.Join(tc.decided, ",") {
				t.Fatalf("replaced %v, want %v (skips %+v)", got, tc.decided, plan.Skipped)
			}
			for node, code := range tc.skipped {
				sk := skipFor(plan, node, ReasonRebalance)
				if sk == nil || sk.Code != code {
					t.Fatalf("node %s: skip %+v, want code %s", node, sk, code)
				}
				if !strings.Contains(sk.Message, "rebalance recommendation for m5.large in us-east-1a") {
					t.Errorf("skip message should say what was recommended: %s", sk.Message)
				}
			}
			for _, sk := range plan.Skipped {
				if sk.Method == ReasonRebalance && tc.skipped[sk.Node] == "" {
					t.Errorf("unexpected skip %+v", sk)
				}
			}
		})
	}
}

func TestRebalanceDecisionShape(t *testing.T) {
	p := spotPool("gp")
	p.TerminationGracePeriod = dur(time.Hour)
	n := rebalanced(t, "a", t0.Add(-time.Minute), pod("x", 500, 2), daemon("ds"))
	plan := Decide(snapshot(t, []Pool{p}, n), t0, Options{})
	d := decisionFor(plan, "a")
	if d == nil {
		t.Fatalf("no decision: %+v", plan.Skipped)
	}
	if d.Forceful {
		t.Error("a rebalance recommendation is voluntary: budgets, PDBs and do-not-disrupt apply")
	}
	if !d.DrainUntil.Equal(t0.Add(time.Hour)) || d.DrainBy != "" {
		t.Errorf("drain until %s by %q, want now + the pool's terminationGracePeriod by the executor (no notice deadline applies)", d.DrainUntil, d.DrainBy)
	}
	r := d.Replacement
	if r == nil || r.SameAs != "a" || r.Pool != "gp" {
		t.Fatalf("replacement %+v, want one like node a in pool gp", r)
	}
	if r.Requests.MilliCPU != 500 || r.Requests.Pods != 1 {
		t.Errorf("replacement requests %+v, want the moving pod only (500m, 1 pod)", r.Requests)
	}
	want := cloud.UnavailableOffering{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloud.CapacityTypeSpot, Code: "RebalanceRecommendation"}
	if len(r.Avoid) != 1 || r.Avoid[0] != want {
		t.Errorf("avoid %+v, want %+v", r.Avoid, want)
	}
	if !strings.Contains(d.Budget, "as Drifted") {
		t.Errorf("budget %q should say the decision counted as Drifted", d.Budget)
	}
}

func TestInterruptionOutranksRebalanceAndMaintenanceStaysForceful(t *testing.T) {
	p := spotPool("gp")
	p.Budgets = []budget.Budget{{Nodes: "0"}}
	spot := rebalanced(t, "spot", t0)
	spot.Interruption = &Interruption{Kind: string(report.KindInterruption), Seen: t0, Deadline: t0.Add(2 * time.Minute)}
	maint := testNode(t, "maint", "gp", "m5.large", od)
	maint.Interruption = &Interruption{Kind: string(report.KindMaintenance), Action: "instance-retirement", Seen: t0, Deadline: t0.Add(time.Hour)}
	reb := rebalanced(t, "reb", t0)
	plan := Decide(snapshot(t, []Pool{p}, spot, maint, reb), t0, Options{})
	for _, name := range []string{"spot", "maint"} {
		if d := decisionFor(plan, name); d == nil || d.Reason != ReasonInterrupted || !d.Forceful {
			t.Errorf("%s: %+v, want a forceful Interrupted replacement despite the zero budget", name, d)
		}
	}
	if d := decisionFor(plan, "reb"); d != nil {
		t.Errorf("rebalance under a zero budget must wait, got %+v", d)
	}
	if sk := skipFor(plan, "reb", ReasonRebalance); sk == nil || sk.Code != SkipBudget {
		t.Errorf("rebalance skip %+v, want Budget", sk)
	}
}

func TestPoolFromAPIRebalanceAnnotation(t *testing.T) {
	for _, tc := range []struct {
		value        *string
		ignore, errs bool
	}{
		{nil, false, false},
		{ptr(karpv1.RebalanceReplace), false, false},
		{ptr(karpv1.RebalanceIgnore), true, false},
		{ptr("Ignore "), true, true}, // a typo: fail safe, and say so
	} {
		np := &karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gp", Annotations: map[string]string{}}}
		np.Spec.Template.Spec.Requirements = []karpv1.NodeSelectorRequirementWithMinValues{{Key: LabelCapacity, Operator: corev1.NodeSelectorOpIn, Values: []string{"spot"}}}
		if tc.value != nil {
			np.Annotations[AnnotationRebalance] = *tc.value
		}
		p, err := PoolFromAPI(np)
		if p.IgnoreRebalance != tc.ignore || (err != nil) != tc.errs {
			t.Errorf("annotation %v: ignore=%t err=%v, want ignore=%t error=%t", tc.value, p.IgnoreRebalance, err, tc.ignore, tc.errs)
		}
		if err != nil && !strings.Contains(err.Error(), AnnotationRebalance) {
			t.Errorf("error should name the annotation: %v", err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestControllerActsOnRebalanceReplacementFirst(t *testing.T) {
	r := newRig(t, snapshot(t, []Pool{spotPool("gp")}, rebalanced(t, "a", t0, pod("x", 100, 1))))
	// The validation wait is for consolidation's packing; a rebalance
	// recommendation must not sit through it.
	r.c.cfg.ValidationDelay = time.Hour
	r.pass(t)
	if len(r.la.launched) != 1 {
		t.Fatalf("want one replacement launched in the first pass, got %v", r.la.launched)
	}
	for _, repl := range r.la.launched {
		if repl.SameAs != "a" || len(repl.Avoid) != 1 || repl.Avoid[0].InstanceType != "m5.large" || repl.Avoid[0].Zone != "us-east-1a" {
			t.Fatalf("replacement %+v should be like a, away from m5.large/us-east-1a", repl)
		}
	}
	if !slices.Equal(r.dr.drained, []string{"a"}) || !slices.Equal(r.la.deleted, []string{"a-claim"}) {
		t.Fatalf("drained %v deleted %v", r.dr.drained, r.la.deleted)
	}
	if ph := r.l.phases["a"]; !slices.Equal(ph, []string{PhaseReplacing, PhaseDraining, PhaseTerminating, "End"}) {
		t.Fatalf("ledger phases %v", ph)
	}
}

// A leader that dies after committing a rebalance disruption but before
// recording its launch leaves it to the next leader, which relaunches from
// the ledger: the relaunch must still avoid the recommended offering (it
// used to be a plain "like this node", free to land in the pool at risk).
func TestResumedRebalanceRelaunchAvoidsTheOffering(t *testing.T) {
	r := newRig(t, snapshot(t, []Pool{spotPool("gp")}, rebalanced(t, "a", t0, pod("x", 100, 1))))
	if err := r.l.Apply(context.Background(), fsm.DisruptionBegin{Disruption: fsm.Disruption{NodeName: "a", NodeClaim: "a-claim", NodePool: "gp",
		Reason: string(ReasonRebalance), Since: t0.Add(-time.Second), Phase: PhaseReplacing}}); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	if len(r.la.launched) != 1 {
		t.Fatalf("want one relaunch, got %v", r.la.launched)
	}
	want := cloud.UnavailableOffering{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloud.CapacityTypeSpot, Code: "RebalanceRecommendation"}
	for _, repl := range r.la.launched {
		if repl.SameAs != "a" || len(repl.Avoid) != 1 || repl.Avoid[0] != want {
			t.Fatalf("relaunch %+v, want one like a avoiding %+v", repl, want)
		}
	}
	if !slices.Equal(r.dr.drained, []string{"a"}) || !slices.Equal(r.la.deleted, []string{"a-claim"}) {
		t.Fatalf("drained %v deleted %v", r.dr.drained, r.la.deleted)
	}
}
