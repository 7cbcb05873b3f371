package ec2sim

import (
	"context"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// Subnet and security-group drift detection relies on the simulator
// reporting where an instance runs, in CreateFleet's answer and in
// DescribeInstances' subnetId and groupSet, as EC2 does.
func TestInstanceNetworkInFleetAndDescribe(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{Clock: newFakeClock()})
	c := ec2Client(s, 3)
	lt := mustTemplate(t, ctx, c, s, "lt-net", "x86_64", "")
	sn := s.SubnetIDs()
	out, err := c.CreateFleet(ctx, fleetInput("claim-net", lt, "on-demand", override{"m5.large", sn[2]}))
	if err != nil {
		t.Fatal(err)
	}
	ids := fleetIDs(out)
	if len(ids) != 1 {
		t.Fatalf("fleet launched %v, errors %+v", ids, out.Errors)
	}
	if got := aws.ToString(out.Instances[0].SubnetId); got != sn[2] {
		t.Errorf("CreateFleet instance subnetId %q, want %q", got, sn[2])
	}
	d, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	in := d.Reservations[0].Instances[0]
	if got := aws.ToString(in.SubnetId); got != sn[2] {
		t.Errorf("DescribeInstances subnetId %q, want %q", got, sn[2])
	}
	var groups []string
	for _, g := range in.SecurityGroups {
		groups = append(groups, aws.ToString(g.GroupId))
	}
	if want := []string{s.SecurityGroupID()}; !slices.Equal(groups, want) {
		t.Errorf("DescribeInstances groupSet %v, want %v", groups, want)
	}
	info, _ := s.Instance(ids[0])
	if info.SubnetID != sn[2] || !slices.Equal(info.SecurityGroupIDs, groups) {
		t.Errorf("control API: subnet %q groups %v, want %q %v", info.SubnetID, info.SecurityGroupIDs, sn[2], groups)
	}
}
