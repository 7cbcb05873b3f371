package raftnode

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/internal/freeport"
)

// soloWithSealedSegments starts a one-replica cluster with small WAL
// segments, commits enough to seal a few, and stops it. It returns the
// config (to restart with) and the sealed segment files, oldest first.
func soloWithSealedSegments(t *testing.T) (Config, []string) {
	t.Helper()
	addr := freeport.Addrs(t, 1)[0]
	peers := []Peer{{ID: "solo", RaftAddr: addr}}
	cfg := fastConfig(t, "solo", filepath.Join(t.TempDir(), "solo"), peers)
	cfg.SegmentSize = 64 << 10
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range n.LeaderNotify() {
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pad := strings.Repeat("x", 2000)
	for i := range 150 {
		if err := n.Apply(context.Background(), fsm.LeaderEpoch{Term: uint64(i + 1), Leader: pad, At: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(cfg.DataDir, "wal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(segs)
	if len(segs) < 3 {
		t.Fatalf("only %d WAL segments; want sealed ones", len(segs))
	}
	return cfg, segs[:len(segs)-1]
}

// A flipped bit in a sealed WAL segment must stop the replica with an
// error naming the file and the recovery, not panic in raft.NewRaft.
func TestBitFlipInSealedSegmentIsAClearError(t *testing.T) {
	cfg, sealed := soloWithSealedSegments(t)
	for _, seg := range sealed {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range []int{len(b) / 3, len(b) - 64} {
			b[off] ^= 0x10
		}
		if err := os.WriteFile(seg, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var (
		n   *Node
		err error
	)
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Start panicked on a corrupt segment: %v\n%s", r, debug.Stack())
			}
		}()
		n, err = Start(context.Background(), cfg)
	}()
	if err == nil {
		_ = n.Kill()
		t.Fatal("a replica with a corrupt sealed segment started")
	}
	msg := err.Error()
	if !errors.Is(err, ErrStorage) || !strings.Contains(msg, sealed[0]) || !strings.Contains(msg, "--raft-rejoin") || !strings.Contains(msg, "corrupt") {
		t.Fatalf("error does not name the segment %s and the recovery: %v", sealed[0], err)
	}
	// The data dir lock was released: the documented recovery can run.
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
}

// A replica whose WAL directory was deleted (data dir otherwise kept) must
// refuse to start rather than bootstrap an empty replica; after the
// documented recovery (wipe the data dir, start with Rejoin) it takes the
// log from its peers and does not bootstrap.
func TestLostWALIsRefusedAndRejoinRecovers(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader(10 * time.Second)
	for i := range 20 {
		if err := l.Apply(context.Background(), fsm.LeaderEpoch{Term: uint64(100 + i), Leader: "x", At: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	want := l.FSM().AppliedIndex()
	var victim string
	for id, n := range c.nodes {
		if n != l {
			victim = id
			break
		}
	}
	waitIndex(t, c.nodes[victim], want)
	dir := c.dirs[victim]
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, memberFile)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no membership marker written")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = c.nodes[victim].Kill()
	delete(c.nodes, victim)
	if err := os.RemoveAll(filepath.Join(dir, "wal")); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(t, victim, dir, c.peers)
	n, err := Start(context.Background(), cfg)
	if err == nil {
		_ = n.Kill()
		t.Fatal("a replica whose WAL was deleted started (and bootstrapped an empty log)")
	}
	if !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), memberFile) || !strings.Contains(err.Error(), "--raft-rejoin") {
		t.Fatalf("lost WAL error: %v", err)
	}
	// Recovery: wipe the whole data dir, start with Rejoin.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	cfg.Rejoin = true
	n, err = Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("rejoin after wiping: %v", err)
	}
	go func() {
		for range n.LeaderNotify() {
		}
	}()
	c.nodes[victim] = n
	waitIndex(t, n, want)
	if servers, err := n.Servers(); err != nil || len(servers) != 3 {
		t.Fatalf("rejoined replica's configuration: %v, %v", servers, err)
	}
}
