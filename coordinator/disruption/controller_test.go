package disruption

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/drain"
)

// raftLedger applies commands to a real FSM, as the leader would through Raft.
type raftLedger struct {
	mu     sync.Mutex
	f      *fsm.FSM
	idx    uint64
	phases map[string][]string // node -> phases seen
}

func newRaftLedger() *raftLedger { return &raftLedger{f: fsm.New(nil), phases: map[string][]string{}} }

func (l *raftLedger) Apply(_ context.Context, cmd fsm.Command) error {
	b, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.idx++
	if r := l.f.Apply(&raft.Log{Type: raft.LogCommand, Index: l.idx, Data: b}); r != nil {
		if err, ok := r.(error); ok {
			return err
		}
	}
	switch c := cmd.(type) {
	case fsm.DisruptionBegin:
		ph := l.phases[c.Disruption.NodeName]
		if len(ph) == 0 || ph[len(ph)-1] != c.Disruption.Phase {
			l.phases[c.Disruption.NodeName] = append(ph, c.Disruption.Phase)
		}
	case fsm.DisruptionEnd:
		l.phases[c.NodeName] = append(l.phases[c.NodeName], "End")
	}
	return nil
}

// cluster is the snapshot source: a base snapshot plus the Raft state.
type cluster struct {
	mu     sync.Mutex
	base   *Snapshot
	ledger *raftLedger
	calls  int
	// mutate, when set, changes the base before the n-th snapshot.
	mutate func(n int, s *Snapshot)
}

func (c *cluster) Snapshot(context.Context) (*Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.mutate != nil {
		c.mutate(c.calls, c.base)
	}
	s := *c.base
	s.Nodes = slices.Clone(c.base.Nodes)
	st := c.ledger.f.State()
	s.Ledger = map[string]fsm.Disruption{}
	for k, v := range st.Disruptions {
		s.Ledger[k] = *v
	}
	s.Rollouts = map[string]fsm.Rollout{}
	for k, v := range st.Rollouts {
		s.Rollouts[k] = *v
	}
	return &s, nil
}

type fakeLauncher struct {
	mu       sync.Mutex
	launched map[string]Replacement // key -> replacement
	deleted  []string
	neverUp  bool
}

func (f *fakeLauncher) Launch(_ context.Context, key string, r Replacement) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.launched == nil {
		f.launched = map[string]Replacement{}
	}
	f.launched[key] = r
	return "repl-" + key, nil
}

func (f *fakeLauncher) Ready(context.Context, string) (bool, error) {
	return !f.neverUp, nil
}

func (f *fakeLauncher) Delete(_ context.Context, claim string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, claim)
	return nil
}

type fakeDrainer struct {
	mu      sync.Mutex
	drained []string
	marked  []string
}

func (f *fakeDrainer) Drain(_ context.Context, node string, deadline time.Time, reason string) (drain.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drained = append(f.drained, node)
	return drain.Result{Node: node, Reason: reason, Deadline: deadline, Complete: true}, nil
}

func (f *fakeDrainer) MarkDisrupted(_ context.Context, node, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marked = append(f.marked, node)
	return nil
}

type fakeEvents struct {
	mu  sync.Mutex
	got []string
}

func (f *fakeEvents) NodeEvent(_ context.Context, node, typ, reason, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, fmt.Sprintf("%s %s %s: %s", node, typ, reason, msg))
}

func (f *fakeEvents) NodeClaimEvent(_ context.Context, claim, typ, reason, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, fmt.Sprintf("NodeClaim/%s %s %s: %s", claim, typ, reason, msg))
}

func (f *fakeEvents) NodePoolEvent(_ context.Context, pool, typ, reason, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, fmt.Sprintf("NodePool/%s %s %s: %s", pool, typ, reason, msg))
}

type rig struct {
	c   *Controller
	cl  *cluster
	l   *raftLedger
	la  *fakeLauncher
	dr  *fakeDrainer
	ev  *fakeEvents
	now time.Time
	// agentDrained answers Config.AgentDrainDone; nil: every agent has
	// finished its drain.
	agentDrained func(node string) bool
}

