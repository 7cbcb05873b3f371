package ec2sim

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// reservedTemplate makes a template that targets a reservation, as
// Karpenter's reserved launches do (capacity-reservations-only + target).
func reservedTemplate(t *testing.T, ctx context.Context, c *ec2.Client, s *Sim, name, crID, market string) string {
	t.Helper()
	ami, _ := s.SSMParameter("/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/x86_64/standard/recommended/image_id")
	data := &ec2types.RequestLaunchTemplateData{
		ImageId: aws.String(ami),
		CapacityReservationSpecification: &ec2types.LaunchTemplateCapacityReservationSpecificationRequest{
			CapacityReservationPreference: ec2types.CapacityReservationPreferenceCapacityReservationsOnly,
			CapacityReservationTarget:     &ec2types.CapacityReservationTarget{CapacityReservationId: aws.String(crID)},
		},
	}
	if market != "" {
		data.InstanceMarketOptions = &ec2types.LaunchTemplateInstanceMarketOptionsRequest{MarketType: ec2types.MarketType(market)}
	}
	out, err := c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String(name), LaunchTemplateData: data})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.LaunchTemplate.LaunchTemplateId)
}

func TestCapacityReservations(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := startSim(t, Config{Clock: clk, DisableIMDS: true})
	c := ec2Client(s, 3)
	sn := s.SubnetIDs()

	// EC2's own CreateCapacityReservation (an ODCR), then Describe with filters.
	cr, err := c.CreateCapacityReservation(ctx, &ec2.CreateCapacityReservationInput{
		InstanceType: aws.String("m5.large"), InstancePlatform: ec2types.CapacityReservationInstancePlatformLinuxUnix,
		AvailabilityZone: aws.String("us-east-1a"), InstanceCount: aws.Int32(2), InstanceMatchCriteria: ec2types.InstanceMatchCriteriaTargeted,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeCapacityReservation, Tags: []ec2types.Tag{{Key: aws.String("team"), Value: aws.String("ml")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(cr.CapacityReservation.CapacityReservationId)
	d, err := c.DescribeCapacityReservations(ctx, &ec2.DescribeCapacityReservationsInput{Filters: []ec2types.Filter{
		{Name: aws.String("state"), Values: []string{"active"}}, {Name: aws.String("tag:team"), Values: []string{"ml"}},
		{Name: aws.String("instance-match-criteria"), Values: []string{"targeted"}}}, MaxResults: aws.Int32(1000)})
	if err != nil || len(d.CapacityReservations) != 1 {
		t.Fatalf("describe by filters: %v %+v", err, d)
	}
	got := d.CapacityReservations[0]
	if aws.ToString(got.CapacityReservationId) != id || aws.ToInt32(got.TotalInstanceCount) != 2 || aws.ToInt32(got.AvailableInstanceCount) != 2 ||
		got.ReservationType != "default" || aws.ToBool(got.Interruptible) || got.State != "active" || aws.ToString(got.OwnerId) != s.AccountID() ||
		aws.ToString(got.AvailabilityZone) != "us-east-1a" || got.EndDate != nil || got.EndDateType != "unlimited" {
		t.Fatalf("reservation as described: %+v", got)
	}
	if _, err := c.DescribeCapacityReservations(ctx, &ec2.DescribeCapacityReservationsInput{CapacityReservationIds: []string{"cr-00000000000000001"}}); apiCode(err) != "InvalidCapacityReservationId.NotFound" {
		t.Fatalf("unknown id: %v", err)
	}

	// Two targeted launches fill it (not from the on-demand pool), the third is refused per override.
	if err := s.SetPool("m5.large", "us-east-1a", "on-demand", 0, ""); err != nil {
		t.Fatal(err)
	}
	lt := reservedTemplate(t, ctx, c, s, "reserved", id, "")
	var ids []string
	for i, token := range []string{"r1", "r2", "r3"} {
		out, err := c.CreateFleet(ctx, fleetInput(token, lt, "on-demand", override{"m5.large", sn[0]}))
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if len(fleetIDs(out)) != 1 {
				t.Fatalf("launch %d into the reservation: %+v", i, out.Errors)
			}
			ids = append(ids, fleetIDs(out)...)
			continue
		}
		if len(fleetIDs(out)) != 0 || len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "ReservationCapacityExceeded" {
			t.Fatalf("launch into a full reservation: %+v %+v", out.Instances, out.Errors)
		}
	}
	if info, _ := s.CapacityReservation(id); info.Available != 0 {
		t.Fatalf("available after two launches: %d", info.Available)
	}
	di, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids[:1]})
	if err != nil {
		t.Fatal(err)
	}
	in := di.Reservations[0].Instances[0]
	if aws.ToString(in.CapacityReservationId) != id || in.CapacityReservationSpecification == nil ||
		in.CapacityReservationSpecification.CapacityReservationPreference != "capacity-reservations-only" {
		t.Fatalf("instance in the reservation: %+v %+v", in.CapacityReservationId, in.CapacityReservationSpecification)
	}
	// Terminating gives the slot back once the instance is terminated.
	if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids[:1]}); err != nil {
		t.Fatal(err)
	}
	s.Reconcile()
	if info, _ := s.CapacityReservation(id); info.Available != 1 {
		t.Fatalf("available after a termination: %d, want 1", info.Available)
	}

	// A spot launch cannot go into a reservation; a mismatched type is refused.
	if out, _ := c.CreateFleet(ctx, fleetInput("spot-in", lt, "spot", override{"m5.large", sn[0]})); len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "InvalidParameterCombination" {
		t.Fatalf("spot into a reservation: %+v", out.Errors)
	}
	if out, _ := c.CreateFleet(ctx, fleetInput("wrong-type", lt, "on-demand", override{"c5.large", sn[0]})); len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "InvalidParameterCombination" {
		t.Fatalf("other type into a reservation: %+v", out.Errors)
	}

	// An open ODCR takes a plain on-demand launch of its type and zone,
	// unless the template opts out (preference none).
	open, err := s.CreateCapacityReservation(CapacityReservationSpec{InstanceType: "c5.large", Zone: "us-east-1b", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	plain := mustTemplate(t, ctx, c, s, "plain", "x86_64", "")
	out, err := c.CreateFleet(ctx, fleetInput("open-1", plain, "on-demand", override{"c5.large", sn[1]}))
	if err != nil || len(fleetIDs(out)) != 1 {
		t.Fatalf("on-demand launch: %v %+v", err, out)
	}
	if info, _ := s.Instance(fleetIDs(out)[0]); info.CapacityReservationID != open {
		t.Fatalf("on-demand launch did not use the open reservation: %+v", info)
	}

	// Capacity blocks need the capacity-block market type and target type;
	// at their end their instances are terminated.
	block, err := s.CreateCapacityReservation(CapacityReservationSpec{InstanceType: "p5.48xlarge", Zone: "us-east-1a", Count: 1,
		ReservationType: "capacity-block", EndDate: clk.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	noMarket := reservedTemplate(t, ctx, c, s, "block-no-market", block, "")
	if out, _ := c.CreateFleet(ctx, fleetInput("cb-0", noMarket, "on-demand", override{"p5.48xlarge", sn[0]})); len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "InvalidParameterCombination" {
		t.Fatalf("capacity block without its market type: %+v", out.Errors)
	}
	cbLT := reservedTemplate(t, ctx, c, s, "block", block, "capacity-block")
	out, err = c.CreateFleet(ctx, fleetInput("cb-1", cbLT, "capacity-block", override{"p5.48xlarge", sn[0]}))
	if err != nil || len(fleetIDs(out)) != 1 || out.Instances[0].Lifecycle != "capacity-block" {
		t.Fatalf("capacity block launch: %v %+v %+v", err, out.Instances, out.Errors)
	}
	clk.Advance(time.Hour)
	s.Reconcile()
	if info, _ := s.Instance(fleetIDs(out)[0]); info.State != "shutting-down" && info.State != "terminated" {
		t.Fatalf("capacity block instance after the block ended: %s", info.State)
	}
	if info, _ := s.CapacityReservation(block); info.State != "expired" {
		t.Fatalf("capacity block after its end: %s", info.State)
	}
	if out, _ := c.CreateFleet(ctx, fleetInput("cb-2", cbLT, "capacity-block", override{"p5.48xlarge", sn[0]})); len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "IncorrectState" {
		t.Fatalf("launch into an expired block: %+v", out.Errors)
	}
}
