package ec2

import (
	"context"
	"slices"
	"testing"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// The disruption planner detects subnet and security-group drift from the
// instance's recorded network placement, so Create, Get, List and the
// launch replay must all report it, and agree with what EC2 holds.
func TestInstanceNetworkRoundTrip(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	nc := testNodeClass("default")
	req := request("claim-net", opt("m5.large", "us-east-1b", cloud.CapacityTypeOnDemand, 0.096))

	inst, err := e.p.Create(ctx, nc, req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	info, ok := e.sim.Instance(inst.ID)
	if !ok {
		t.Fatalf("simulator has no instance %s", inst.ID)
	}
	if info.SubnetID == "" || !slices.Contains(e.sim.SubnetIDs(), info.SubnetID) {
		t.Fatalf("simulator subnet %q is not one of %v", info.SubnetID, e.sim.SubnetIDs())
	}
	wantSGs := []string{e.sim.SecurityGroupID()}
	if !slices.Equal(info.SecurityGroupIDs, wantSGs) {
		t.Fatalf("simulator security groups %v, want %v", info.SecurityGroupIDs, wantSGs)
	}
	check := func(what string, got *cloud.Instance) {
		t.Helper()
		if got.SubnetID != info.SubnetID {
			t.Errorf("%s: subnet %q, want %q", what, got.SubnetID, info.SubnetID)
		}
		if !slices.Equal(got.SecurityGroupIDs, wantSGs) {
			t.Errorf("%s: security groups %v, want %v", what, got.SecurityGroupIDs, wantSGs)
		}
	}
	check("Create", inst)

	got, err := e.p.Get(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	check("Get", got)

	list, err := e.p.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
	check("List", list[0])

	// A fresh provider (a new leader) replays the launch from EC2's answer
	// rather than its own memory of the CreateFleet response.
	p2, _ := newProvider(t, e)
	replayed, err := p2.Create(ctx, nc, req)
	if err != nil {
		t.Fatalf("replayed Create: %v", err)
	}
	if replayed.ID != inst.ID {
		t.Fatalf("replay launched %s, want %s", replayed.ID, inst.ID)
	}
	check("replayed Create", replayed)

	// What the nodeclass controller writes to status comes from the same
	// resolution, so a freshly launched instance must not look drifted.
	res, err := e.p.ResolveNodeClass(ctx, nc)
	if err != nil {
		t.Fatalf("ResolveNodeClass: %v", err)
	}
	if !slices.ContainsFunc(res.Subnets, func(s cloud.Subnet) bool { return s.ID == inst.SubnetID }) {
		t.Errorf("launched subnet %s is not among the resolved %+v", inst.SubnetID, res.Subnets)
	}
	var resolvedSGs []string
	for _, g := range res.SecurityGroups {
		resolvedSGs = append(resolvedSGs, g.ID)
	}
	if !slices.Equal(resolvedSGs, inst.SecurityGroupIDs) {
		t.Errorf("launched security groups %v, resolved %v", inst.SecurityGroupIDs, resolvedSGs)
	}
}
