package raftnode

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// A StatefulSet replica whose PVC was wiped restarts with its ordinary flags.
// It must neither bootstrap nor vote before it holds the committed log:
// otherwise a stale replica (partitioned while a write was acknowledged by
// the leader and the wiped one) gets the wiped replica's vote once the leader
// dies, and the cluster elects a leader without the acknowledged write.
func TestWipedReplicaDoesNotElectAStaleLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	l := c.leader(10 * time.Second)
	var stale, wiped string
	for id, n := range c.nodes {
		if n == l {
			continue
		}
		if stale == "" {
			stale = id
		} else {
			wiped = id
		}
	}
	waitIndex(t, c.nodes[stale], l.FSM().AppliedIndex())
	c.cut(stale, l.ID(), true)
	c.cut(stale, wiped, true)
	ice := func(i int) fsm.Command {
		return &fsm.ICEMark{Entries: []fsm.ICEEntry{{InstanceType: "m5.large", Zone: "z" + string(rune('a'+i)), CapacityType: "spot", Until: time.Unix(1000, 0)}}}
	}
	for i := range 3 {
		if err := l.Apply(ctx, ice(i)); err != nil {
			t.Fatalf("acknowledged write %d: %v", i, err)
		}
	}
	waitIndex(t, c.nodes[wiped], l.FSM().AppliedIndex())

	// The wiped replica loses its disk; the leader dies; the stale replica
	// can reach the wiped one again.
	_ = c.nodes[wiped].Kill()
	delete(c.nodes, wiped)
	if err := os.RemoveAll(c.dirs[wiped]); err != nil {
		t.Fatal(err)
	}
	leaderID := l.ID()
	_ = l.Kill()
	delete(c.nodes, leaderID)
	c.cut(stale, wiped, false)
	c.cut(stale, leaderID, false)
	c.start(wiped)
	w := c.nodes[wiped]
	if !w.Joining() {
		t.Fatal("a wiped replica whose peers form a cluster is not joining (it founded a cluster of its own)")
	}
	if servers, _ := w.Servers(); len(servers) != 0 {
		t.Fatalf("the wiped replica bootstrapped a configuration: %v", servers)
	}
	s := c.nodes[stale]
	deadline := time.Now().Add(20 * time.Second)
	for w.VotesRefused() < 3 && !s.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatalf("the stale replica asked for no vote (refused %d)", w.VotesRefused())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.IsLeader() {
		t.Fatalf("the stale replica %s was elected with the wiped replica's vote: acknowledged writes lost (it has %d ICE entries, want 3)",
			stale, len(s.State().ICE))
	}

	// The replica that holds the writes comes back: it leads (or the stale
	// one after catching up), and everyone ends with every acknowledged write.
	c.start(leaderID)
	nl := c.leader(20 * time.Second)
	if err := nl.Apply(ctx, &fsm.Noop{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		waitIndex(t, n, nl.FSM().AppliedIndex())
		if got := len(n.State().ICE); got != 3 {
			t.Fatalf("%s has %d ICE entries after recovery, want 3", n.ID(), got)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for w.Joining() {
		if time.Now().After(deadline) {
			t.Fatal("the wiped replica never caught up (vote gate still shut)")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
