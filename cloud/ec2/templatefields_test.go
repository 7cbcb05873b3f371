package ec2

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// The Karpenter v1.14 fields ipPrefixCount, connectionTracking,
// cpuOptions.nestedVirtualization and ebs.volumeInitializationRate reach
// the launch template as EC2 expects them; the simulator records the
// template and refuses what EC2 refuses.
func TestKarpenter114FieldsReachTheLaunchTemplate(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	i32 := func(v int32) *int32 { return &v }
	str := func(v string) *string { return &v }
	size := resource.MustParse("50Gi")
	nc := testNodeClass("tuned")
	nc.Spec.IPPrefixCount = i32(2)
	nc.Spec.ConnectionTracking = &awsv1.ConnectionTracking{TCPEstablishedTimeout: i32(3600), UDPTimeout: i32(30)}
	nc.Spec.CPUOptions = &awsv1.CPUOptions{NestedVirtualization: str("enabled")}
	nc.Spec.BlockDeviceMappings = []*awsv1.BlockDeviceMapping{{DeviceName: str("/dev/xvda"), RootVolume: true,
		EBS: &awsv1.BlockDevice{VolumeSize: &size, SnapshotID: str("snap-0123456789abcdef0"), VolumeInitializationRate: i32(200)}}}
	// m8i: a type that reports nested virtualization (m5 does not; below).
	if _, err := e.p.Create(ctx, nc, request("claim-tuned", opt("m8i.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.106))); err != nil {
		t.Fatal(err)
	}
	var data map[string]string
	for _, name := range e.sim.LaunchTemplateNames() {
		if strings.Contains(name, "/tuned/") {
			data = e.sim.LaunchTemplateData(name)
		}
	}
	if data == nil {
		t.Fatalf("no launch template for node class tuned in %v", e.sim.LaunchTemplateNames())
	}
	for k, v := range map[string]string{
		"NetworkInterface.1.Ipv4PrefixCount":                                       "2",
		"NetworkInterface.1.ConnectionTrackingSpecification.TcpEstablishedTimeout": "3600",
		"NetworkInterface.1.ConnectionTrackingSpecification.UdpTimeout":            "30",
		"CpuOptions.NestedVirtualization":                                          "enabled",
		"BlockDeviceMapping.1.Ebs.VolumeInitializationRate":                        "200",
	} {
		if data[k] != v {
			t.Errorf("launch template %s = %q, want %q", k, data[k], v)
		}
	}
	if data["NetworkInterface.1.SecurityGroupId.1"] == "" {
		t.Errorf("the explicit primary interface lost the security groups: %v", data)
	}

	// EC2 refuses nested virtualization on a type without it.
	_, err := e.p.Create(ctx, nc, request("claim-nested-m5", opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096)))
	if err == nil || !strings.Contains(err.Error(), "Nested virtualization is not supported") {
		t.Fatalf("nested virtualization on m5.large: %v, want EC2's refusal", err)
	}

	// A rate without a snapshot (which the CRD refuses) is refused by EC2 too.
	bad := testNodeClass("bad-rate")
	bad.Spec.BlockDeviceMappings = []*awsv1.BlockDeviceMapping{{DeviceName: str("/dev/xvda"), RootVolume: true,
		EBS: &awsv1.BlockDevice{VolumeSize: &size, VolumeInitializationRate: i32(200)}}}
	_, err = e.p.Create(ctx, bad, request("claim-bad", opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096)))
	if err == nil || !strings.Contains(err.Error(), "volume initialization rate") {
		t.Fatalf("launch with a rate but no snapshot: %v, want EC2's refusal", err)
	}
}
