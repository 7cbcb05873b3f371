package ec2

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// With the SDK's retries off, Dovetail's own fleet-level backoff still gets
// a throttled CreateFleet through, under the same client token.
func TestFleetThrottlingRetriedByProvider(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	p2, err := New(ctx, Config{Region: e.sim.Region(), Endpoint: e.sim.URL(), Credentials: e.p.cfg.Credentials, ClusterName: testCluster,
		Clock: e.clock, Logger: e.p.cfg.Logger, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	p2.sleep = func(ctx context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	nc := testNodeClass("default")
	warm := request("", opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096))
	warm.ClientToken = "warm"
	if _, err := p2.Create(ctx, nc, warm); err != nil {
		t.Fatal(err)
	}
	e.sim.Throttle(3, 0)
	req := request("", opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096))
	req.ClientToken = "throttled"
	inst, err := p2.Create(ctx, nc, req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if len(slept) != 3 || slept[1] != 2*slept[0] {
		t.Fatalf("backoff = %v, want 3 doubling waits", slept)
	}
	if info, ok := e.sim.Instance(inst.ID); !ok || info.ClientToken != "throttled-on-demand-0" {
		t.Fatalf("instance %+v", info)
	}
	e.sim.Throttle(10, 0)
	req.ClientToken = "throttled-out"
	if _, err := p2.Create(ctx, nc, req); !isThrottle(err) || errorCode(err) != "RequestLimitExceeded" {
		t.Fatalf("Create past the retry budget = %v", err)
	}
	e.sim.Throttle(0, 0)
}

func TestSSMParameterTermAndTagging(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	param := "/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/arm64/standard/recommended/image_id"
	want, _ := e.sim.SSMParameter(param)
	r, err := e.p.ResolveNodeClass(ctx, testNodeClass("ssm", awsv1.AMISelectorTerm{SSMParameter: param}))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.AMIs) != 1 || r.AMIs[0].ID != want || r.AMIs[0].Arch != "arm64" {
		t.Fatalf("ssmParameter term = %+v, want %s", r.AMIs, want)
	}
	if _, err := e.p.ResolveNodeClass(ctx, testNodeClass("ssm-missing", awsv1.AMISelectorTerm{SSMParameter: "/nope"})); !errors.Is(err, ErrNoAMI) {
		t.Fatalf("missing parameter: %v", err)
	}

	inst, err := e.p.Create(ctx, testNodeClass("default"), request("claim-tag", opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.Tag(ctx, inst.ID, map[string]string{"Name": "ip-10-0-0-10.ec2.internal"}); err != nil {
		t.Fatal(err)
	}
	if info, _ := e.sim.Instance(inst.ID); info.Tags["Name"] != "ip-10-0-0-10.ec2.internal" || info.Tags[cloud.TagNodeClaim] != "claim-tag" {
		t.Fatalf("tags = %v", info.Tags)
	}

	// The store can be fed from outside (e.g. a spot interruption).
	e.p.ice.MarkUnavailable("m5.large", "us-east-1b", cloud.CapacityTypeSpot, "SpotInterruption")
	if ice := e.p.ICE(); len(ice) != 1 || ice[0].Code != "SpotInterruption" {
		t.Fatalf("ICE = %+v", ice)
	}
	// Refresh drops caches: the next InstanceTypes asks EC2 again.
	if _, err := e.p.InstanceTypes(ctx); err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(e.p.metrics.calls.WithLabelValues("EC2", "DescribeInstanceTypes"))
	if _, err := e.p.InstanceTypes(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.p.metrics.calls.WithLabelValues("EC2", "DescribeInstanceTypes")); got != before {
		t.Fatalf("cached InstanceTypes called DescribeInstanceTypes")
	}
	e.p.Refresh()
	if _, err := e.p.InstanceTypes(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.p.metrics.calls.WithLabelValues("EC2", "DescribeInstanceTypes")); got == before {
		t.Fatalf("Refresh did not refetch")
	}
}

// When EC2 cannot be reached the cached types and prices are served, and
// the refresh is retried a minute later rather than on every call.
func TestInstanceTypesServedStaleWhenEC2Fails(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	first, err := e.p.InstanceTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	e.sim.Throttle(1000, 0)
	stale, err := e.p.InstanceTypes(ctx)
	if err != nil || len(stale) != len(first) {
		t.Fatalf("stale InstanceTypes = %d types, %v; want %d", len(stale), err, len(first))
	}
	calls := testutil.ToFloat64(e.p.metrics.calls.WithLabelValues("EC2", "DescribeInstanceTypes"))
	if _, err := e.p.InstanceTypes(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.p.metrics.calls.WithLabelValues("EC2", "DescribeInstanceTypes")); got != calls {
		t.Fatal("a failed refresh is retried on every call")
	}
	e.sim.Throttle(0, 0)
	e.clock.Advance(time.Minute)
	if _, err := e.p.InstanceTypes(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.p.metrics.calls.WithLabelValues("EC2", "DescribeInstanceTypes")); got == calls {
		t.Fatal("refresh not retried after a minute")
	}

	// A provider that never fetched has nothing to serve: the error shows.
	p2, _ := newProvider(t, e)
	e.sim.Throttle(1000, 0)
	if _, err := p2.InstanceTypes(ctx); !isThrottle(err) {
		t.Fatalf("cold InstanceTypes under throttling = %v", err)
	}
	e.sim.Throttle(0, 0)
}

// EC2 is eventually consistent: right after a launch, DescribeInstances may
// not know the instance. The provider must not report it gone (or launch
// it again) inside that window, and must forget it once deleted.
func TestFreshLaunchSurvivesEventualConsistency(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	// An instance CreateFleet just returned but describe calls do not show yet.
	ghost := &cloud.Instance{ID: "i-0f00000000000ghost", InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: "spot",
		State: cloud.StatePending, Tags: map[string]string{cloud.TagNodeClaim: "claim-ghost", cloud.TagCluster: testCluster}}
	e.p.recent.add(ghost)

	got, err := e.p.Get(ctx, ghost.ID)
	if err != nil || got.ID != ghost.ID || got.State != cloud.StatePending {
		t.Fatalf("Get = %+v, %v; want the pending launch", got, err)
	}
	list, err := e.p.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != ghost.ID {
		t.Fatalf("List = %+v, %v", list, err)
	}
	again, err := e.p.Create(ctx, testNodeClass("default"), request("claim-ghost", opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.03)))
	if err != nil || again.ID != ghost.ID {
		t.Fatalf("replayed Create = %+v, %v; want the pending launch", again, err)
	}
	if n := len(e.sim.Instances()); n != 0 {
		t.Fatalf("replay launched %d instances", n)
	}

	// Past the window EC2's answer is the truth.
	e.clock.Advance(consistencyWindow)
	if _, err := e.p.Get(ctx, ghost.ID); !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("Get after the window = %v", err)
	}
	// Delete forgets at once.
	e.p.recent.add(ghost)
	if err := e.p.Delete(ctx, ghost.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Get(ctx, ghost.ID); !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
}
