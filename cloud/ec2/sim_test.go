package ec2

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

const testCluster = "dovetail-test"

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	sim   *ec2sim.Sim
	clock *fakeClock
	reg   *prometheus.Registry
	p     *Provider
}

// newEnv starts a simulator and a Provider talking to it through the real
// SDK. Both share a fake clock so cache and ICE TTLs can be stepped over.
func newEnv(t testing.TB, simCfg ec2sim.Config) *env {
	t.Helper()
	clock := newFakeClock()
	simCfg.Clock = clock
	simCfg.DisableIMDS = true
	if simCfg.ClusterName == "" {
		simCfg.ClusterName = testCluster
	}
	sim := ec2sim.New(simCfg)
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	e := &env{sim: sim, clock: clock}
	e.p, e.reg = newProvider(t, e)
	return e
}

func newProvider(t testing.TB, e *env, tune ...func(*Config)) (*Provider, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Region:            e.sim.Region(),
		Endpoint:          e.sim.URL(),
		Credentials:       credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		ClusterName:       testCluster,
		ClusterEndpoint:   "https://10.0.0.1:6443",
		ClusterCA:         "Q0EK",
		KubernetesVersion: "1.37",
		Clock:             e.clock,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry:          reg,
		MaxAttempts:       6,
		MaxBackoff:        20 * time.Millisecond,
	}
	for _, f := range tune {
		f(&cfg)
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Dovetail's own fleet-level backoff must not slow tests down.
	p.sleep = func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	return p, reg
}

func testNodeClass(name string, amiTerms ...awsv1.AMISelectorTerm) *awsv1.EC2NodeClass {
	if len(amiTerms) == 0 {
		amiTerms = []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}}
	}
	return &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           amiTerms,
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": testCluster}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": testCluster}}},
			Role:                       "KarpenterNodeRole-" + testCluster,
			Tags:                       map[string]string{"team": "infra"},
		},
	}
}

func opt(itype, zone, ct string, price float64) cloud.LaunchOption {
	return cloud.LaunchOption{InstanceType: itype, Zone: zone, CapacityType: ct, Price: price}
}

func request(claim string, opts ...cloud.LaunchOption) *cloud.LaunchRequest {
	return &cloud.LaunchRequest{
		ClientToken:   "token-" + claim,
		NodeClaimName: claim,
		NodePoolName:  "default",
		NodeClassName: "default",
		LeaderTerm:    7,
		Options:       opts,
		Labels:        map[string]string{"team": "infra", "node-role.kubernetes.io/worker": "refused-by-kubelet"},
		Taints:        []corev1.Taint{{Key: "dedicated", Value: "infra", Effect: corev1.TaintEffectNoSchedule}},
		StartupTaints: []corev1.Taint{{Key: "node.cilium.io/agent-not-ready", Effect: corev1.TaintEffectNoExecute}},
	}
}

