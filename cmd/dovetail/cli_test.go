package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
)

// execCLI runs the dovetail command line in process and returns its output.
func execCLI(args ...string) (string, error) {
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	return out.String(), err
}

// runCLI is execCLI for commands that must succeed.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := execCLI(args...)
	if err != nil {
		t.Fatalf("dovetail %v: %v", args, err)
	}
	return out
}

// startLeader starts a single-replica Raft node on loopback and waits until
// it leads, so the CLI tests can commit state and serve it through the API.
func startLeader(t *testing.T, id string) *raftnode.Node {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	node, err := raftnode.Start(context.Background(), raftnode.Config{ID: id, DataDir: filepath.Join(t.TempDir(), "r"),
		BindAddr: addr, Peers: []raftnode.Peer{{ID: id, RaftAddr: addr}}, SegmentSize: 1 << 20, Logger: quiet,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Kill() })
	go func() {
		for range node.LeaderNotify() {
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !node.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return node
}
