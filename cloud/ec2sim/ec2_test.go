package ec2sim

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/dovetail-dev/dovetail/catalog"
)

func TestDescribeWorld(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{})
	c := ec2Client(s, 3)

	azs, err := c.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(azs.AvailabilityZones) != 3 || aws.ToString(azs.AvailabilityZones[1].ZoneName) != "us-east-1b" || aws.ToString(azs.AvailabilityZones[0].ZoneId) != "use1-az1" {
		t.Fatalf("zones: %+v", azs.AvailabilityZones)
	}

	sn, err := c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("tag:karpenter.sh/discovery"), Values: []string{"dovetail-local"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sn.Subnets) != 3 {
		t.Fatalf("subnets: %d", len(sn.Subnets))
	}
	for i, x := range sn.Subnets {
		if aws.ToString(x.AvailabilityZone) != s.Zones()[i] || aws.ToInt32(x.AvailableIpAddressCount) < 4000 || len(x.Tags) < 2 {
			t.Errorf("subnet %d: %+v", i, x)
		}
	}
	none, err := c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("tag:karpenter.sh/discovery"), Values: []string{"other"}}}})
	if err != nil || len(none.Subnets) != 0 {
		t.Fatalf("other cluster subnets: %v %v", none, err)
	}
	if _, err := c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-nope"}}); apiCode(err) != "InvalidSubnetID.NotFound" {
		t.Fatalf("unknown subnet: %v", err)
	}

	sg, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{"karpenter.sh/discovery"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sg.SecurityGroups) != 1 || aws.ToString(sg.SecurityGroups[0].GroupId) != s.SecurityGroupID() {
		t.Fatalf("security groups: %+v", sg.SecurityGroups)
	}
	byName, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("group-name"), Values: []string{"dovetail-*"}}}})
	if err != nil || len(byName.SecurityGroups) != 1 {
		t.Fatalf("by name: %v %v", byName, err)
	}

	imgs, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"amazon"},
		Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{"amazon-eks-node-al2023-arm64-standard-1.37-*"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs.Images) != 3 {
		t.Fatalf("al2023 arm64 1.37 images: %d", len(imgs.Images))
	}
	for _, im := range imgs.Images {
		if im.Architecture != ec2types.ArchitectureValuesArm64 || aws.ToString(im.CreationDate) == "" || im.State != ec2types.ImageStateAvailable {
			t.Errorf("image %+v", im)
		}
	}
	custom, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []ec2types.Filter{
		{Name: aws.String("tag:dovetail.dev/image"), Values: []string{"custom"}},
		{Name: aws.String("architecture"), Values: []string{"x86_64"}},
	}})
	if err != nil || len(custom.Images) != 1 || aws.ToString(custom.Images[0].OwnerId) != "123456789012" {
		t.Fatalf("custom: %+v %v", custom, err)
	}
	if _, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{"ami-00000000000000000"}}); apiCode(err) != "InvalidAMIID.NotFound" {
		t.Fatalf("missing image: %v", err)
	}
}

