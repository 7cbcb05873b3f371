package ec2sim

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
}

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

// startSim runs a simulator for one test.
func startSim(t testing.TB, cfg Config) *Sim {
	t.Helper()
	s := New(cfg)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// awsConfig uses the SDK's standard retryer (as a product would) with
// short backoffs so throttling tests stay fast.
func awsConfig(s *Sim, attempts int) aws.Config {
	return aws.Config{
		Region:      s.Region(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDSIMULATOR", "secret", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				o.MaxBackoff = 20 * time.Millisecond
				o.RateLimiter = ratelimit.None
			})
		},
	}
}

// ec2Client is a real aws-sdk-go-v2 EC2 client aimed at the simulator.
func ec2Client(s *Sim, attempts int) *ec2.Client {
	return ec2.NewFromConfig(awsConfig(s, attempts), func(o *ec2.Options) { o.BaseEndpoint = aws.String(s.URL()) })
}

func ssmClient(s *Sim) *ssm.Client {
	return ssm.NewFromConfig(awsConfig(s, 1), func(o *ssm.Options) { o.BaseEndpoint = aws.String(s.URL()) })
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// launchTemplate creates a template with the latest AL2023 AMI of arch.
func mustTemplate(t testing.TB, ctx context.Context, c *ec2.Client, s *Sim, name, arch, userData string) string {
	t.Helper()
	ami, ok := s.SSMParameter("/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/" + arch + "/standard/recommended/image_id")
	if !ok {
		t.Fatal("no AL2023 parameter")
	}
	in := &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId:          aws.String(ami),
			SecurityGroupIds: []string{s.SecurityGroupID()},
			MetadataOptions:  &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{HttpTokens: ec2types.LaunchTemplateHttpTokensStateRequired},
			TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{{
				ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("from-template"), Value: aws.String("yes")}},
			}},
		},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: []ec2types.Tag{{Key: aws.String("dovetail.dev/cluster"), Value: aws.String("test")}}}},
	}
	if userData != "" {
		in.LaunchTemplateData.UserData = aws.String(userData)
	}
	out, err := c.CreateLaunchTemplate(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.LaunchTemplate.LaunchTemplateId)
}

type override struct{ itype, subnet string }

func fleetInput(token, lt, capType string, ovs ...override) *ec2.CreateFleetInput {
	var o []ec2types.FleetLaunchTemplateOverridesRequest
	for _, ov := range ovs {
		o = append(o, ec2types.FleetLaunchTemplateOverridesRequest{InstanceType: ec2types.InstanceType(ov.itype), SubnetId: aws.String(ov.subnet)})
	}
	in := &ec2.CreateFleetInput{
		Type:        ec2types.FleetTypeInstant,
		ClientToken: aws.String(token),
		LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateId: aws.String(lt), Version: aws.String("$Latest")},
			Overrides:                   o,
		}},
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{
			TotalTargetCapacity:       aws.Int32(1),
			DefaultTargetCapacityType: ec2types.DefaultTargetCapacityType(capType),
		},
		SpotOptions:     &ec2types.SpotOptionsRequest{AllocationStrategy: ec2types.SpotAllocationStrategyPriceCapacityOptimized},
		OnDemandOptions: &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyLowestPrice},
		TagSpecifications: []ec2types.TagSpecification{
			{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{
				{Key: aws.String("karpenter.sh/nodeclaim"), Value: aws.String(token)},
				{Key: aws.String("karpenter.sh/nodepool"), Value: aws.String("default")},
			}},
			{ResourceType: ec2types.ResourceTypeVolume, Tags: []ec2types.Tag{{Key: aws.String("karpenter.sh/nodeclaim"), Value: aws.String(token)}}},
		},
	}
	return in
}

func fleetIDs(out *ec2.CreateFleetOutput) []string {
	var ids []string
	for _, i := range out.Instances {
		ids = append(ids, i.InstanceIds...)
	}
	return ids
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// noRetry makes an SDK client try once.
type noRetry struct{}

func (noRetry) IsErrorRetryable(error) bool                  { return false }
func (noRetry) MaxAttempts() int                             { return 1 }
func (noRetry) RetryDelay(int, error) (time.Duration, error) { return 0, nil }
func (noRetry) GetRetryToken(context.Context, error) (func(error) error, error) {
	return func(error) error { return nil }, nil
}
func (noRetry) GetInitialToken() func(error) error { return func(error) error { return nil } }
func (noRetry) GetAttemptToken(context.Context) (func(error) error, error) {
	return func(error) error { return nil }, nil
}

func asErr[T error](err error, target *T) bool { return errors.As(err, target) }
