package karpentermetrics

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

type stateSource struct {
	s      *fsm.State
	leader bool
}

func (s *stateSource) View(fn func(*fsm.State)) { fn(s.s) }
func (s *stateSource) IsLeader() bool           { return s.leader }

func TestCollectorFollowsStateTransitions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	st := fsm.NewState()
	st.Epoch = fsm.LeaderEpoch{Term: 1, At: t0}
	src := &stateSource{s: st, leader: true}
	c := New(src, func() time.Time { return now })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	// Baseline: an intent that existed before this leader is not "created".
	st.Intents["old"] = &fsm.Intent{Token: "old", NodeClaim: "nc-old", NodePool: "general",
		Instance: &cloud.Instance{CapacityType: "spot", Zone: "us-west-2a"}, NodeName: "n-old"}
	st.Bindings["i-old"] = &fsm.NodeBinding{InstanceID: "i-old", NodeName: "n-old", NodePool: "general", Since: t0}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}

	now = t0.Add(90 * time.Second)
	st.Intents["new"] = &fsm.Intent{Token: "new", NodeClaim: "nc-new", NodePool: "general"}
	st.Disruptions["n-old"] = &fsm.Disruption{NodeName: "n-old", NodePool: "general", Reason: "Underutilized",
		Replacements: []string{"nc-new"}}
	st.Nodes["n-old"] = &fsm.NodeStatus{NodeName: "n-old",
		Interruption: &report.Report{ID: "r1", Kind: report.KindInterruption, NodeName: "n-old", Action: "terminate"}}
	want := `
# HELP karpenter_cluster_state_node_count Current count of nodes in cluster state
# TYPE karpenter_cluster_state_node_count gauge
karpenter_cluster_state_node_count 1
# HELP karpenter_cluster_state_synced Returns 1 if cluster state is synced and 0 otherwise. Synced checks that nodeclaims and nodes that are stored in the APIServer have the same representation as Karpenter's cluster state
# TYPE karpenter_cluster_state_synced gauge
karpenter_cluster_state_synced 1
# HELP karpenter_cluster_state_unsynced_time_seconds The time for which cluster state is not synced
# TYPE karpenter_cluster_state_unsynced_time_seconds gauge
karpenter_cluster_state_unsynced_time_seconds 0
# HELP karpenter_voluntary_disruption_consolidation_timeouts_total Number of times the Consolidation algorithm has reached a timeout. Labeled by consolidation type.
# TYPE karpenter_voluntary_disruption_consolidation_timeouts_total counter
karpenter_voluntary_disruption_consolidation_timeouts_total{consolidation_type="multi"} 0
karpenter_voluntary_disruption_consolidation_timeouts_total{consolidation_type="single"} 0
# HELP karpenter_nodeclaims_created_total Number of nodeclaims created in total by Karpenter. Labeled by reason the nodeclaim was created, the owning nodepool, and if min values was relaxed for this nodeclaim.
# TYPE karpenter_nodeclaims_created_total counter
karpenter_nodeclaims_created_total{min_values_relaxed="false",nodepool="general",reason="underutilized"} 1
# HELP karpenter_nodeclaims_disrupted_total Number of nodeclaims disrupted in total by Karpenter. Labeled by reason the nodeclaim was disrupted and the owning nodepool.
# TYPE karpenter_nodeclaims_disrupted_total counter
karpenter_nodeclaims_disrupted_total{capacity_type="spot",nodepool="general",reason="underutilized"} 1
# HELP karpenter_interruption_received_messages_total Count of messages received from the SQS queue. Broken down by message type and whether the message was actionable.
# TYPE karpenter_interruption_received_messages_total counter
karpenter_interruption_received_messages_total{message_type="spot_interrupted"} 1
# HELP karpenter_voluntary_disruption_decisions_total Number of disruption decisions performed. Labeled by disruption decision, reason, and consolidation type.
# TYPE karpenter_voluntary_disruption_decisions_total counter
karpenter_voluntary_disruption_decisions_total{consolidation_type="single",decision="replace",reason="underutilized"} 1
# HELP karpenter_voluntary_disruption_decisions_by_nodepool_total Number of disruption decisions performed by nodepool. Labeled by nodepool name, disruption decision, reason, and consolidation type.
# TYPE karpenter_voluntary_disruption_decisions_by_nodepool_total counter
karpenter_voluntary_disruption_decisions_by_nodepool_total{consolidation_type="single",decision="replace",nodepool="general",reason="underutilized"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}

	// The old node goes away: terminated counts once, by its capacity type.
	delete(st.Intents, "old")
	delete(st.Bindings, "i-old")
	delete(st.Disruptions, "n-old")
	for i := 0; i < 2; i++ {
		if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP karpenter_nodeclaims_terminated_total Number of nodeclaims terminated in total by Karpenter. Labeled by the owning nodepool, capacity type, and zone.
# TYPE karpenter_nodeclaims_terminated_total counter
karpenter_nodeclaims_terminated_total{capacity_type="spot",nodepool="general",zone="us-west-2a"} 1
`), "karpenter_nodeclaims_terminated_total"); err != nil {
			t.Fatal(err)
		}
	}

	// A follower serves nothing (the leader's numbers would be doubled).
	src.leader = false
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("follower served %d series (err %v)", n, err)
	}
}