func TestDescribeInstanceTypesAndPrices(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{})
	c := ec2Client(s, 3)

	n := 0
	pg := ec2.NewDescribeInstanceTypesPaginator(c, &ec2.DescribeInstanceTypesInput{})
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(out.InstanceTypes)
	}
	if n != 1345 {
		t.Fatalf("instance types in us-east-1: %d, want 1345", n)
	}
	one, err := c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{"m5.large", "p4d.24xlarge"}})
	if err != nil {
		t.Fatal(err)
	}
	m5, p4d := one.InstanceTypes[0], one.InstanceTypes[1]
	if aws.ToInt32(m5.VCpuInfo.DefaultVCpus) != 2 || aws.ToInt64(m5.MemoryInfo.SizeInMiB) != 8192 || m5.ProcessorInfo.SupportedArchitectures[0] != ec2types.ArchitectureTypeX8664 {
		t.Errorf("m5.large: %+v", m5)
	}
	enis, ips := aws.ToInt32(m5.NetworkInfo.MaximumNetworkInterfaces), aws.ToInt32(m5.NetworkInfo.Ipv4AddressesPerInterface)
	if enis*(ips-1)+2 != 29 {
		t.Errorf("m5.large ENI max pods = %d, want 29", enis*(ips-1)+2)
	}
	if p4d.GpuInfo == nil || aws.ToInt32(p4d.GpuInfo.Gpus[0].Count) != 8 || aws.ToString(p4d.GpuInfo.Gpus[0].Manufacturer) != "nvidia" {
		t.Errorf("p4d gpu: %+v", p4d.GpuInfo)
	}
	if _, err := c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{"zz.huge"}}); apiCode(err) != "InvalidInstanceType" {
		t.Fatalf("unknown type: %v", err)
	}
	arm, err := c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{Filters: []ec2types.Filter{
		{Name: aws.String("processor-info.supported-architecture"), Values: []string{"arm64"}},
		{Name: aws.String("instance-type"), Values: []string{"m7g.*"}},
	}})
	if err != nil || len(arm.InstanceTypes) < 5 {
		t.Fatalf("m7g: %v %v", len(arm.InstanceTypes), err)
	}

	offs, err := c.DescribeInstanceTypeOfferings(ctx, &ec2.DescribeInstanceTypeOfferingsInput{
		LocationType: ec2types.LocationTypeAvailabilityZone,
		Filters:      []ec2types.Filter{{Name: aws.String("instance-type"), Values: []string{"m5.large"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(offs.InstanceTypeOfferings) != 3 || aws.ToString(offs.InstanceTypeOfferings[2].Location) != "us-east-1c" {
		t.Fatalf("offerings: %+v", offs.InstanceTypeOfferings)
	}

	sp, err := c.DescribeSpotPriceHistory(ctx, &ec2.DescribeSpotPriceHistoryInput{
		InstanceTypes:       []ec2types.InstanceType{"m5.large"},
		ProductDescriptions: []string{"Linux/UNIX"},
		StartTime:           aws.Time(time.Now()),
	})
	if err != nil {
		t.Fatal(err)
	}
	prices := map[string]string{}
	for _, p := range sp.SpotPriceHistory {
		prices[aws.ToString(p.AvailabilityZone)] = aws.ToString(p.SpotPrice)
	}
	if prices["us-east-1a"] != "0.031500" || prices["us-east-1b"] != "0.032300" || len(prices) != 3 {
		t.Fatalf("spot prices: %v", prices)
	}
	// Prices move; the history keeps both, a window from now only the new one.
	if err := s.SetSpotPrice("m5.large", "us-east-1a", 0.05); err != nil {
		t.Fatal(err)
	}
	sp, err = c.DescribeSpotPriceHistory(ctx, &ec2.DescribeSpotPriceHistoryInput{InstanceTypes: []ec2types.InstanceType{"m5.large"}, AvailabilityZone: aws.String("us-east-1a")})
	if err != nil || len(sp.SpotPriceHistory) != 2 || aws.ToString(sp.SpotPriceHistory[0].SpotPrice) != "0.050000" {
		t.Fatalf("history after move: %+v %v", sp.SpotPriceHistory, err)
	}
	all := 0
	sph := ec2.NewDescribeSpotPriceHistoryPaginator(c, &ec2.DescribeSpotPriceHistoryInput{StartTime: aws.Time(time.Now().Add(time.Minute))})
	for sph.HasMorePages() {
		out, err := sph.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all += len(out.SpotPriceHistory)
	}
	if all < 2500 {
		t.Fatalf("current spot prices across the region: %d", all)
	}
}

func TestLaunchTemplates(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{})
	c := ec2Client(s, 3)
	id := mustTemplate(t, ctx, c, s, "dovetail-default-abc", "x86_64", "")
	if _, err := c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("dovetail-default-abc"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{}}); apiCode(err) != "InvalidLaunchTemplateName.AlreadyExistsException" {
		t.Fatalf("duplicate name: %v", err)
	}
	out, err := c.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:dovetail.dev/cluster"), Values: []string{"test"}}}})
	if err != nil || len(out.LaunchTemplates) != 1 || aws.ToString(out.LaunchTemplates[0].LaunchTemplateId) != id {
		t.Fatalf("describe: %+v %v", out, err)
	}
	if _, err := c.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{"nope"}}); apiCode(err) != "InvalidLaunchTemplateName.NotFoundException" {
		t.Fatalf("missing: %v", err)
	}
	if _, err := c.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateName: aws.String("dovetail-default-abc")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{id}}); apiCode(err) != "InvalidLaunchTemplateId.NotFound" {
		t.Fatalf("after delete: %v", err)
	}
}

