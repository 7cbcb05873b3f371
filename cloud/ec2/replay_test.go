package ec2

import (
	"context"
	"errors"
	"testing"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// A launch that found no capacity is replayed later (same token) with other
// options: EC2 refuses the token for the new parameters, the provider finds
// no instance tagged for the NodeClaim and launches under a derived token.
func TestReplayWithOtherOptionsAfterICE(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	nc := testNodeClass("default")
	if err := e.sim.ExhaustPool("m5.large", "", ""); err != nil {
		t.Fatal(err)
	}
	req := request("claim-replay", opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.03))
	_, err := e.p.Create(ctx, nc, req)
	var ice *cloud.InsufficientCapacityError
	if !errors.As(err, &ice) {
		t.Fatalf("Create = %v, want InsufficientCapacityError", err)
	}

	// A new leader (empty ICE cache) replays the intent with re-planned options.
	p2, _ := newProvider(t, e)
	req.Options = []cloud.LaunchOption{opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.03), opt("c5.large", "us-east-1b", cloud.CapacityTypeSpot, 0.03)}
	inst, err := p2.Create(ctx, nc, req)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if inst.InstanceType != "c5.large" {
		t.Fatalf("replay launched %s", inst.InstanceType)
	}
	// Replaying once more returns the same instance.
	again, err := p2.Create(ctx, nc, req)
	if err != nil || again.ID != inst.ID {
		t.Fatalf("second replay = %v, %v; want %s", again, err, inst.ID)
	}
	if n := len(e.sim.Instances()); n != 1 {
		t.Fatalf("%d instances, want 1", n)
	}

	// Without a NodeClaim name a token reused with other options is refused.
	anon := request("", opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.03))
	anon.ClientToken = "anon-token"
	p3, _ := newProvider(t, e)
	if _, err := p3.Create(ctx, nc, anon); !errors.As(err, &ice) {
		t.Fatalf("anon Create = %v", err)
	}
	anon.Options = req.Options
	p4, _ := newProvider(t, e)
	if _, err := p4.Create(ctx, nc, anon); err == nil || errors.As(err, &ice) {
		t.Fatalf("anon replay with other options = %v, want a refusal", err)
	}
	if n := len(e.sim.Instances()); n != 1 {
		t.Fatalf("%d instances, want 1", n)
	}
}
