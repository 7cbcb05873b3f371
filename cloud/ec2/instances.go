package ec2

import (
	"context"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/dovetail-dev/dovetail/cloud"
)

// liveStates are the states List and the launch-replay lookup consider.
var liveStates = []string{cloud.StatePending, cloud.StateRunning, cloud.StateShuttingDown, cloud.StateStopping, cloud.StateStopped}

// Get describes one instance. A terminated or unknown instance is
// cloud.ErrNotFound.
func (p *Provider) Get(ctx context.Context, instanceID string) (*cloud.Instance, error) {
	out, err := p.ec2.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil {
		if isNotFoundCode(err) {
			if inst, ok := p.recent.get(instanceID); ok {
				// Launched moments ago; EC2 has not caught up yet.
				return inst, nil
			}
			return nil, fmt.Errorf("instance %s: %w", instanceID, cloud.ErrNotFound)
		}
		return nil, fmt.Errorf("describe instance %s: %w", instanceID, err)
	}
	for _, r := range out.Reservations {
		for i := range r.Instances {
			inst := toInstance(&r.Instances[i])
			if inst.ID != instanceID {
				continue
			}
			if inst.State == cloud.StateTerminated {
				return nil, fmt.Errorf("instance %s is terminated: %w", instanceID, cloud.ErrNotFound)
			}
			return inst, nil
		}
	}
	return nil, fmt.Errorf("instance %s: %w", instanceID, cloud.ErrNotFound)
}

// List returns this cluster's instances (tagged with cloud.TagCluster) that
// are not terminated, oldest first.
// Instances this provider launched moments ago are included even when
// EC2's eventually consistent answer does not show them yet.
func (p *Provider) List(ctx context.Context) ([]*cloud.Instance, error) {
	insts, err := p.describe(ctx, []ec2types.Filter{
		{Name: aws.String("tag:" + cloud.TagCluster), Values: []string{p.cfg.ClusterName}},
		{Name: aws.String("instance-state-name"), Values: liveStates},
	})
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(insts))
	for _, i := range insts {
		seen[i.ID] = true
	}
	// An instance reported terminated is not "missing": describe drops it,
	// so ask only about IDs EC2 did not mention at all.
	for _, m := range p.recent.missingFrom(seen) {
		if inst, err := p.Get(ctx, m.ID); err == nil {
			insts = append(insts, inst)
		}
	}
	return insts, nil
}

// findByNodeClaim returns the live instance launched for a NodeClaim, or nil.
func (p *Provider) findByNodeClaim(ctx context.Context, nodeClaim string) (*cloud.Instance, error) {
	if inst, ok := p.recent.byNodeClaim(nodeClaim); ok {
		return inst, nil
	}
	insts, err := p.describe(ctx, []ec2types.Filter{
		{Name: aws.String("tag:" + cloud.TagCluster), Values: []string{p.cfg.ClusterName}},
		{Name: aws.String("tag:" + cloud.TagNodeClaim), Values: []string{nodeClaim}},
		{Name: aws.String("instance-state-name"), Values: []string{cloud.StatePending, cloud.StateRunning}},
	})
	if err != nil || len(insts) == 0 {
		return nil, err
	}
	return insts[0], nil
}