func TestCreateFleetLifecycle(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := startSim(t, Config{Clock: clk, BootDelay: 30 * time.Second, TerminateDelay: 10 * time.Second, TerminatedRetention: time.Hour})
	c := ec2Client(s, 3)
	lt := mustTemplate(t, ctx, c, s, "lt", "x86_64", "")
	sn := s.SubnetIDs()
	out, err := c.CreateFleet(ctx, fleetInput("claim-1", lt, "spot", override{"m5.large", sn[0]}, override{"m5.large", sn[1]}, override{"c5.large", sn[0]}))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Errors) != 0 || len(fleetIDs(out)) != 1 || out.Instances[0].Lifecycle != ec2types.InstanceLifecycleSpot {
		t.Fatalf("fleet: %+v errors %+v", out.Instances, out.Errors)
	}
	// price-capacity-optimized picks the cheapest pool: m5.large in the first zone (0.0315).
	if out.Instances[0].InstanceType != "m5.large" || aws.ToString(out.Instances[0].LaunchTemplateAndOverrides.Overrides.SubnetId) != sn[0] {
		t.Fatalf("chosen: %+v", out.Instances[0].LaunchTemplateAndOverrides.Overrides)
	}
	id := fleetIDs(out)[0]
	state := func() (string, *ec2types.Instance) {
		d, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		in := d.Reservations[0].Instances[0]
		return string(in.State.Name), &in
	}
	st, in := state()
	if st != "pending" || aws.ToInt32(in.State.Code) != 0 {
		t.Fatalf("after launch: %s", st)
	}
	if in.InstanceLifecycle != ec2types.InstanceLifecycleTypeSpot || aws.ToString(in.Placement.AvailabilityZone) != "us-east-1a" ||
		!strings.HasPrefix(aws.ToString(in.PrivateIpAddress), "10.0.") || !strings.HasSuffix(aws.ToString(in.PrivateDnsName), ".ec2.internal") {
		t.Fatalf("instance: %+v", in)
	}
	tags := map[string]string{}
	for _, tg := range in.Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if tags["karpenter.sh/nodeclaim"] != "claim-1" || tags["from-template"] != "yes" {
		t.Fatalf("tags: %v", tags)
	}
	info, _ := s.Instance(id)
	if info.VolumeTags["karpenter.sh/nodeclaim"] != "claim-1" {
		t.Fatalf("volume tags: %v", info.VolumeTags)
	}
	clk.Advance(31 * time.Second)
	if st, _ := state(); st != "running" {
		t.Fatalf("after boot delay: %s", st)
	}
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("node-1")}}}); err != nil {
		t.Fatal(err)
	}
	byTag, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:Name"), Values: []string{"node-1"}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running"}},
		{Name: aws.String("tag-key"), Values: []string{"karpenter.sh/nodepool"}},
	}})
	if err != nil || len(byTag.Reservations) != 1 {
		t.Fatalf("by tag: %+v %v", byTag, err)
	}
	term, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if term.TerminatingInstances[0].CurrentState.Name != "shutting-down" || term.TerminatingInstances[0].PreviousState.Name != "running" {
		t.Fatalf("terminate: %+v", term.TerminatingInstances[0])
	}
	clk.Advance(11 * time.Second)
	st, in = state()
	if st != "terminated" || aws.ToString(in.StateReason.Code) != "Client.UserInitiatedShutdown" {
		t.Fatalf("after terminate delay: %s", st)
	}
	clk.Advance(2 * time.Hour)
	if _, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}); apiCode(err) != "InvalidInstanceID.NotFound" {
		t.Fatalf("after retention: %v", err)
	}
	if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{"i-00000000000000000"}}); apiCode(err) != "InvalidInstanceID.NotFound" {
		t.Fatalf("terminate unknown: %v", err)
	}
}

