package coordinator

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// TestResumeHaltedRolloutThroughFollower: a halted rollout is resumed with
// POST /v1/rollouts/{pool}/resume sent to a follower; the leader clears the
// halt and the failed replacement step, and every replica sees it. Unknown
// pools answer 404, rollouts that are not halted 409, and nothing changes.
func TestResumeHaltedRolloutThroughFollower(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	ctx := context.Background()
	now := time.Now().UTC()
	for _, cmd := range []fsm.Command{
		fsm.RolloutSet{Rollout: fsm.Rollout{NodePool: "gp", TargetAMI: "ami-new", Done: []string{"n0"},
			InProgress: []string{"n1"}, Remaining: []string{"n2"}, Paused: true,
			BlockedReason: "replacement gp-r1 for node n1 not Ready after 15m0s; rollout halted", StartedAt: now, UpdatedAt: now}},
		fsm.RolloutSet{Rollout: fsm.Rollout{NodePool: "web", TargetAMI: "ami-new", Remaining: []string{"w1"}, StartedAt: now}},
		fsm.DisruptionBegin{Disruption: fsm.Disruption{NodeName: "n1", NodePool: "gp", Reason: "Drifted", Since: now,
			Replacements: []string{"gp-r1"}, Phase: disruption.PhaseReplacementNotReady}},
		// Another pool's failed step and this pool's step in another phase stay.
		fsm.DisruptionBegin{Disruption: fsm.Disruption{NodeName: "w1", NodePool: "web", Reason: "Drifted", Since: now,
			Phase: disruption.PhaseReplacementNotReady}},
		fsm.DisruptionBegin{Disruption: fsm.Disruption{NodeName: "n2", NodePool: "gp", Reason: "Expired", Since: now, Phase: "Draining"}},
	} {
		if err := c.apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	leader := c.acting(5 * time.Second)
	var follower string
	for _, p := range c.peers {
		if p.ID != leader.Node().ID() {
			follower = p.ID
			break
		}
	}
	cl := api.NewClient(c.https[follower])

	code := func(err error) int {
		var he *api.HTTPError
		if errors.As(err, &he) {
			return he.StatusCode
		}
		t.Fatalf("want an HTTP error, got %v", err)
		return 0
	}
	if _, err := cl.ResumeRollout(ctx, "nope"); code(err) != http.StatusNotFound {
		t.Fatalf("unknown pool: %v", err)
	}
	if _, err := cl.ResumeRollout(ctx, "web"); code(err) != http.StatusConflict {
		t.Fatalf("rolling pool: %v", err)
	}

	res, err := cl.ResumeRollout(ctx, "gp")
	if err != nil {
		t.Fatal(err)
	}
	if res.Leader != leader.Node().ID() || res.Rollout.Paused || res.Rollout.BlockedReason != "" ||
		res.Rollout.TargetAMI != "ami-new" || !slices.Equal(res.Cleared, []string{"n1"}) ||
		!slices.Equal(res.Rollout.Remaining, []string{"n2"}) {
		t.Fatalf("resume answer = %+v", res)
	}
	// Every replica serves the resumed state.
	for _, p := range c.peers {
		var ro api.Rollouts
		if err := api.NewClient(c.https[p.ID]).Get(ctx, api.PathRollouts+"?consistent=1", &ro); err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		if len(ro.Rollouts) != 2 || ro.Rollouts[0].NodePool != "gp" || ro.Rollouts[0].Paused {
			t.Fatalf("%s rollouts = %+v", p.ID, ro.Rollouts)
		}
	}
	st := leader.Node().State()
	if _, ok := st.Disruptions["n1"]; ok {
		t.Fatalf("failed replacement step of n1 not cleared")
	}
	if _, ok := st.Disruptions["w1"]; !ok {
		t.Fatalf("other pool's ledger entry was cleared")
	}
	if _, ok := st.Disruptions["n2"]; !ok {
		t.Fatalf("ledger entry in another phase was cleared")
	}
	if !st.Rollouts["web"].StartedAt.Equal(now) || st.Rollouts["web"].Paused {
		t.Fatalf("other rollout changed: %+v", st.Rollouts["web"])
	}
	// Resuming twice: the second answer says there is nothing to resume.
	if _, err := cl.ResumeRollout(ctx, "gp"); code(err) != http.StatusConflict {
		t.Fatalf("second resume: %v", err)
	}
}