// With Watch, a follower counts the transitions it applies, and serves
// them once it leads: a leader change loses no count, and nothing depends
// on being scraped.
func TestCollectorWatchCountsWhileFollowing(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := fsm.NewState()
	st.Epoch = fsm.LeaderEpoch{Term: 1, At: t0}
	src := &stateSource{s: st}
	c := New(src, func() time.Time { return t0 })
	changed := make(chan chan struct{}, 1)
	cur := make(chan struct{})
	changed <- cur
	next := func() <-chan struct{} { ch := <-changed; changed <- ch; return ch }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Watch(ctx, next) }()
	// The baseline observation, then a change: an intent launched by the
	// current leader (another replica).
	waitObserved := func() {
		for i := 0; i < 200; i++ {
			c.mu.Lock()
			ok := c.baseline
			c.mu.Unlock()
			if ok {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatal("no observation")
	}
	waitObserved()
	c.mu.Lock()
	st.Intents["a"] = &fsm.Intent{Token: "a", NodeClaim: "nc-a", NodePool: "general"}
	c.mu.Unlock()
	old := <-changed
	cur = make(chan struct{})
	changed <- cur
	close(old)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	for i := 0; ; i++ {
		c.mu.Lock()
		n := c.created[[3]string{"provisioned", "general", "false"}]
		c.mu.Unlock()
		if n == 1 {
			break
		}
		if i > 200 {
			t.Fatal("the follower did not count the new intent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n, _ := testutil.GatherAndCount(reg, "karpenter_nodeclaims_created_total"); n != 0 {
		t.Errorf("a follower serves %d series", n)
	}
	src.leader = true
	if n, _ := testutil.GatherAndCount(reg, "karpenter_nodeclaims_created_total"); n != 1 {
		t.Errorf("the new leader serves %d created series, want 1", n)
	}
	cancel()
	<-done
}

// Until a leader epoch is committed the state is unsynced; the time since
// this leader first saw it so grows until then and is 0 again after.
func TestCollectorUnsyncedTime(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	st := fsm.NewState()
	c := New(&stateSource{s: st, leader: true}, func() time.Time { return now })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	check := func(synced, unsynced string) {
		t.Helper()
		want := "# HELP karpenter_cluster_state_synced Returns 1 if cluster state is synced and 0 otherwise. Synced checks that nodeclaims and nodes that are stored in the APIServer have the same representation as Karpenter's cluster state\n" +
			"# TYPE karpenter_cluster_state_synced gauge\nkarpenter_cluster_state_synced " + synced + "\n" +
			"# HELP karpenter_cluster_state_unsynced_time_seconds The time for which cluster state is not synced\n" +
			"# TYPE karpenter_cluster_state_unsynced_time_seconds gauge\nkarpenter_cluster_state_unsynced_time_seconds " + unsynced + "\n"
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "karpenter_cluster_state_synced", "karpenter_cluster_state_unsynced_time_seconds"); err != nil {
			t.Fatal(err)
		}
	}
	check("0", "0")
	now = t0.Add(30 * time.Second)
	check("0", "30")
	st.Epoch = fsm.LeaderEpoch{Term: 2, At: now}
	now = now.Add(time.Second)
	check("1", "0")
}

func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(BuildInfo())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "karpenter_build_info" || len(mfs[0].GetMetric()) != 1 || mfs[0].GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Fatalf("karpenter_build_info: %v", mfs)
	}
	got := map[string]string{}
	for _, lp := range mfs[0].GetMetric()[0].GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	if got["version"] == "" || got["goversion"] != runtime.Version() || got["goarch"] != runtime.GOARCH {
		t.Errorf("labels %v", got)
	}
}

func TestDrainMetricsAreTheLeaders(t *testing.T) {
	leading := false
	d := NewDrain(func() bool { return leading })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(d)
	d.EvictionRequest(200)
	d.EvictionRequest(429)
	d.PodEvicted("Underutilized")
	d.PodEvicted("Interrupted")
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("a follower serves %d series (%v)", n, err)
	}
	leading = true
	want := `
# HELP karpenter_pods_drained_total The total number of pods drained during node termination by Karpenter, labeled by reason
# TYPE karpenter_pods_drained_total counter
karpenter_pods_drained_total{reason="Forceful Termination"} 1
karpenter_pods_drained_total{reason="Underutilized"} 1
# HELP karpenter_pods_eviction_requests_total The total number of pod eviction requests made by Karpenter, labeled by response code
# TYPE karpenter_pods_eviction_requests_total counter
karpenter_pods_eviction_requests_total{code="200"} 1
karpenter_pods_eviction_requests_total{code="429"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