func TestCreateFleetIdempotent(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := startSim(t, Config{Clock: clk})
	c := ec2Client(s, 3)
	lt := mustTemplate(t, ctx, c, s, "lt", "x86_64", "")
	sn := s.SubnetIDs()
	in := fleetInput("claim-idem", lt, "on-demand", override{"m5.large", sn[0]}, override{"m5.xlarge", sn[1]})
	first, err := c.CreateFleet(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.CreateFleet(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(first.FleetId) != aws.ToString(second.FleetId) || fleetIDs(first)[0] != fleetIDs(second)[0] {
		t.Fatalf("replay gave a different answer: %v %v", fleetIDs(first), fleetIDs(second))
	}
	// Even after the instance is gone, the token never yields a second one.
	if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: fleetIDs(first)}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	third, err := c.CreateFleet(ctx, in)
	if err != nil || fleetIDs(third)[0] != fleetIDs(first)[0] {
		t.Fatalf("after terminate: %v %v", fleetIDs(third), err)
	}
	if n := len(s.Instances()); n != 1 {
		t.Fatalf("instances: %d, want 1", n)
	}
	// Same token, different request: EC2 refuses.
	other := fleetInput("claim-idem", lt, "on-demand", override{"c5.large", sn[0]})
	if _, err := c.CreateFleet(ctx, other); apiCode(err) != "IdempotentParameterMismatch" {
		t.Fatalf("mismatch: %v", err)
	}
}

func TestCreateFleetInsufficientCapacity(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{})
	c := ec2Client(s, 3)
	lt := mustTemplate(t, ctx, c, s, "lt", "x86_64", "")
	sn := s.SubnetIDs()
	// Spot m5.large is gone in zones a and b: EC2 reports both and falls to zone c.
	for _, z := range []string{"us-east-1a", "us-east-1b"} {
		if err := s.ExhaustPool("m5.large", z, "spot"); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.CreateFleet(ctx, fleetInput("ice-1", lt, "spot", override{"m5.large", sn[0]}, override{"m5.large", sn[1]}, override{"m5.large", sn[2]}))
	if err != nil {
		t.Fatal(err)
	}
	if len(fleetIDs(out)) != 1 || aws.ToString(out.Instances[0].LaunchTemplateAndOverrides.Overrides.AvailabilityZone) != "us-east-1c" {
		t.Fatalf("instances: %+v", out.Instances)
	}
	if len(out.Errors) != 2 {
		t.Fatalf("errors: %+v", out.Errors)
	}
	for _, e := range out.Errors {
		if aws.ToString(e.ErrorCode) != "InsufficientInstanceCapacity" || e.Lifecycle != ec2types.InstanceLifecycleSpot || e.LaunchTemplateAndOverrides.Overrides.InstanceType != "m5.large" {
			t.Errorf("error: %+v", e)
		}
	}
	// Every spot pool failing: no instance, every override in errorSet.
	if err := s.ExhaustPool("m5.large", "", "spot"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPool("c5.large", "", "spot", -1, "UnfulfillableCapacity"); err != nil {
		t.Fatal(err)
	}
	out, err = c.CreateFleet(ctx, fleetInput("ice-2", lt, "spot", override{"m5.large", sn[0]}, override{"c5.large", sn[0]}))
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]bool{}
	for _, e := range out.Errors {
		codes[aws.ToString(e.ErrorCode)] = true
	}
	if len(out.Instances) != 0 || !codes["InsufficientInstanceCapacity"] || !codes["UnfulfillableCapacity"] {
		t.Fatalf("all failing: instances %+v errors %v", out.Instances, codes)
	}
	// The same request on-demand succeeds: the fallback path a provider takes.
	out, err = c.CreateFleet(ctx, fleetInput("ice-3", lt, "on-demand", override{"m5.large", sn[0]}, override{"c5.large", sn[0]}))
	// c5.large (0.085) is cheaper than m5.large (0.096) on demand.
	if err != nil || len(fleetIDs(out)) != 1 || out.Instances[0].Lifecycle != ec2types.InstanceLifecycleOnDemand || out.Instances[0].InstanceType != "c5.large" {
		t.Fatalf("on-demand fallback: %+v %v", out, err)
	}
	// A pool of capacity 1 serves exactly one launch, then ICE; terminating returns capacity.
	if err := s.SetPool("r5.large", "us-east-1a", "on-demand", 1, ""); err != nil {
		t.Fatal(err)
	}
	out, _ = c.CreateFleet(ctx, fleetInput("cap-1", lt, "on-demand", override{"r5.large", sn[0]}))
	out2, _ := c.CreateFleet(ctx, fleetInput("cap-2", lt, "on-demand", override{"r5.large", sn[0]}))
	if len(fleetIDs(out)) != 1 || len(fleetIDs(out2)) != 0 || aws.ToString(out2.Errors[0].ErrorCode) != "InsufficientInstanceCapacity" {
		t.Fatalf("capacity 1: %v / %+v", fleetIDs(out), out2.Errors)
	}
}

func TestMaxSpotInstances(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{MaxSpotInstances: 1})
	c := ec2Client(s, 3)
	lt := mustTemplate(t, ctx, c, s, "lt", "x86_64", "")
	sn := s.SubnetIDs()
	if out, err := c.CreateFleet(ctx, fleetInput("s1", lt, "spot", override{"m5.large", sn[0]})); err != nil || len(fleetIDs(out)) != 1 {
		t.Fatalf("first: %v", err)
	}
	out, err := c.CreateFleet(ctx, fleetInput("s2", lt, "spot", override{"m5.large", sn[0]}))
	if err != nil || len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "MaxSpotInstanceCountExceeded" {
		t.Fatalf("second: %+v %v", out, err)
	}
}

