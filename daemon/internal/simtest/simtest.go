// Package simtest launches instances in the EC2 simulator the way the
// coordinator does (launch template + CreateFleet over the real EC2 API),
// for the agent's tests and benchmarks.
package simtest

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// Launch starts one instance of itype with capType ("spot" or
// "on-demand") and waits until its IMDS answers. token makes it idempotent.
func Launch(ctx context.Context, s *ec2sim.Sim, token, capType, itype string) (string, error) {
	c := ec2.NewFromConfig(aws.Config{
		Region:      s.Region(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	}, func(o *ec2.Options) { o.BaseEndpoint = aws.String(s.URL()) })
	ami, ok := s.SSMParameter("/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/x86_64/standard/recommended/image_id")
	if !ok {
		return "", fmt.Errorf("simulator has no AL2023 AMI parameter")
	}
	lt, err := c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("lt-" + token),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId: aws.String(ami), SecurityGroupIds: []string{s.SecurityGroupID()},
			MetadataOptions: &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{HttpTokens: ec2types.LaunchTemplateHttpTokensStateRequired},
		},
	})
	if err != nil {
		return "", fmt.Errorf("create launch template: %w", err)
	}
	out, err := c.CreateFleet(ctx, &ec2.CreateFleetInput{
		Type:        ec2types.FleetTypeInstant,
		ClientToken: aws.String(token),
		LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: aws.String("$Latest")},
			Overrides:                   []ec2types.FleetLaunchTemplateOverridesRequest{{InstanceType: ec2types.InstanceType(itype), SubnetId: aws.String(s.SubnetIDs()[0])}},
		}},
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{
			TotalTargetCapacity: aws.Int32(1), DefaultTargetCapacityType: ec2types.DefaultTargetCapacityType(capType),
		},
	})
	if err != nil {
		return "", fmt.Errorf("create fleet: %w", err)
	}
	if len(out.Instances) != 1 || len(out.Instances[0].InstanceIds) != 1 {
		return "", fmt.Errorf("launch failed: %+v", out.Errors)
	}
	id := out.Instances[0].InstanceIds[0]
	for s.IMDSEndpoint(id) == "" {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("instance %s never got an IMDS endpoint: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return id, nil
}
