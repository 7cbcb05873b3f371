package ec2

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/dovetail-dev/dovetail/cloud"
)

// ErrNoPlacementGroup means the placementGroupSelector matches no
// available placement group (Karpenter's PlacementGroupNotFound).
var ErrNoPlacementGroup = errors.New("no available placement group matches the placementGroupSelector")

// resolvePlacementGroup looks the selected placement group up (state
// available, by id or by name, as Karpenter asks). nil, nil when the class
// selects none.
func (p *Provider) resolvePlacementGroup(ctx context.Context, nc nodeClass) (*cloud.PlacementGroup, error) {
	sel := nc.PlacementGroup
	if sel == nil {
		return nil, nil
	}
	in := &awsec2.DescribePlacementGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("state"), Values: []string{string(ec2types.PlacementGroupStateAvailable)}}}}
	what := ""
	switch {
	case sel.ID != "":
		in.GroupIds, what = []string{sel.ID}, "id "+sel.ID
	case sel.Name != "":
		in.GroupNames, what = []string{sel.Name}, "name "+sel.Name
	default:
		return nil, fmt.Errorf("%w: the selector names neither id nor name", ErrNoPlacementGroup)
	}
	out, err := p.ec2.DescribePlacementGroups(ctx, in)
	if err != nil {
		var apiErr smithy.APIError
		if isNotFoundCode(err) || (errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidPlacementGroup.Unknown") {
			return nil, fmt.Errorf("%w: placement group %s not found", ErrNoPlacementGroup, what)
		}
		return nil, fmt.Errorf("describe placement groups: %w", err)
	}
	if len(out.PlacementGroups) == 0 {
		return nil, fmt.Errorf("%w: placement group %s not found (or not available)", ErrNoPlacementGroup, what)
	}
	g := out.PlacementGroups[0]
	return &cloud.PlacementGroup{
		ID: aws.ToString(g.GroupId), Name: aws.ToString(g.GroupName), Strategy: string(g.Strategy),
		PartitionCount: aws.ToInt32(g.PartitionCount), SpreadLevel: string(g.SpreadLevel),
	}, nil
}

// partitionOf reads the partition EC2 assigned a new instance in a
// partition placement group (the fleet answer does not say), so the
// NodeClaim can carry karpenter.k8s.aws/placement-group-partition as
// Karpenter's registration hook sets it. 0 when EC2 does not say yet.
func (p *Provider) partitionOf(ctx context.Context, id string) int32 {
	out, err := p.ec2.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		p.log.WarnContext(ctx, "reading the placement partition failed", "instance", id, "err", err)
		return 0
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if in.Placement != nil {
				return aws.ToInt32(in.Placement.PartitionNumber)
			}
		}
	}
	return 0
}