func TestArchMismatchAndMissingImage(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{})
	c := ec2Client(s, 3)
	lt := mustTemplate(t, ctx, c, s, "lt-arm", "arm64", "")
	out, err := c.CreateFleet(ctx, fleetInput("arch", lt, "on-demand", override{"m5.large", s.SubnetIDs()[0]}, override{"m7g.large", s.SubnetIDs()[0]}))
	if err != nil {
		t.Fatal(err)
	}
	if len(fleetIDs(out)) != 1 || out.Instances[0].InstanceType != "m7g.large" {
		t.Fatalf("arm template launched %+v", out.Instances)
	}
}

func TestThrottling(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{})
	s.Throttle(2, 0)
	c := ec2Client(s, 1)
	if _, err := c.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{}); apiCode(err) != "RequestLimitExceeded" {
		t.Fatalf("throttled call: %v", err)
	}
	// The SDK's standard retryer treats RequestLimitExceeded as throttling and retries.
	retrying := ec2Client(s, 3)
	if _, err := retrying.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{}); err != nil {
		t.Fatalf("retried call: %v", err)
	}
	var throttled float64
	mfs, _ := s.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() == "ec2sim_api_errors_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetValue() == "RequestLimitExceeded" {
						throttled += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if throttled != 2 {
		t.Fatalf("throttled calls counted: %v", throttled)
	}
}

func TestRunInstances(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{})
	c := ec2Client(s, 3)
	ami, _ := s.SSMParameter("/aws/service/bottlerocket/aws-k8s-1.37/x86_64/latest/image_id")
	out, err := c.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String(ami), InstanceType: "t3.medium", MinCount: aws.Int32(2), MaxCount: aws.Int32(2),
		SubnetId: aws.String(s.SubnetIDs()[1]), ClientToken: aws.String("run-1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Instances) != 2 || aws.ToString(out.Instances[0].Placement.AvailabilityZone) != "us-east-1b" {
		t.Fatalf("run: %+v", out.Instances)
	}
	again, err := c.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String(ami), InstanceType: "t3.medium", MinCount: aws.Int32(2), MaxCount: aws.Int32(2),
		SubnetId: aws.String(s.SubnetIDs()[1]), ClientToken: aws.String("run-1"),
	})
	if err != nil || aws.ToString(again.Instances[0].InstanceId) != aws.ToString(out.Instances[0].InstanceId) {
		t.Fatalf("replay: %v", err)
	}
}