func TestLaunchListTerminateRoundTrip(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	nc := testNodeClass("default")

	inst, err := e.p.Create(ctx, nc, request("claim-1",
		opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.03),
		opt("m5.large", "us-east-1b", cloud.CapacityTypeSpot, 0.031),
		opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096)))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if inst.CapacityType != cloud.CapacityTypeSpot || inst.InstanceType != "m5.large" {
		t.Fatalf("launched %s %s, want spot m5.large", inst.CapacityType, inst.InstanceType)
	}
	if inst.ProviderID != "aws:///"+inst.Zone+"/"+inst.ID || inst.ImageID == "" {
		t.Fatalf("bad instance: %+v", inst)
	}

	info, ok := e.sim.Instance(inst.ID)
	if !ok {
		t.Fatalf("simulator has no instance %s", inst.ID)
	}
	for k, want := range map[string]string{
		cloud.TagCluster: testCluster, cloud.TagNodePool: "default", cloud.TagNodeClaim: "claim-1",
		cloud.TagNodeClass: "default", cloud.TagLeaderTerm: "7", cloud.TagName: "claim-1", "team": "infra",
	} {
		if info.Tags[k] != want {
			t.Errorf("instance tag %s = %q, want %q", k, info.Tags[k], want)
		}
		if info.VolumeTags[k] != want {
			t.Errorf("volume tag %s = %q, want %q", k, info.VolumeTags[k], want)
		}
	}
	for _, want := range []string{
		"application/node.eks.aws", "apiServerEndpoint: \"https://10.0.0.1:6443\"",
		"--node-labels=karpenter.k8s.aws/ec2nodeclass=default,karpenter.sh/capacity-type=spot,karpenter.sh/nodepool=default,team=infra",
		"--register-with-taints=dedicated=infra:NoSchedule,node.cilium.io/agent-not-ready:NoExecute",
	} {
		if !strings.Contains(info.UserData, want) {
			t.Errorf("user data lacks %q:\n%s", want, info.UserData)
		}
	}
	if strings.Contains(info.UserData, "node-role") {
		t.Errorf("user data passes a label the kubelet refuses:\n%s", info.UserData)
	}

	list, err := e.p.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != inst.ID {
		t.Fatalf("List = %v, %v; want [%s]", list, err, inst.ID)
	}
	got, err := e.p.Get(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.State != cloud.StateRunning || got.PrivateIP == "" || got.Tags[cloud.TagNodeClaim] != "claim-1" || got.CapacityType != cloud.CapacityTypeSpot {
		t.Fatalf("Get = %+v", got)
	}

	if err := e.p.Delete(ctx, inst.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	e.clock.Advance(time.Minute)
	e.sim.Reconcile()
	if _, err := e.p.Get(ctx, inst.ID); !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("Get after delete: %v, want ErrNotFound", err)
	}
	if err := e.p.Delete(ctx, inst.ID); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if err := e.p.Delete(ctx, "i-0123456789abcdef0"); err != nil {
		t.Fatalf("Delete of unknown instance: %v", err)
	}
	if _, err := e.p.Get(ctx, "i-0123456789abcdef0"); !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("Get unknown: %v, want ErrNotFound", err)
	}
	if list, err := e.p.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("List after delete = %v, %v", list, err)
	}
	if n := testutil.CollectAndCount(e.reg, "dovetail_cloud_api_calls_total"); n == 0 {
		t.Fatal("no API call metrics recorded")
	}
}

