package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

// TestClusterStateCommands runs status, nodes, launches and rollouts against
// a real (single-replica) coordinator API.
func TestClusterStateCommands(t *testing.T) {
	node := startLeader(t, "cli-0")
	ctx := context.Background()
	now := time.Now()
	for _, c := range []fsm.Command{
		fsm.IntentCreate{Intent: fsm.Intent{Token: "t1", NodeClaim: "default-x1", NodePool: "default", CreatedAt: now}},
		fsm.IntentCreate{Intent: fsm.Intent{Token: "t2", NodeClaim: "default-x2", NodePool: "default", CreatedAt: now}},
		fsm.IntentResult{Token: "t2", State: fsm.IntentLaunched, At: now, Instance: &cloud.Instance{ID: "i-2", InstanceType: "m5.large", Zone: "us-east-1a"}},
		fsm.IntentUpdate{Token: "t2", Registered: true, NodeName: "ip-10-0-0-2", At: now},
		fsm.ReportReceived{ReceivedAt: now, Report: report.Report{ID: "r", Kind: report.KindHealth, NodeName: "ip-10-0-0-2",
			Checks: []report.CheckResult{{Name: "containerd", State: "failed"}}}},
		fsm.RolloutSet{Rollout: fsm.Rollout{NodePool: "default", TargetAMI: "ami-new", Done: []string{"a"}, Remaining: []string{"b", "c"}, BlockedReason: "budget"}},
		fsm.LeaderEpoch{Term: node.Term(), Leader: "cli-0", At: now},
	} {
		if err := node.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.New(api.Config{Backend: node, Log: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)

	out := runCLI(t, "status", "--server", srv.URL)
	for _, want := range []string{"Leader:        cli-0", "1 open, 2 total", "cli-0", "Voter"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	out = runCLI(t, "nodes", "--server", srv.URL, "--consistent")
	if !strings.Contains(out, "ip-10-0-0-2") || !strings.Contains(out, "containerd=failed") || !strings.Contains(out, "i-2") {
		t.Errorf("nodes output:\n%s", out)
	}
	out = runCLI(t, "launches", "--server", srv.URL)
	if !strings.Contains(out, "default-x1") || strings.Contains(out, "default-x2") {
		t.Errorf("open launches output:\n%s", out)
	}
	out = runCLI(t, "launches", "--server", srv.URL, "-A", "-o", "json")
	var launches api.Launches
	if err := json.Unmarshal([]byte(out), &launches); err != nil || len(launches.Intents) != 2 {
		t.Errorf("launches -A -o json: %v\n%s", err, out)
	}
	out = runCLI(t, "rollouts", "--server", srv.URL, "-o", "text")
	if !strings.Contains(out, "ami-new") || !strings.Contains(out, "budget") {
		t.Errorf("rollouts output:\n%s", out)
	}
}