func TestCustomCatalogue(t *testing.T) {
	ctx := context.Background()
	cat, err := catalog.New([]catalog.Type{{
		Name: "x1.tiny", Arch: "amd64", VCPU: 1, MemoryMiB: 1024, MaxPods: 8,
		Resources: map[string]string{"cpu": "900m", "memory": "600Mi", "pods": "8"},
		Labels:    map[string]string{"kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "x1.tiny"},
		OnDemand:  map[string]float64{"eu-west-1": 0.01},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := startSim(t, Config{Region: "eu-west-1", Catalog: cat, KubernetesVersions: []string{"1.37"}})
	c := ec2Client(s, 3)
	out, err := c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{})
	if err != nil || len(out.InstanceTypes) != 1 || out.InstanceTypes[0].InstanceType != "x1.tiny" {
		t.Fatalf("types: %+v %v", out, err)
	}
	lt := mustTemplate(t, ctx, c, s, "lt", "x86_64", "")
	sn := s.SubnetIDs()
	// No spot market for the type: the spot override is unfulfillable, on-demand works.
	f, err := c.CreateFleet(ctx, fleetInput("c-1", lt, "spot", override{"x1.tiny", sn[0]}))
	if err != nil || len(f.Instances) != 0 || aws.ToString(f.Errors[0].ErrorCode) != "UnfulfillableCapacity" {
		t.Fatalf("spot: %+v %v", f, err)
	}
	f, err = c.CreateFleet(ctx, fleetInput("c-2", lt, "on-demand", override{"x1.tiny", sn[0]}, override{"m5.large", sn[0]}))
	if err != nil || len(fleetIDs(f)) != 1 || f.Instances[0].InstanceType != "x1.tiny" {
		t.Fatalf("on-demand: %+v %v", f, err)
	}
	if len(f.Errors) != 0 {
		t.Fatalf("errors after success: %+v", f.Errors)
	}
	d, _ := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: fleetIDs(f)})
	if dns := aws.ToString(d.Reservations[0].Instances[0].PrivateDnsName); !strings.HasSuffix(dns, ".eu-west-1.compute.internal") {
		t.Fatalf("dns %s", dns)
	}
}

func TestSpotPriceDrift(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := startSim(t, Config{Clock: clk, SpotPriceInterval: 10 * time.Minute, SpotPriceVolatility: 0.2, Seed: 7})
	c := ec2Client(s, 3)
	lt := mustTemplate(t, ctx, c, s, "lt", "x86_64", "")
	if _, err := c.CreateFleet(ctx, fleetInput("drift", lt, "spot", override{"m5.large", s.SubnetIDs()[0]})); err != nil {
		t.Fatal(err)
	}
	clk.Advance(35 * time.Minute)
	out, err := c.DescribeSpotPriceHistory(ctx, &ec2.DescribeSpotPriceHistoryInput{InstanceTypes: []ec2types.InstanceType{"m5.large"}, AvailabilityZone: aws.String("us-east-1a")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.SpotPriceHistory) != 4 {
		t.Fatalf("history after 3 intervals: %d entries", len(out.SpotPriceHistory))
	}
	for _, p := range out.SpotPriceHistory {
		if v := aws.ToString(p.SpotPrice); v <= "0.0" || v > "0.096000" {
			t.Errorf("price %s outside (0, on-demand]", v)
		}
	}
	// Pools never used for spot keep the catalogue's price.
	other, _ := c.DescribeSpotPriceHistory(ctx, &ec2.DescribeSpotPriceHistoryInput{InstanceTypes: []ec2types.InstanceType{"c5.large"}, AvailabilityZone: aws.String("us-east-1a")})
	if len(other.SpotPriceHistory) != 1 {
		t.Fatalf("unused pool moved: %+v", other.SpotPriceHistory)
	}
}

func TestDescribeInstancesPaginated(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{DisableIMDS: true})
	c := ec2Client(s, 3)
	lt := mustTemplate(t, ctx, c, s, "lt", "x86_64", "")
	for i := 0; i < 12; i++ {
		if _, err := c.CreateFleet(ctx, fleetInput("pg-"+strings.Repeat("x", i+1), lt, "on-demand", override{"m5.large", s.SubnetIDs()[i%3]})); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	pages := 0
	pg := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{
		MaxResults: aws.Int32(5),
		Filters:    []ec2types.Filter{{Name: aws.String("tag:karpenter.sh/nodepool"), Values: []string{"def*"}}},
	})
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				seen[aws.ToString(in.InstanceId)] = true
			}
		}
	}
	if len(seen) != 12 || pages != 3 {
		t.Fatalf("saw %d instances in %d pages", len(seen), pages)
	}
	if _, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{NextToken: aws.String("garbage")}); apiCode(err) != "InvalidNextToken" {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("no-such-filter"), Values: []string{"x"}}}}); apiCode(err) != "InvalidParameterValue" {
		t.Fatalf("bad filter: %v", err)
	}
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{"i-00000000000000000"}, Tags: []ec2types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}}); apiCode(err) != "InvalidInstanceID.NotFound" {
		t.Fatalf("tag unknown: %v", err)
	}
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{s.SubnetIDs()[0]}, Tags: []ec2types.Tag{{Key: aws.String("aws:reserved"), Value: aws.String("b")}}}); apiCode(err) != "InvalidParameterValue" {
		t.Fatalf("reserved key: %v", err)
	}
}