func TestIdempotentLaunch(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	nc := testNodeClass("default")
	opts := []cloud.LaunchOption{opt("c5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.085), opt("c5.large", "us-east-1b", cloud.CapacityTypeOnDemand, 0.085)}

	// Without a NodeClaim name only the client token protects the launch.
	req := request("", opts...)
	req.ClientToken = "launch-0001"
	first, err := e.p.Create(ctx, nc, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.p.Create(ctx, nc, req)
	if err != nil {
		t.Fatal(err)
	}
	// A new leader: a fresh provider with empty caches replays the intent.
	p2, _ := newProvider(t, e)
	replayed, err := p2.Create(ctx, nc, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || replayed.ID != first.ID {
		t.Fatalf("same token launched %s, %s and %s", first.ID, again.ID, replayed.ID)
	}

	// With a NodeClaim name a replay finds the instance by its tag even
	// under a different token.
	named := request("claim-idem", opts...)
	a, err := e.p.Create(ctx, nc, named)
	if err != nil {
		t.Fatal(err)
	}
	named2 := request("claim-idem", opts...)
	named2.ClientToken = "other-token"
	b, err := p2.Create(ctx, nc, named2)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID {
		t.Fatalf("same NodeClaim launched %s and %s", a.ID, b.ID)
	}
	if n := len(e.sim.Instances()); n != 2 {
		t.Fatalf("simulator has %d instances, want 2", n)
	}
}

func TestLongClientTokenIsDerived(t *testing.T) {
	long := strings.Repeat("x", 80)
	a, b := deriveToken(long, "spot", "0"), deriveToken(long, "on-demand", "0")
	if len(a) > 64 || len(b) > 64 || a == b || a != deriveToken(long, "spot", "0") {
		t.Fatalf("tokens %q %q", a, b)
	}
	if got := deriveToken("abc", "spot", "0"); got != "abc-spot-0" {
		t.Fatalf("short token = %q", got)
	}
}

func TestICEFallbackSpotToOnDemand(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	if err := e.sim.ExhaustPool("m5.large", "", cloud.CapacityTypeSpot); err != nil {
		t.Fatal(err)
	}
	inst, err := e.p.Create(ctx, testNodeClass("default"), request("claim-ice",
		opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.03),
		opt("m5.large", "us-east-1b", cloud.CapacityTypeSpot, 0.03),
		opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096)))
	if err != nil {
		t.Fatal(err)
	}
	if inst.CapacityType != cloud.CapacityTypeOnDemand || inst.InstanceType != "m5.large" {
		t.Fatalf("launched %s %s, want on-demand m5.large", inst.CapacityType, inst.InstanceType)
	}
	if info, _ := e.sim.Instance(inst.ID); info.CapacityType != cloud.CapacityTypeOnDemand {
		t.Fatalf("simulator says %s", info.CapacityType)
	}
	ice := e.p.ICE()
	if len(ice) != 2 || ice[0].CapacityType != cloud.CapacityTypeSpot || ice[0].Code != "InsufficientInstanceCapacity" {
		t.Fatalf("ICE cache = %+v", ice)
	}

	// The ICE cache shows in the offerings until its TTL passes.
	its, err := e.p.InstanceTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	avail := offerings(its, "m5.large")
	if avail["us-east-1a/spot"] || avail["us-east-1b/spot"] || !avail["us-east-1c/spot"] || !avail["us-east-1a/on-demand"] {
		t.Fatalf("m5.large availability = %v", avail)
	}
	e.clock.Advance(3*time.Minute + time.Second)
	its, err = e.p.InstanceTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if avail := offerings(its, "m5.large"); !avail["us-east-1a/spot"] {
		t.Fatalf("after the ICE TTL m5.large availability = %v", avail)
	}
}

func offerings(its []*cloud.InstanceType, name string) map[string]bool {
	out := map[string]bool{}
	for _, it := range its {
		if it.Name != name {
			continue
		}
		for _, o := range it.Offerings {
			out[o.Zone+"/"+o.CapacityType] = o.Available
		}
	}
	return out
}

func TestICEFallbackToAnotherTypeAndCache(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	nc := testNodeClass("default")
	if err := e.sim.ExhaustPool("m5.large", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetPool("m5a.large", "", "", 0, "UnfulfillableCapacity"); err != nil {
		t.Fatal(err)
	}
	opts := []cloud.LaunchOption{
		opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.03),
		opt("m5a.large", "us-east-1a", cloud.CapacityTypeSpot, 0.035),
		opt("m6i.large", "us-east-1a", cloud.CapacityTypeSpot, 0.04),
	}
	inst, err := e.p.Create(ctx, nc, request("claim-type", opts...))
	if err != nil {
		t.Fatal(err)
	}
	if inst.InstanceType != "m6i.large" {
		t.Fatalf("launched %s, want m6i.large", inst.InstanceType)
	}

	// Everything exhausted: an InsufficientCapacityError listing each option.
	if err := e.sim.ExhaustPool("m6i.large", "", ""); err != nil {
		t.Fatal(err)
	}
	_, err = e.p.Create(ctx, nc, request("claim-none", opts...))
	var ice *cloud.InsufficientCapacityError
	if !errors.As(err, &ice) {
		t.Fatalf("Create = %v, want InsufficientCapacityError", err)
	}
	codes := map[string]string{}
	for _, u := range ice.Unavailable {
		codes[u.InstanceType] = u.Code
	}
	if codes["m5.large"] != "InsufficientInstanceCapacity" || codes["m5a.large"] != "UnfulfillableCapacity" || codes["m6i.large"] != "InsufficientInstanceCapacity" {
		t.Fatalf("unavailable = %+v", ice.Unavailable)
	}

	// A further try skips the cached offerings without asking EC2.
	before := testutil.ToFloat64(e.p.metrics.calls.WithLabelValues("EC2", "CreateFleet"))
	hitsBefore := testutil.ToFloat64(e.p.metrics.iceHits.WithLabelValues(cloud.CapacityTypeSpot))
	_, err = e.p.Create(ctx, nc, request("claim-none-2", opts...))
	if !errors.As(err, &ice) || len(ice.Unavailable) != 3 {
		t.Fatalf("second Create = %v", err)
	}
	if after := testutil.ToFloat64(e.p.metrics.calls.WithLabelValues("EC2", "CreateFleet")); after != before {
		t.Fatalf("CreateFleet called %v times for fully cached options", after-before)
	}
	if hits := testutil.ToFloat64(e.p.metrics.iceHits.WithLabelValues(cloud.CapacityTypeSpot)) - hitsBefore; hits != 3 {
		t.Fatalf("ICE hits = %v, want 3", hits)
	}
}

func TestAliasResolutionFollowsPublishedReleases(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	resolve := func(alias string) map[string]cloud.AMI {
		t.Helper()
		r, err := e.p.ResolveNodeClass(ctx, testNodeClass("nc-"+alias, awsv1.AMISelectorTerm{Alias: alias}))
		if err != nil {
			t.Fatalf("resolve %s: %v", alias, err)
		}
		out := map[string]cloud.AMI{}
		for _, a := range r.AMIs {
			out[a.Arch] = a
		}
		if len(out) != 2 {
			t.Fatalf("%s resolved to %+v, want amd64 and arm64", alias, r.AMIs)
		}
		return out
	}
	latest := resolve("al2023@latest")
	if !strings.Contains(latest["amd64"].Name, "al2023-x86_64-standard-1.37-v20261020") || !strings.Contains(latest["arm64"].Name, "al2023-arm64") {
		t.Fatalf("al2023@latest = %+v", latest)
	}
	pinned := resolve("al2023@v20240729")
	if !strings.HasSuffix(pinned["amd64"].Name, "-v20240729") {
		t.Fatalf("al2023@v20240729 = %+v", pinned)
	}
	if br := resolve("bottlerocket@v1.20.5"); !strings.Contains(br["arm64"].Name, "v1.20.5") {
		t.Fatalf("bottlerocket@v1.20.5 = %+v", br)
	}
	if al2 := resolve("al2@latest"); !strings.Contains(al2["arm64"].Name, "amazon-eks-arm64-node-1.37") {
		t.Fatalf("al2@latest = %+v", al2)
	}

	if _, err := e.sim.PublishRelease("al2023", "v20261125"); err != nil {
		t.Fatal(err)
	}
	// Cached until the node class TTL passes, then the new release.
	if got := resolve("al2023@latest"); got["amd64"].ID != latest["amd64"].ID {
		t.Fatalf("cache did not hold")
	}
	e.clock.Advance(2 * time.Minute)
	moved := resolve("al2023@latest")
	if moved["amd64"].ID == latest["amd64"].ID || !strings.HasSuffix(moved["amd64"].Name, "-v20261125") {
		t.Fatalf("al2023@latest after publish = %+v", moved)
	}
	if still := resolve("al2023@v20240729"); still["amd64"].ID != pinned["amd64"].ID {
		t.Fatalf("pinned alias moved: %+v", still)
	}

	// A launch after the publish uses the new image (and a new template).
	inst, err := e.p.Create(ctx, testNodeClass("nc-al2023@latest", awsv1.AMISelectorTerm{Alias: "al2023@latest"}), request("claim-new-ami", opt("m7g.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.08)))
	if err != nil {
		t.Fatal(err)
	}
	if inst.ImageID != moved["arm64"].ID {
		t.Fatalf("launched image %s, want %s", inst.ImageID, moved["arm64"].ID)
	}
	if info, _ := e.sim.Instance(inst.ID); info.ImageID != moved["arm64"].ID {
		t.Fatalf("simulator launched image %s, want %s", info.ImageID, moved["arm64"].ID)
	}

	if _, err := e.p.ResolveNodeClass(ctx, testNodeClass("nc-bad", awsv1.AMISelectorTerm{Alias: "al2023@v19990101"})); !errors.Is(err, ErrNoAMI) {
		t.Fatalf("unpublished version: %v, want ErrNoAMI", err)
	}
}

func TestCustomAMISelection(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	r, err := e.p.ResolveNodeClass(ctx, testNodeClass("custom", awsv1.AMISelectorTerm{Tags: map[string]string{"dovetail.dev/image": "custom"}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.AMIs) != 2 || !strings.HasPrefix(r.AMIs[0].Name, "dovetail-custom-x86_64") || r.AMIs[1].Arch != "arm64" {
		t.Fatalf("custom by tags = %+v", r.AMIs)
	}
	byName, err := e.p.ResolveNodeClass(ctx, testNodeClass("by-name", awsv1.AMISelectorTerm{Name: "dovetail-custom-arm64-*", Owner: "self"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(byName.AMIs) != 1 || byName.AMIs[0].Arch != "arm64" {
		t.Fatalf("custom by name = %+v", byName.AMIs)
	}
	byID, err := e.p.ResolveNodeClass(ctx, testNodeClass("by-id", awsv1.AMISelectorTerm{ID: r.AMIs[0].ID}))
	if err != nil || len(byID.AMIs) != 1 || byID.AMIs[0].ID != r.AMIs[0].ID {
		t.Fatalf("custom by id = %+v, %v", byID, err)
	}
	// Among several matches per architecture the newest wins.
	eks, err := e.p.ResolveNodeClass(ctx, testNodeClass("eks-owner", awsv1.AMISelectorTerm{Name: "amazon-eks-node-al2023-*-standard-1.37-*", Owner: ec2sim.OwnerAmazonEKS}))
	if err != nil {
		t.Fatal(err)
	}
	if len(eks.AMIs) != 2 || !strings.HasSuffix(eks.AMIs[0].Name, "v20261020") {
		t.Fatalf("newest EKS AL2023 by name = %+v", eks.AMIs)
	}

	_, err = e.p.ResolveNodeClass(ctx, testNodeClass("none", awsv1.AMISelectorTerm{Tags: map[string]string{"dovetail.dev/image": "missing"}}))
	if !errors.Is(err, ErrNoAMI) || !strings.Contains(err.Error(), "dovetail.dev/image=missing") {
		t.Fatalf("no match: %v", err)
	}
	bad := testNodeClass("no-subnets")
	bad.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "elsewhere"}}}
	if _, err := e.p.ResolveNodeClass(ctx, bad); !errors.Is(err, ErrNoSubnets) {
		t.Fatalf("no subnets: %v", err)
	}
	bad = testNodeClass("no-sgs")
	bad.Spec.SecurityGroupSelectorTerms = []awsv1.SecurityGroupSelectorTerm{{Name: "nope"}}
	if _, err := e.p.ResolveNodeClass(ctx, bad); !errors.Is(err, ErrNoSecurityGroups) {
		t.Fatalf("no security groups: %v", err)
	}
	good := testNodeClass("sg-by-name")
	good.Spec.SecurityGroupSelectorTerms = []awsv1.SecurityGroupSelectorTerm{{Name: testCluster + "-node"}}
	good.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{ID: e.sim.SubnetIDs()[1]}}
	rg, err := e.p.ResolveNodeClass(ctx, good)
	if err != nil || len(rg.SecurityGroups) != 1 || rg.SecurityGroups[0].ID != e.sim.SecurityGroupID() || len(rg.Subnets) != 1 || rg.Subnets[0].Zone != "us-east-1b" {
		t.Fatalf("by name/id = %+v, %v", rg, err)
	}
}

func TestThrottlingIsRetried(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	e.sim.Throttle(4, 0)
	inst, err := e.p.Create(ctx, testNodeClass("default"), request("claim-throttled", opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096)))
	if err != nil {
		t.Fatalf("Create under throttling: %v", err)
	}
	if _, ok := e.sim.Instance(inst.ID); !ok {
		t.Fatal("instance not in simulator")
	}
	e.sim.Throttle(3, 0)
	if _, err := e.p.List(ctx); err != nil {
		t.Fatalf("List under throttling: %v", err)
	}
	if n := len(e.sim.Instances()); n != 1 {
		t.Fatalf("%d instances, want 1", n)
	}
}

func TestBottlerocketAndAL2UserData(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	for _, alias := range []string{"bottlerocket@latest", "al2@latest"} {
		nc := testNodeClass("nc-"+strings.Split(alias, "@")[0], awsv1.AMISelectorTerm{Alias: alias})
		inst, err := e.p.Create(ctx, nc, request("claim-"+strings.Split(alias, "@")[0], opt("m5.large", "us-east-1c", cloud.CapacityTypeOnDemand, 0.096)))
		if err != nil {
			t.Fatalf("%s: %v", alias, err)
		}
		info, _ := e.sim.Instance(inst.ID)
		var want []string
		if strings.HasPrefix(alias, "bottlerocket") {
			want = []string{"[settings.kubernetes]", `"team" = "infra"`, `"dedicated" = ["infra:NoSchedule"]`}
		} else {
			want = []string{"/etc/eks/bootstrap.sh 'dovetail-test'", "--node-labels=karpenter.k8s.aws/ec2nodeclass=nc-al2,", "--register-with-taints=dedicated=infra:NoSchedule"}
		}
		for _, w := range want {
			if !strings.Contains(info.UserData, w) {
				t.Errorf("%s user data lacks %q:\n%s", alias, w, info.UserData)
			}
		}
	}
}

// windows2025@latest resolves through the public Windows SSM parameter
// (x86_64 only), boots with Karpenter's PowerShell bootstrap and a 50 GiB
// /dev/sda1 root, and its kubelet registers node.kubernetes.io/windows-build.
func TestWindows2025Alias(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	nc := testNodeClass("nc-win", awsv1.AMISelectorTerm{Alias: "windows2025@latest"})
	r, err := e.p.ResolveNodeClass(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.AMIs) != 1 || r.AMIs[0].Arch != "amd64" || !strings.HasPrefix(r.AMIs[0].Name, "Windows_Server-2025-English-Core-EKS_Optimized-1.37") {
		t.Fatalf("windows2025@latest resolved to %+v", r.AMIs)
	}
	if _, err := e.p.ResolveNodeClass(ctx, testNodeClass("nc-win-pinned", awsv1.AMISelectorTerm{Alias: "windows2025@v1"})); !errors.Is(err, ErrNoAMI) {
		t.Fatalf("windows2025@v1: %v, want ErrNoAMI (Windows aliases are @latest only)", err)
	}
	inst, err := e.p.Create(ctx, nc, request("claim-win", opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096)))
	if err != nil {
		t.Fatal(err)
	}
	if inst.ImageID != r.AMIs[0].ID {
		t.Fatalf("launched %s, want %s", inst.ImageID, r.AMIs[0].ID)
	}
	info, _ := e.sim.Instance(inst.ID)
	for _, w := range []string{"<powershell>", `Start-EKSBootstrap.ps1`, "-EKSClusterName 'dovetail-test'",
		"node.kubernetes.io/windows-build=10.0.26100", `--register-with-taints="dedicated=infra:NoSchedule`, "</powershell>"} {
		if !strings.Contains(info.UserData, w) {
			t.Errorf("windows user data lacks %q:\n%s", w, info.UserData)
		}
	}
	if u, err := userData(FamilyWindows2025, bootstrap{ClusterName: "c", Custom: "<powershell>Write-Host hi</powershell>"}); err != nil || !strings.Contains(u, "Write-Host hi\n[string]$EKSBootstrapScriptFile") || strings.Count(u, "<powershell>") != 1 {
		t.Errorf("custom PowerShell not merged before the bootstrap: %v\n%s", err, u)
	}
	if bd := defaultBlockDevices(FamilyWindows2025); len(bd) != 1 || bd[0].DeviceName != "/dev/sda1" || bd[0].VolumeSizeGiB != 50 {
		t.Errorf("windows block devices %+v", bd)
	}
}

// spec.networkInterfaces reaches the launch template as laid out (prefix
// count only on the ENA interface), the simulator launches an EFA type with
// it and refuses a type without EFA, as EC2 does.
func TestNetworkInterfacesEFA(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	nc := testNodeClass("nc-efa", awsv1.AMISelectorTerm{Alias: "al2023@latest"})
	prefixes := int32(2)
	nc.Spec.IPPrefixCount = &prefixes
	nc.Spec.NetworkInterfaces = []*awsv1.NetworkInterface{
		{NetworkCardIndex: 0, DeviceIndex: 0, InterfaceType: awsv1.InterfaceTypeInterface},
		{NetworkCardIndex: 0, DeviceIndex: 1, InterfaceType: awsv1.InterfaceTypeEFAOnly},
	}
	inst, err := e.p.Create(ctx, nc, request("claim-efa", opt("c5n.9xlarge", "us-east-1a", cloud.CapacityTypeOnDemand, 1.944)))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := e.sim.Instance(inst.ID)
	var data map[string]string
	for _, n := range e.sim.LaunchTemplateNames() {
		if d := e.sim.LaunchTemplateData(n); d["ImageId"] == info.ImageID && d["NetworkInterface.2.InterfaceType"] != "" {
			data = d
		}
	}
	want := map[string]string{
		"NetworkInterface.1.InterfaceType": "interface", "NetworkInterface.1.DeviceIndex": "0", "NetworkInterface.1.Ipv4PrefixCount": "2",
		"NetworkInterface.2.InterfaceType": "efa-only", "NetworkInterface.2.DeviceIndex": "1", "NetworkInterface.2.NetworkCardIndex": "0",
	}
	for k, v := range want {
		if data[k] != v {
			t.Errorf("launch template %s = %q, want %q (data %v)", k, data[k], v, data)
		}
	}
	if data["NetworkInterface.2.Ipv4PrefixCount"] != "" || data["SecurityGroupId.1"] != "" {
		t.Errorf("efa-only interface got a prefix count or groups moved off the interfaces: %v", data)
	}
	if _, err := e.p.Create(ctx, nc, request("claim-no-efa", opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096))); err == nil || !strings.Contains(err.Error(), "EFA") {
		t.Fatalf("EFA layout on m5.large: %v, want EC2's refusal", err)
	}
}

// TestInjectedOfferingsAreTheOnlyICEStore: with Config.Offerings set, the
// provider keeps no cache of its own. A second provider sharing the store
// (a new leader's) skips an offering the first one was refused without
// being told, and the moment the store drops the entry the offering is
// available again in listings and launches.
func TestInjectedOfferingsAreTheOnlyICEStore(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	store := NewMemoryOfferings(e.clock, time.Hour)
	withStore := func(c *Config) { c.Offerings = store }
	first, _ := newProvider(t, e, withStore)
	if err := e.sim.ExhaustPool("m5.large", "us-east-1a", cloud.CapacityTypeSpot); err != nil {
		t.Fatal(err)
	}
	opts := []cloud.LaunchOption{
		opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.03),
		opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096),
	}
	inst, err := first.Create(ctx, testNodeClass("default"), request("claim-1", opts...))
	if err != nil || inst.CapacityType != cloud.CapacityTypeOnDemand {
		t.Fatalf("first launch = %+v, %v; want on-demand", inst, err)
	}
	if code, ok := store.Unavailable("m5.large", "us-east-1a", cloud.CapacityTypeSpot); !ok || code != "InsufficientInstanceCapacity" {
		t.Fatalf("refusal not recorded in the injected store: %q %v", code, ok)
	}

	// The pool refills; the new provider still avoids it: the store says so.
	if err := e.sim.RefillPool("m5.large", "us-east-1a", cloud.CapacityTypeSpot); err != nil {
		t.Fatal(err)
	}
	second, _ := newProvider(t, e, withStore)
	if avail := offerings(mustTypes(t, second), "m5.large"); avail["us-east-1a/spot"] || !avail["us-east-1a/on-demand"] {
		t.Fatalf("second provider's m5.large availability = %v", avail)
	}
	fleets := testutil.ToFloat64(second.metrics.calls.WithLabelValues("EC2", "CreateFleet"))
	inst, err = second.Create(ctx, testNodeClass("default"), request("claim-2", opts...))
	if err != nil || inst.CapacityType != cloud.CapacityTypeOnDemand {
		t.Fatalf("second launch = %+v, %v; want on-demand", inst, err)
	}
	if n := testutil.ToFloat64(second.metrics.calls.WithLabelValues("EC2", "CreateFleet")) - fleets; n != 1 {
		t.Fatalf("second launch made %v CreateFleet calls, want 1 (spot skipped)", n)
	}
	if len(second.ICE()) != 1 {
		t.Fatalf("ICE() = %+v, want the store's entry", second.ICE())
	}

	// The store forgets the entry: available again at once, no provider TTL.
	e.clock.Advance(time.Hour)
	if avail := offerings(mustTypes(t, second), "m5.large"); !avail["us-east-1a/spot"] {
		t.Fatalf("after the store's expiry m5.large availability = %v", avail)
	}
	inst, err = second.Create(ctx, testNodeClass("default"), request("claim-3", opts...))
	if err != nil || inst.CapacityType != cloud.CapacityTypeSpot {
		t.Fatalf("third launch = %+v, %v; want spot", inst, err)
	}
}

func mustTypes(t *testing.T, p *Provider) []*cloud.InstanceType {
	t.Helper()
	its, err := p.InstanceTypes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return its
}
