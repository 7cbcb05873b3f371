package api_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/report"
)

func soloNode(t testing.TB) *raftnode.Node {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	n, err := raftnode.Start(context.Background(), raftnode.Config{ID: "solo", DataDir: filepath.Join(t.TempDir(), "r"),
		BindAddr: addr, Peers: []raftnode.Peer{{ID: "solo", RaftAddr: addr}}, SegmentSize: 1 << 20,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Kill() })
	go func() {
		for range n.LeaderNotify() {
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

func TestReportValidationAndIntake(t *testing.T) {
	n := soloNode(t)
	srv := httptest.NewServer(api.New(api.Config{Backend: n, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()
	post := func(body string) int {
		resp, err := http.Post(srv.URL+report.Path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("{not json"); code != http.StatusBadRequest {
		t.Fatalf("garbage: %d", code)
	}
	if code := post(`{"kind":"Health","nodeName":"n"}`); code != http.StatusBadRequest {
		t.Fatalf("no id: %d", code)
	}
	// Bounded input: a report over report.MaxBytes is refused before it is
	// decoded, and nothing about its node is committed.
	big := `{"id":"big","kind":"Health","nodeName":"huge","message":"` + strings.Repeat("x", report.MaxBytes) + `"}`
	if code := post(big); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized report: %d", code)
	}
	if n.State().Nodes["huge"] != nil {
		t.Fatal("oversized report was committed")
	}
	if code := post(`{"id":"x1","kind":"Interruption","nodeName":"n","action":"terminate"}`); code != http.StatusOK {
		t.Fatalf("valid report: %d", code)
	}
	resp, err := http.Get(srv.URL + api.PathReadyz)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	var node api.Node
	if err := api.NewClient(srv.URL).Get(context.Background(), api.PathNodes+"/n?consistent=1", &node); err != nil {
		t.Fatal(err)
	}
	if node.Interruption != "Interruption/terminate" {
		t.Fatalf("node = %+v", node)
	}
	if err := api.NewClient(srv.URL).Get(context.Background(), api.PathNodes+"/unknown", &node); err == nil {
		t.Fatal("unknown node found")
	}
}

func TestNodesFromStateJoinsTables(t *testing.T) {
	st := fsm.NewState()
	st.Intents["t"] = &fsm.Intent{Token: "t", NodeClaim: "nc", NodePool: "pool", NodeName: "node-1", Instance: &cloud.Instance{ID: "i-1"}}
	st.Nodes["node-1"] = &fsm.NodeStatus{NodeName: "node-1", Health: "degraded",
		Checks: []report.CheckResult{{Name: "disk", State: "degraded"}, {Name: "kubelet", State: "ok"}},
		Drain:  &report.Report{Blocked: "pdb web/api"}}
	st.Disruptions["node-1"] = &fsm.Disruption{NodeName: "node-1", Reason: "Drifted", Phase: "Draining"}
	st.Nodes["node-2"] = &fsm.NodeStatus{NodeName: "node-2", ReplaceRequested: true}
	rows := api.NodesFromState(st)
	if len(rows) != 2 {
		t.Fatalf("rows = %+v", rows)
	}
	r := rows[0]
	if r.Name != "node-1" || r.InstanceID != "i-1" || r.NodeClaim != "nc" || r.NodePool != "pool" || r.Health != "degraded" ||
		len(r.Checks) != 1 || r.Checks[0] != "disk=degraded" || r.Disruption != "Drifted/Draining" || r.Drain != "blocked: pdb web/api" {
		t.Fatalf("row = %+v", r)
	}
	if !rows[1].Replace {
		t.Fatalf("row 2 = %+v", rows[1])
	}
}