func newRig(t *testing.T, s *Snapshot) *rig {
	r := &rig{l: newRaftLedger(), la: &fakeLauncher{}, dr: &fakeDrainer{}, ev: &fakeEvents{}, now: t0}
	r.cl = &cluster{base: s, ledger: r.l}
	c, err := NewController(Config{ValidationDelay: -1, ReplacementTimeout: 50 * time.Millisecond, PollInterval: 5 * time.Millisecond,
		Registry: prometheus.NewRegistry(), Now: func() time.Time { return r.now },
		AgentDrainDone: func(node string) bool { return r.agentDrained == nil || r.agentDrained(node) }}, r.cl, r.l, r.la, r.dr, r.ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	return r
}

func (r *rig) pass(t *testing.T) {
	t.Helper()
	if err := r.c.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.c.Wait()
}

func TestControllerDeletesEmptyNode(t *testing.T) {
	r := newRig(t, snapshot(t, []Pool{testPool("gp")},
		testNode(t, "empty", "gp", "m5.large", od, daemon("ds")),
		testNode(t, "busy", "gp", "m5a.large", od, pods("web", 2, 800, 2)...)))
	r.pass(t)
	if !slices.Equal(r.dr.drained, []string{"empty"}) || !slices.Equal(r.la.deleted, []string{"empty-claim"}) {
		t.Fatalf("drained %v deleted %v", r.dr.drained, r.la.deleted)
	}
	if len(r.la.launched) != 0 {
		t.Fatalf("an empty node needs no replacement: %v", r.la.launched)
	}
	if got := r.l.phases["empty"]; !slices.Equal(got, []string{PhaseReplacing, PhaseDraining, PhaseTerminating, "End"}) {
		t.Fatalf("ledger phases %v", got)
	}
	if len(r.l.f.State().Disruptions) != 0 {
		t.Fatalf("ledger not closed: %v", r.l.f.State().Disruptions)
	}
	// The busy node got its skip reason as an Event.
	found := false
	for _, e := range r.ev.got {
		if len(e) > 4 && e[:4] == "busy" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no DisruptionBlocked event for the skipped node: %v", r.ev.got)
	}
	// The disrupted node got Karpenter's reason, with the disruption reason.
	if !slices.ContainsFunc(r.ev.got, func(e string) bool {
		return strings.HasPrefix(e, "empty Normal DisruptionTerminating: Disrupting Node: Empty")
	}) {
		t.Fatalf("no DisruptionTerminating event for the disrupted node: %v", r.ev.got)
	}
}

func TestControllerReplacesBeforeDraining(t *testing.T) {
	r := newRig(t, snapshot(t, []Pool{testPool("gp")}, testNode(t, "big", "gp", "m5.2xlarge", od, pod("one", 1000, 2))))
	r.pass(t)
	if len(r.la.launched) != 1 {
		t.Fatalf("want one replacement launched, got %v", r.la.launched)
	}
	for _, repl := range r.la.launched {
		if repl.Price >= 0.384 || len(repl.Options) == 0 {
			t.Fatalf("replacement not cheaper: %+v", repl)
		}
	}
	if !slices.Equal(r.dr.drained, []string{"big"}) || !slices.Equal(r.la.deleted, []string{"big-claim"}) {
		t.Fatalf("drained %v deleted %v", r.dr.drained, r.la.deleted)
	}
}

func TestControllerResumesLedgerAfterFailover(t *testing.T) {
	s := snapshot(t, []Pool{noConsolidation(testPool("gp"))}, testNode(t, "n1", "gp", "m5.large", od, pod("x", 100, 1)))
	r := newRig(t, s)
	// The previous leader had launched and started draining.
	if err := r.l.Apply(context.Background(), fsm.DisruptionBegin{Disruption: fsm.Disruption{NodeName: "n1", NodeClaim: "n1-claim", NodePool: "gp",
		Reason: string(ReasonDrifted), Since: t0.Add(-time.Minute), Phase: PhaseDraining, Replacements: []string{"repl-old"}}}); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	if len(r.la.launched) != 0 {
		t.Fatalf("resume must not launch again: %v", r.la.launched)
	}
	if !slices.Equal(r.dr.drained, []string{"n1"}) || !slices.Equal(r.la.deleted, []string{"n1-claim"}) {
		t.Fatalf("drained %v deleted %v", r.dr.drained, r.la.deleted)
	}
	if len(r.l.f.State().Disruptions) != 0 {
		t.Fatalf("ledger not closed")
	}
}

func TestControllerKeepsNodeWhenReplacementFails(t *testing.T) {
	s := snapshot(t, []Pool{noConsolidation(testPool("gp"))}, testNode(t, "n1", "gp", "m5.large", od, pod("x", 100, 1)))
	s.NodeClasses[0].AMIs = []AMIRef{{ID: "ami-new"}}
	r := newRig(t, s)
	r.la.neverUp = true
	r.c.cfg.Now = time.Now // the replacement timeout runs on the wall clock here
	r.pass(t)
	if len(r.dr.drained) != 0 {
		t.Fatalf("node drained although its replacement never came up")
	}
	if len(r.la.deleted) != 1 || r.la.deleted[0][:5] != "repl-" {
		t.Fatalf("broken replacement should be deleted, deleted %v", r.la.deleted)
	}
	d := r.l.f.State().Disruptions["n1"]
	if d == nil || d.Phase != PhaseReplacementNotReady {
		t.Fatalf("ledger should keep the failed step for the rollout to halt: %+v", d)
	}
	// Karpenter's count of an enqueued decision that failed.
	if got := testutil.ToFloat64(r.c.m.queueFailures.WithLabelValues("replace", "drifted", "replace")); got != 1 {
		t.Errorf("queue failures = %v, want 1", got)
	}
	// The next pass (15 minutes on) halts the rollout.
	r.c.cfg.Now = func() time.Time { return time.Now().Add(16 * time.Minute) }
	r.pass(t)
	ro := r.l.f.State().Rollouts["gp"]
	if ro == nil || !ro.Paused {
		t.Fatalf("rollout should be halted: %+v", ro)
	}
	// Resume clears the failed step and the pause.
	for _, cmd := range ResumeRollout(*ro, map[string]fsm.Disruption{"n1": *d}) {
		if err := r.l.Apply(context.Background(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	if st := r.l.f.State(); st.Rollouts["gp"].Paused || len(st.Disruptions) != 0 {
		t.Fatalf("resume did not clear: %+v %+v", st.Rollouts["gp"], st.Disruptions)
	}
}

func TestControllerValidationDelay(t *testing.T) {
	for _, changed := range []bool{false, true} {
		r := newRig(t, snapshot(t, []Pool{testPool("gp")}, testNode(t, "empty", "gp", "m5.large", od)))
		r.c.cfg.ValidationDelay = 15 * time.Second
		r.pass(t)
		if len(r.dr.drained) != 0 {
			t.Fatalf("executed before the validation delay")
		}
		if changed { // a pod lands during the validation delay
			r.cl.base.Nodes[0].Pods = append(r.cl.base.Nodes[0].Pods, pod("new", 100, 1))
			r.cl.base.Nodes[0].LastPodChange = t0.Add(5 * time.Second)
		}
		r.now = t0.Add(10 * time.Second)
		r.pass(t)
		if len(r.dr.drained) != 0 {
			t.Fatalf("executed before the validation delay")
		}
		r.now = t0.Add(20 * time.Second)
		r.pass(t)
		if changed && len(r.dr.drained) != 0 {
			t.Fatalf("decision should be dropped at validation: drained %v", r.dr.drained)
		}
		// Karpenter's count of candidates that failed validation, by
		// consolidation type.
		want := 0.0
		if changed {
			want = 1
		}
		if got := testutil.ToFloat64(r.c.m.failedValidations.WithLabelValues("empty")); got != want {
			t.Errorf("changed=%v: failed validations (empty) = %v, want %v", changed, got, want)
		}
		if !changed && !slices.Equal(r.dr.drained, []string{"empty"}) {
			t.Fatalf("validated decision should run: drained %v", r.dr.drained)
		}
	}
}

// liveLauncher brings replacements up as Ready nodes on the new AMI and
// deletes nodes by NodeClaim, in the cluster the snapshot source reads.
type liveLauncher struct {
	t  *testing.T
	cl *cluster
}

func (l *liveLauncher) Launch(_ context.Context, key string, r Replacement) (string, error) {
	l.cl.mu.Lock()
	defer l.cl.mu.Unlock()
	name := "repl-" + key
	for _, n := range l.cl.base.Nodes {
		if n.NodeClaim == name {
			return name, nil // idempotent
		}
	}
	n := testNode(l.t, name, r.Pool, "m5.large", od)
	n.NodeClaim = name
	n.ImageID = "ami-new"
	l.cl.base.Nodes = append(l.cl.base.Nodes, n)
	if l.cl.base.ReplacementReady == nil {
		l.cl.base.ReplacementReady = map[string]bool{}
	}
	l.cl.base.ReplacementReady[name] = true
	return name, nil
}

func (l *liveLauncher) Ready(_ context.Context, claim string) (bool, error) {
	l.cl.mu.Lock()
	defer l.cl.mu.Unlock()
	return l.cl.base.ReplacementReady[claim], nil
}

func (l *liveLauncher) Delete(_ context.Context, claim string) error {
	l.cl.mu.Lock()
	defer l.cl.mu.Unlock()
	l.cl.base.Nodes = slices.DeleteFunc(l.cl.base.Nodes, func(n Node) bool { return n.NodeClaim == claim })
	return nil
}

func TestControllerRollsAMIAcrossFailover(t *testing.T) {
	p := noConsolidation(testPool("gp"))
	p.Budgets = []budget.Budget{{Nodes: "20%"}}
	var nodes []Node
	for i := range 10 {
		nodes = append(nodes, testNode(t, fmt.Sprintf("old-%d", i), "gp", "m5.large", od, pod(fmt.Sprintf("app-%d", i), 100, 1)))
	}
	s := snapshot(t, []Pool{p}, nodes...)
	s.NodeClasses[0].AMIs = []AMIRef{{ID: "ami-new"}} // the new release is published
	l := newRaftLedger()
	cl := &cluster{base: s, ledger: l}
	maxBusy := 0
	cl.mutate = func(int, *Snapshot) {
		if n := len(l.f.State().Disruptions); n > maxBusy {
			maxBusy = n
		}
	}
	now := t0
	newCtl := func() *Controller {
		c, err := NewController(Config{ValidationDelay: -1, PollInterval: time.Millisecond, Registry: prometheus.NewRegistry(), Now: func() time.Time { return now }},
			cl, l, &liveLauncher{t: t, cl: cl}, &fakeDrainer{}, &fakeEvents{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newCtl()
	for step := range 12 {
		now = now.Add(time.Minute)
		if step == 2 {
			c = newCtl() // leader failover: a fresh controller, same Raft state
			if r := l.f.State().Rollouts["gp"]; r == nil || len(r.Done) == 0 {
				t.Fatalf("rollout should have progressed before failover: %+v", r)
			}
		}
		if err := c.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.Wait()
		if n := len(l.f.State().Disruptions); n > maxBusy {
			maxBusy = n
		}
	}
	if maxBusy > 2 {
		t.Fatalf("budget 20%% of 10 allows 2 at once, saw %d", maxBusy)
	}
	for _, n := range cl.base.Nodes {
		if n.ImageID != "ami-new" {
			t.Fatalf("node %s still on %s", n.Name, n.ImageID)
		}
	}
	r := l.f.State().Rollouts["gp"]
	done, total, state := RolloutProgress(*r)
	if done != 10 || total != 10 || state != "Complete" {
		t.Fatalf("rollout %d/%d %s", done, total, state)
	}
}

func TestControllerRunStopsWithLeadership(t *testing.T) {
	r := newRig(t, snapshot(t, []Pool{testPool("gp")}, testNode(t, "empty", "gp", "m5.large", od)))
	r.c.cfg.Interval = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.c.Run(ctx, 7) }()
	for {
		if _, _, ok := r.c.LatestPlan(); ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, _, ok := r.c.LatestPlan(); ok {
		t.Fatalf("a replica that lost leadership must not serve its old plan")
	}
}

// The one run loop: a pass per interval, one at once on Wake, each pass
// observed with its error.
func TestControllerRunPlansAtOnceOnWake(t *testing.T) {
	r := newRig(t, snapshot(t, []Pool{testPool("gp")}, testNode(t, "busy", "gp", "m5.large", od, pod("x", 100, 1))))
	wake := make(chan struct{}, 1)
	var passes atomic.Int32
	r.c.cfg.Interval, r.c.cfg.Wake = time.Hour, wake
	r.c.cfg.ObservePass = func() func(error) {
		return func(err error) {
			if err != nil {
				t.Errorf("pass: %v", err)
			}
			passes.Add(1)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.c.Run(ctx, 7) }()
	waitFor := func(n int32) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); passes.Load() < n; {
			if time.Now().After(deadline) {
				t.Fatalf("%d passes, want %d", passes.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(1)
	wake <- struct{}{}
	waitFor(2) // an hour before the next tick
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