func (p *Provider) describe(ctx context.Context, filters []ec2types.Filter) ([]*cloud.Instance, error) {
	var out []*cloud.Instance
	pages := awsec2.NewDescribeInstancesPaginator(p.ec2, &awsec2.DescribeInstancesInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe instances: %w", err)
		}
		for _, r := range page.Reservations {
			for i := range r.Instances {
				inst := toInstance(&r.Instances[i])
				// An instance without a usable ID cannot be managed, tagged
				// or terminated; listing it would make the leak collector
				// act on "" (found by FuzzEC2Answers).
				if !validInstanceID(inst.ID) {
					p.log.WarnContext(ctx, "DescribeInstances answered an instance without a valid ID; ignored", "id", inst.ID, "type", inst.InstanceType)
					continue
				}
				// Filters are the server's job, but a terminated instance
				// must never be reported as ours to manage.
				if inst.State == cloud.StateTerminated {
					continue
				}
				out = append(out, inst)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].LaunchTime.Equal(out[j].LaunchTime) {
			return out[i].LaunchTime.Before(out[j].LaunchTime)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Delete terminates an instance. It is idempotent: an instance that is
// already terminated, or unknown to EC2, counts as deleted.
func (p *Provider) Delete(ctx context.Context, instanceID string) error {
	p.recent.forget(instanceID)
	out, err := p.ec2.TerminateInstances(ctx, &awsec2.TerminateInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil {
		if isNotFoundCode(err) {
			p.log.DebugContext(ctx, "terminate: instance already gone", "instance", instanceID)
			return nil
		}
		return fmt.Errorf("terminate instance %s: %w", instanceID, err)
	}
	for _, c := range out.TerminatingInstances {
		if c.CurrentState != nil {
			p.log.InfoContext(ctx, "instance terminating", "instance", instanceID, "state", c.CurrentState.Name)
		}
	}
	return nil
}

// Tag adds or overwrites tags on an instance (and nothing else), e.g. the
// node name once the instance has registered.
func (p *Provider) Tag(ctx context.Context, instanceID string, tags map[string]string) error {
	if len(tags) == 0 {
		return nil
	}
	_, err := p.ec2.CreateTags(ctx, &awsec2.CreateTagsInput{Resources: []string{instanceID}, Tags: ec2Tags(tags)})
	if err != nil {
		if isNotFoundCode(err) {
			return fmt.Errorf("tag instance %s: %w", instanceID, cloud.ErrNotFound)
		}
		return fmt.Errorf("tag instance %s: %w", instanceID, err)
	}
	return nil
}

func toInstance(in *ec2types.Instance) *cloud.Instance {
	id := aws.ToString(in.InstanceId)
	zone := ""
	if in.Placement != nil {
		zone = aws.ToString(in.Placement.AvailabilityZone)
	}
	state := ""
	if in.State != nil {
		state = string(in.State.Name)
	}
	ct := cloud.CapacityTypeOnDemand
	if in.InstanceLifecycle == ec2types.InstanceLifecycleTypeSpot {
		ct = cloud.CapacityTypeSpot
	}
	// As Karpenter: an instance launched only into its reservation is
	// reserved capacity (one that merely landed in an open ODCR is not).
	resID, resType, interruptible := "", "", false
	if spec := in.CapacityReservationSpecification; spec != nil && in.CapacityReservationId != nil &&
		spec.CapacityReservationPreference == ec2types.CapacityReservationPreferenceCapacityReservationsOnly {
		ct, resID, resType = cloud.CapacityTypeReserved, aws.ToString(in.CapacityReservationId), cloud.ReservationTypeDefault
		if in.InstanceLifecycle == ec2types.InstanceLifecycleTypeCapacityBlock {
			resType = cloud.ReservationTypeCapacityBlock
		}
		interruptible = in.InstanceLifecycle == ec2types.InstanceLifecycleTypeInterruptibleCapacityReservation
	}
	pgID, partition := "", int32(0)
	if in.Placement != nil {
		pgID, partition = aws.ToString(in.Placement.GroupId), aws.ToInt32(in.Placement.PartitionNumber)
	}
	tags := make(map[string]string, len(in.Tags))
	for _, t := range in.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	var sgs []string
	for _, g := range in.SecurityGroups {
		if id := aws.ToString(g.GroupId); id != "" {
			sgs = append(sgs, id)
		}
	}
	return &cloud.Instance{
		ID: id, ProviderID: cloud.ProviderID(zone, id), InstanceType: string(in.InstanceType), Zone: zone,
		CapacityType: ct, ImageID: aws.ToString(in.ImageId), State: state, PrivateIP: aws.ToString(in.PrivateIpAddress),
		LaunchTime: aws.ToTime(in.LaunchTime), Tags: tags,
		SubnetID: aws.ToString(in.SubnetId), SecurityGroupIDs: sgs,
		CapacityReservationID: resID, CapacityReservationType: resType, CapacityReservationInterruptible: interruptible,
		PlacementGroupID: pgID, PlacementGroupPartition: partition,
	}
}
