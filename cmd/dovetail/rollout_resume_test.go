package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// TestRolloutsResume resumes a halted rollout with `dovetail rollouts resume`
// against a real coordinator API, and checks the answers for a pool without
// a rollout and for a rollout that is not halted.
func TestRolloutsResume(t *testing.T) {
	node := startLeader(t, "cli-r")
	ctx := context.Background()
	now := time.Now()
	for _, c := range []fsm.Command{
		fsm.RolloutSet{Rollout: fsm.Rollout{NodePool: "gp", TargetAMI: "ami-0new", Done: []string{"a"}, InProgress: []string{"b"},
			Remaining: []string{"c", "d"}, Paused: true, BlockedReason: "replacement gp-x for node b not Ready after 15m0s", StartedAt: now}},
		fsm.RolloutSet{Rollout: fsm.Rollout{NodePool: "web", TargetAMI: "ami-0new", Remaining: []string{"w"}, StartedAt: now}},
		fsm.DisruptionBegin{Disruption: fsm.Disruption{NodeName: "b", NodePool: "gp", Reason: "Drifted", Since: now,
			Replacements: []string{"gp-x"}, Phase: disruption.PhaseReplacementNotReady}},
	} {
		if err := node.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.New(api.Config{Backend: node, Log: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)

	out, err := execCLI("rollouts", "--server", srv.URL, "-o", "text")
	if err != nil || !strings.Contains(out, "paused replacement gp-x") || !strings.Contains(out, "Halted") || !strings.Contains(out, "1/4") {
		t.Fatalf("rollouts before resume: %v\n%s", err, out)
	}
	if _, err := execCLI("rollouts", "resume", "nope", "--server", srv.URL, "-o", "text"); err == nil ||
		!strings.Contains(err.Error(), `nodepool "nope" has no rollout`) {
		t.Fatalf("unknown pool: %v", err)
	}
	if _, err := execCLI("rollouts", "resume", "web", "--server", srv.URL, "-o", "text"); err == nil ||
		!strings.Contains(err.Error(), "nothing to resume") || !strings.Contains(err.Error(), "not halted (Rolling)") {
		t.Fatalf("rolling pool: %v", err)
	}
	if _, err := execCLI("rollouts", "resume", "--server", srv.URL); err == nil {
		t.Fatal("resume without a nodepool accepted")
	}

	out, err = execCLI("rollouts", "resume", "gp", "--server", srv.URL, "-o", "text")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nodepool gp resumed", "Target AMI:   ami-0new", "Rolling, 1 of 4 nodes done, 1 in progress, 2 remaining", "Retrying:     b"} {
		if !strings.Contains(out, want) {
			t.Errorf("resume output lacks %q:\n%s", want, out)
		}
	}
	st := node.State()
	if st.Rollouts["gp"].Paused || st.Rollouts["gp"].BlockedReason != "" || st.Disruptions["b"] != nil {
		t.Fatalf("state after resume: %+v %+v", st.Rollouts["gp"], st.Disruptions)
	}
	out, err = execCLI("rollouts", "--server", srv.URL, "-o", "text")
	if err != nil || strings.Contains(out, "paused") || strings.Contains(out, "Halted") || !strings.Contains(out, "Rolling") {
		t.Fatalf("rollouts after resume: %v\n%s", err, out)
	}

	// The hint the planner prints (`dovetail rollout resume POOL`) works too;
	// the rollout is no longer halted, so the answer is 409 (an error).
	if _, err := execCLI("rollout", "resume", "gp", "--server", srv.URL, "-o", "json"); err == nil ||
		!strings.Contains(err.Error(), "nothing to resume") {
		t.Fatalf("second resume: %v", err)
	}
	// -o json prints the answer.
	if err := node.Apply(ctx, fsm.RolloutSet{Rollout: fsm.Rollout{NodePool: "gp", TargetAMI: "ami-0new", Paused: true, StartedAt: now}}); err != nil {
		t.Fatal(err)
	}
	out, err = execCLI("rollout", "resume", "gp", "--server", srv.URL, "-o", "json")
	var res api.RolloutResumed
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.Rollout.Paused || res.Leader != "cli-r" {
		t.Fatalf("resume -o json: %v\n%s", err, out)
	}
}

// TestResumeRetriesOnlyWhatHadNoEffect: a 503 marked notApplied (no leader
// yet) is retried; a 503 with an unknown outcome is not, so a later 409
// cannot hide a resume the first try did.
func TestResumeRetriesOnlyWhatHadNoEffect(t *testing.T) {
	for _, notApplied := range []bool{true, false} {
		calls := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls++
			if r.Method != http.MethodPost || r.URL.Path != "/v1/rollouts/gp/resume" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			if calls == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				_ = json.NewEncoder(w).Encode(api.Error{Error: "no leader known", NotApplied: notApplied})
				return
			}
			_ = json.NewEncoder(w).Encode(api.RolloutResumed{Rollout: fsm.Rollout{NodePool: "gp"}, Leader: "c1"})
		}))
		res, err := resumeRollout(context.Background(), api.NewClient(srv.URL), "gp", 5*time.Second, 3)
		srv.Close()
		if notApplied && (err != nil || res.Leader != "c1" || calls != 2) {
			t.Fatalf("notApplied 503 should be retried: %v %+v, %d calls", err, res, calls)
		}
		if !notApplied && (err == nil || calls != 1) {
			t.Fatalf("unknown-outcome 503 must not be retried: %v, %d calls", err, calls)
		}
	}
}
