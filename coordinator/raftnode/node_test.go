package raftnode

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/internal/freeport"
	"github.com/dovetail-dev/dovetail/internal/syncbuffer"
)

func fastConfig(t *testing.T, id, dir string, peers []Peer) Config {
	var bind string
	for _, p := range peers {
		if p.ID == id {
			bind = p.RaftAddr
		}
	}
	// 300 ms with the lease equal to the heartbeat, as the binary ships it
	// (400 ms): the "leadership lost while committing log" flakes were the
	// leader's lease check stepping down ("failed to contact quorum of
	// nodes", both followers silent for 110-150 ms because the whole test
	// process was starved) with a 100 ms lease under a 150 ms heartbeat.
	// With two CPU hogs: 4 failures in 150 runs of the cluster tests before,
	// 0 in 150 after, and no slower (fewer re-elections).
	return Config{
		ID: id, DataDir: dir, BindAddr: bind, Peers: peers,
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
		LeaderLeaseTimeout: 300 * time.Millisecond, SegmentSize: 1 << 20,
		DeadServerTimeout: 300 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(bufFor(t), &slog.HandlerOptions{Level: slog.LevelInfo})).With("me", id),
	}
}

type testCluster struct {
	t     *testing.T
	peers []Peer
	dirs  map[string]string
	nodes map[string]*Node

	mu   sync.Mutex
	down map[[2]string]bool // raft address pairs cut by cut()
}

// cut partitions a from b (both directions) or heals the link.
func (c *testCluster) cut(a, b string, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down == nil {
		c.down = map[[2]string]bool{}
	}
	c.down[[2]string{c.addr(a), c.addr(b)}] = down
	c.down[[2]string{c.addr(b), c.addr(a)}] = down
}

func (c *testCluster) addr(id string) string {
	for _, p := range c.peers {
		if p.ID == id {
			return p.RaftAddr
		}
	}
	return ""
}

func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	addrs := freeport.Addrs(t, n)
	c := &testCluster{t: t, dirs: map[string]string{}, nodes: map[string]*Node{}}
	for i, a := range addrs {
		c.peers = append(c.peers, Peer{ID: fmt.Sprintf("c-%d", i), RaftAddr: a})
	}
	base := t.TempDir()
	for _, p := range c.peers {
		c.dirs[p.ID] = filepath.Join(base, p.ID)
		c.start(p.ID)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			_ = n.Kill()
		}
	})
	return c
}

