package devcluster

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// launchSpot starts one spot instance in the simulator through the real EC2
// API, as the coordinators do, and returns it once it runs.
func launchSpot(ctx context.Context, t *testing.T, s *ec2sim.Sim, token string) ec2sim.InstanceInfo {
	t.Helper()
	c := ec2.NewFromConfig(aws.Config{Region: s.Region(), Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")},
		func(o *ec2.Options) { o.BaseEndpoint = aws.String(s.URL()) })
	ami, ok := s.SSMParameter("/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/x86_64/standard/recommended/image_id")
	if !ok {
		t.Fatal("no AL2023 AMI in the simulator")
	}
	lt, err := c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("lt-" + token),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(ami), SecurityGroupIds: []string{s.SecurityGroupID()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.CreateFleet(ctx, &ec2.CreateFleetInput{
		Type: ec2types.FleetTypeInstant, ClientToken: aws.String(token),
		LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: aws.String("$Latest")},
			Overrides:                   []ec2types.FleetLaunchTemplateOverridesRequest{{InstanceType: "m5.large", SubnetId: aws.String(s.SubnetIDs()[0])}},
		}},
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: aws.Int32(1), DefaultTargetCapacityType: ec2types.DefaultTargetCapacityTypeSpot},
	})
	if err != nil || len(out.Instances) != 1 {
		t.Fatalf("launch: %v %+v", err, out)
	}
	id := out.Instances[0].InstanceIds[0]
	var in ec2sim.InstanceInfo
	eventually(t, 10*time.Second, "instance running", func() bool {
		in, _ = s.Instance(id)
		return in.State == "running" && in.IMDSEndpoint != ""
	})
	return in
}

func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The agents part starts a real agent for a running instance, that agent
// acts on the instance's spot notice in the simulator's IMDS (taints and
// cordons its Node), and it stops once the instance is gone.
func TestAgentsFollowSimulatorInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sim := ec2sim.New(ec2sim.Config{TerminateDelay: 100 * time.Millisecond, Logger: log})
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	in := launchSpot(ctx, t, sim, "agents-test")
	kube := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: in.PrivateDNS},
		Spec:       corev1.NodeSpec{ProviderID: in.ProviderID},
	})
	var out bytes.Buffer
	cl := &Cluster{StateDir: t.TempDir(), Log: log, Out: &out}
	a := &Agents{PollInterval: 50 * time.Millisecond, IMDSInterval: 100 * time.Millisecond}
	if err := a.start(ctx, cl, sim, kube); err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	eventually(t, 10*time.Second, "an agent for the node", func() bool {
		return strings.Join(a.Nodes(), ",") == in.PrivateDNS
	})

	if _, err := sim.InterruptSpot(in.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the node cordoned and tainted by its agent", func() bool {
		n, err := kube.CoreV1().Nodes().Get(ctx, in.PrivateDNS, metav1.GetOptions{})
		if err != nil || !n.Spec.Unschedulable {
			return false
		}
		for _, taint := range n.Spec.Taints {
			if taint.Key == "dovetail.dev/interruption" {
				return true
			}
		}
		return false
	})

	if err := sim.TerminateInstance(in.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the agent stopped with its instance", func() bool { return len(a.Nodes()) == 0 })
	a.Stop() // no more progress lines after this
	got := out.String()
	for _, want := range []string{"agent started: " + in.PrivateDNS, "agent stopped: " + in.PrivateDNS} {
		if !strings.Contains(got, want) {
			t.Errorf("progress lacks %q:\n%s", want, got)
		}
	}
}