func (c *testCluster) start(id string) {
	c.t.Helper()
	cfg := fastConfig(c.t, id, c.dirs[id], c.peers)
	from := c.addr(id)
	cfg.LinkDown = func(target string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.down[[2]string{from, target}]
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	// The leader loop is not under test here: drain notifications.
	go func() {
		for range n.LeaderNotify() {
		}
	}()
	c.nodes[id] = n
}

// leader waits for a leader every running replica follows. Taking the
// first replica that calls itself leader was the cause of the "leadership
// lost while committing log" flakes under load: while a cluster forms or
// re-forms, a replica can win a term while another (its election timer
// already fired, its pre-vote granted by a replica that had heard of no
// leader yet) wins the next one a moment later, so the test's first writes
// went to a leader about to be deposed.
func (c *testCluster) leader(timeout time.Duration) *Node {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if !n.IsLeader() {
				continue
			}
			agreed := true
			for _, o := range c.nodes {
				if id, _ := o.Leader(); id != n.ID() {
					agreed = false
				}
			}
			if agreed && n.IsLeader() {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("no leader elected that every replica follows")
	return nil
}

func waitIndex(t *testing.T, n *Node, idx uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.FSM().AppliedIndex() < idx {
		if time.Now().After(deadline) {
			t.Fatalf("%s applied %d, want %d", n.ID(), n.FSM().AppliedIndex(), idx)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClusterFormsAppliesAndRejoins(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	l := c.leader(5 * time.Second)
	for i := 0; i < 10; i++ {
		err := l.Apply(ctx, &fsm.ICEMark{Entries: []fsm.ICEEntry{{InstanceType: fmt.Sprintf("m5.%d", i), Zone: "z", CapacityType: "spot", Until: time.Unix(1000, 0)}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	idx := l.Raft().AppliedIndex()
	for _, n := range c.nodes {
		waitIndex(t, n, idx)
		if got := len(n.State().ICE); got != 10 {
			t.Fatalf("%s has %d ICE entries, want 10", n.ID(), got)
		}
	}
	// A follower rejects writes.
	for _, n := range c.nodes {
		if n != l {
			if err := n.Apply(ctx, &fsm.Noop{}); err == nil {
				t.Fatal("follower accepted a write")
			}
			break
		}
	}
	// Restart every replica with its data dir: state survives and a leader returns.
	for id, n := range c.nodes {
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
		delete(c.nodes, id)
	}
	for _, p := range c.peers {
		c.start(p.ID)
	}
	l = c.leader(5 * time.Second)
	if err := l.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(l.State().ICE); got != 10 {
		t.Fatalf("after restart leader has %d ICE entries, want 10", got)
	}
}

func TestLeadershipTransferOnClose(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader(5 * time.Second)
	oldTerm := l.Term()
	if err := l.Apply(context.Background(), &fsm.Noop{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	delete(c.nodes, l.ID())
	nl := c.leader(5 * time.Second)
	t.Logf("new leader %s after %v (term %d -> %d)", nl.ID(), time.Since(start), oldTerm, nl.Term())
	if nl.ID() == l.ID() {
		t.Fatal("closed replica still leader")
	}
}

func TestVerifyLeaderFailsOnMinority(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader(5 * time.Second)
	term := l.Term()
	if err := l.VerifyLeader(context.Background(), term); err != nil {
		t.Fatalf("leader with quorum failed to verify: %v", err)
	}
	for id, n := range c.nodes {
		if n != l {
			_ = n.Kill()
			delete(c.nodes, id)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// An acknowledgement already in flight when the followers died may still
	// count once; within the leader lease the isolated leader must be fenced.
	fenced := false
	for i := 0; i < 20 && !fenced; i++ {
		fenced = l.VerifyLeader(ctx, term) != nil
		time.Sleep(50 * time.Millisecond)
	}
	if !fenced {
		t.Fatal("isolated leader kept verifying its leadership")
	}
	if err := l.ApplyInTerm(ctx, term+1, &fsm.Noop{}); err == nil {
		t.Fatal("apply in a term not held succeeded")
	}
}

func TestPlanRemovalsKeepsQuorum(t *testing.T) {
	now := time.Unix(10000, 0)
	v := func(ids ...string) []raft.Server {
		var out []raft.Server
		for _, id := range ids {
			out = append(out, raft.Server{ID: raft.ServerID(id), Suffrage: raft.Voter})
		}
		return out
	}
	old := now.Add(-time.Hour)
	cases := []struct {
		name     string
		servers  []raft.Server
		expected []string
		failed   map[string]time.Time
		min      int
		want     int
	}{
		{"expected peers are never removed", v("a", "b", "c"), []string{"a", "b", "c"}, map[string]time.Time{"c": old}, 3, 0},
		{"scale-down removes dead extras", v("a", "b", "c", "d", "e"), []string{"a", "b", "c"}, map[string]time.Time{"d": old, "e": old}, 3, 2},
		{"recently failed is kept", v("a", "b", "c", "d"), []string{"a", "b", "c"}, map[string]time.Time{"d": now.Add(-time.Second)}, 3, 0},
		{"never below min voters", v("a", "b", "x"), []string{"a", "b"}, map[string]time.Time{"x": old}, 3, 0},
		{"not without healthy quorum", v("a", "b", "c", "x", "y"), []string{"a", "b", "c"}, map[string]time.Time{"x": old, "y": old, "b": old, "c": old}, 3, 0},
	}
	for _, tc := range cases {
		exp := map[string]bool{}
		for _, e := range tc.expected {
			exp[e] = true
		}
		got := planRemovals(tc.servers, exp, tc.failed, now, time.Minute, tc.min, "a")
		if len(got) != tc.want {
			t.Errorf("%s: removed %v, want %d removals", tc.name, got, tc.want)
		}
	}
}

func TestParsePeersAndStatefulSet(t *testing.T) {
	p, err := ParsePeers("a=127.0.0.1:1|127.0.0.1:2, b=h:3")
	if err != nil || len(p) != 2 || p[0].HTTPAddr != "127.0.0.1:2" || p[1].RaftAddr != "h:3" {
		t.Fatalf("ParsePeers = %+v, %v", p, err)
	}
	if _, err := ParsePeers("a=nope"); err == nil {
		t.Fatal("bad address accepted")
	}
	if _, err := ParsePeers("a=h:1,a=h:2"); err == nil {
		t.Fatal("duplicate id accepted")
	}
	s, err := StatefulSetPeers("dovetail-coordinator-1", 3, "dc.ns.svc", 7000, 8080)
	if err != nil || len(s) != 3 || s[2].RaftAddr != "dovetail-coordinator-2.dc.ns.svc:7000" {
		t.Fatalf("StatefulSetPeers = %+v, %v", s, err)
	}
	if _, err := StatefulSetPeers("nodash", 3, "", 1, 2); err == nil {
		t.Fatal("bad pod name accepted")
	}
}

// TestDeadUnexpectedServerIsRemoved: a fourth server that is not in the
// expected peer set (say, left over from a scale-down) is removed by the
// leader once it has failed for DeadServerTimeout; the expected three stay.
func TestDeadUnexpectedServerIsRemoved(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader(5 * time.Second)
	extraAddr := freeport.Addrs(t, 1)[0]
	extraPeers := append(append([]Peer(nil), c.peers...), Peer{ID: "extra", RaftAddr: extraAddr})
	cfg := fastConfig(t, "extra", filepath.Join(t.TempDir(), "extra"), extraPeers)
	cfg.Peers = nil // not a founder: it waits to be added
	extra, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range extra.LeaderNotify() {
		}
	}()
	if err := l.Raft().AddVoter("extra", raft.ServerAddress(extraAddr), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if err := l.Apply(context.Background(), &fsm.Noop{}); err != nil {
		t.Fatal(err)
	}
	_ = extra.Kill()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = l.ReconcileMembership(ctx, 50*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		servers, err := l.Servers()
		if err == nil && len(servers) == 3 {
			for _, s := range servers {
				if s.ID == "extra" {
					t.Fatal("wrong server removed")
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers = %v, %v", servers, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDataDirInUseFailsFast(t *testing.T) {
	c := newTestCluster(t, 3)
	id := c.peers[0].ID
	cfg := fastConfig(t, id, c.dirs[id], c.peers)
	cfg.BindAddr = "127.0.0.1:0"
	if _, err := Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second replica on the same data dir: %v", err)
	}
	_ = c.nodes[id].Kill()
	_ = c.nodes[id].Kill() // idempotent
	delete(c.nodes, id)
	c.start(id) // the lock is released on Kill
}

var (
	bufMu sync.Mutex
	bufs  = map[*testing.T]*syncbuffer.Buffer{}
)

// bufFor is the test's replica log, printed only when the test fails (how
// the lease step-downs above were found).
func bufFor(t *testing.T) *syncbuffer.Buffer {
	bufMu.Lock()
	defer bufMu.Unlock()
	if b, ok := bufs[t]; ok {
		return b
	}
	b := &syncbuffer.Buffer{}
	bufs[t] = b
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(b.String())
		}
		bufMu.Lock()
		delete(bufs, t)
		bufMu.Unlock()
	})
	return b
}
