package ec2

import (
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
)

func TestSSMParameterPaths(t *testing.T) {
	for _, c := range []struct{ alias, arch, want string }{
		{"al2023@latest", "x86_64", "/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/x86_64/standard/recommended/image_id"},
		{"al2023@v20240729", "arm64", "/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/arm64/standard/amazon-eks-node-al2023-arm64-standard-1.37-v20240729/image_id"},
		{"al2@latest", "x86_64", "/aws/service/eks/optimized-ami/1.37/amazon-linux-2/recommended/image_id"},
		{"al2@latest", "arm64", "/aws/service/eks/optimized-ami/1.37/amazon-linux-2-arm64/recommended/image_id"},
		{"al2@v20240729", "arm64", "/aws/service/eks/optimized-ami/1.37/amazon-linux-2-arm64/amazon-eks-arm64-node-1.37-v20240729/image_id"},
		{"bottlerocket@latest", "arm64", "/aws/service/bottlerocket/aws-k8s-1.37/arm64/latest/image_id"},
		{"bottlerocket@v1.20.5", "x86_64", "/aws/service/bottlerocket/aws-k8s-1.37/x86_64/1.20.5/image_id"},
	} {
		a, err := parseAlias(c.alias)
		if err != nil {
			t.Fatalf("%s: %v", c.alias, err)
		}
		if got := ssmParameter(a, "1.37", c.arch); got != c.want {
			t.Errorf("%s %s = %s\nwant %s", c.alias, c.arch, got, c.want)
		}
	}
	for _, bad := range []string{"al2023", "ubuntu@latest", "al2023@20240729", "al2023@"} {
		if _, err := parseAlias(bad); err == nil {
			t.Errorf("parseAlias(%q) accepted", bad)
		}
	}
}

func TestNewestPerArchPrefersUndeprecated(t *testing.T) {
	img := func(id, arch, created string, deprecated bool) ec2types.Image {
		i := ec2types.Image{ImageId: aws.String(id), Architecture: ec2types.ArchitectureValues(arch), CreationDate: aws.String(created)}
		if deprecated {
			i.DeprecationTime = aws.String("2026-01-01T00:00:00.000Z")
		}
		return i
	}
	got := newestPerArch([]ec2types.Image{
		img("ami-old", "x86_64", "2026-01-01T00:00:00.000Z", false),
		img("ami-new", "x86_64", "2026-06-01T00:00:00.000Z", false),
		img("ami-newer-deprecated", "x86_64", "2026-09-01T00:00:00.000Z", true),
		img("ami-arm", "arm64", "2025-01-01T00:00:00.000Z", false),
		img("ami-i386", "i386", "2027-01-01T00:00:00.000Z", false),
	})
	if len(got) != 2 || got[0].ID != "ami-new" || got[0].Arch != "amd64" || got[1].ID != "ami-arm" {
		t.Fatalf("newestPerArch = %+v", got)
	}
}

func TestTagFilters(t *testing.T) {
	fs := tagFilters(map[string]string{"b": "*", "a": "x"})
	if len(fs) != 2 || aws.ToString(fs[0].Name) != "tag:a" || fs[0].Values[0] != "x" || aws.ToString(fs[1].Name) != "tag-key" || fs[1].Values[0] != "b" {
		t.Fatalf("tagFilters = %+v", fs)
	}
}

func TestICECacheTTL(t *testing.T) {
	clock := newFakeClock()
	c := NewMemoryOfferings(clock, 3*time.Minute)
	c.MarkUnavailable("m5.large", "us-east-1a", "spot", "InsufficientInstanceCapacity")
	unavailable := func(it, zone, ct string) bool { _, ok := c.Unavailable(it, zone, ct); return ok }
	if code, ok := c.Unavailable("m5.large", "us-east-1a", "spot"); !ok || code != "InsufficientInstanceCapacity" || unavailable("m5.large", "us-east-1a", "on-demand") || unavailable("m5.large", "us-east-1b", "spot") {
		t.Fatal("cache marks the wrong offerings")
	}
	clock.Advance(3*time.Minute - time.Second)
	if len(c.Entries()) != 1 {
		t.Fatal("entry expired early")
	}
	clock.Advance(time.Second)
	if unavailable("m5.large", "us-east-1a", "spot") || len(c.Entries()) != 0 {
		t.Fatal("entry outlived its TTL")
	}
	for code, want := range map[string]bool{"InsufficientInstanceCapacity": true, "UnfulfillableCapacity": true, "MaxSpotInstanceCountExceeded": true, "VcpuLimitExceeded": true, "InvalidParameterValue": false, "RequestLimitExceeded": false} {
		if isICECode(code) != want {
			t.Errorf("isICECode(%s) = %v", code, !want)
		}
	}
}

func TestKubeletLabelFilter(t *testing.T) {
	for key, want := range map[string]bool{
		"team": true, "example.com/x": true, "karpenter.sh/nodepool": true, "node.kubernetes.io/instance-type": true,
		"topology.kubernetes.io/zone": true, "foo.node.kubernetes.io/bar": true, "kubelet.kubernetes.io/x": true,
		"node-role.kubernetes.io/worker": false, "kubernetes.io/hostname": false, "example.k8s.io/x": false,
		"notnode.kubernetes.io/x": false,
	} {
		if got := kubeletLabelAllowed(key); got != want {
			t.Errorf("kubeletLabelAllowed(%q) = %v", key, got)
		}
	}
}

func TestAL2023UserDataKeepsCustomParts(t *testing.T) {
	custom := "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\n\n--BOUNDARY\nContent-Type: text/x-shellscript\n\n#!/bin/bash\necho hello\n--BOUNDARY--\n"
	ud, err := userData(FamilyAL2023, bootstrap{
		ClusterName: "c", ClusterEndpoint: "https://api", ClusterCA: "Q0E=", MaxPods: 42,
		Labels: map[string]string{"b": "2", "a": "1"}, Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}},
		Kubelet: kubeletConfig{ClusterDNS: []string{"10.100.0.10"}, SystemReserved: map[string]string{"cpu": "100m"}},
		Custom:  custom,
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(strings.NewReader(ud))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	r := multipart.NewReader(msg.Body, params["boundary"])
	var types, bodies []string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		types = append(types, p.Header.Get("Content-Type"))
		bodies = append(bodies, string(b))
	}
	if len(types) != 2 || types[0] != "text/x-shellscript" || types[1] != "application/node.eks.aws" {
		t.Fatalf("parts = %v", types)
	}
	for _, want := range []string{"maxPods: 42", `- "10.100.0.10"`, `"cpu": "100m"`, `"--node-labels=a=1,b=2"`, `"--register-with-taints=k:NoSchedule"`, `name: "c"`} {
		if !strings.Contains(bodies[1], want) {
			t.Errorf("NodeConfig lacks %q:\n%s", want, bodies[1])
		}
	}
	if !strings.Contains(bodies[0], "echo hello") {
		t.Errorf("custom part lost: %q", bodies[0])
	}
	if _, err := userData("Windows2016", bootstrap{}); err == nil {
		t.Error("unsupported family accepted")
	}
}

func TestLaunchTemplateNaming(t *testing.T) {
	base := templateSpec{NodeClass: "default", Family: FamilyAL2023, AMI: "ami-1", UserData: "x", SGs: []string{"sg-1"}}
	n1 := base.name("cluster")
	if n1 != base.name("cluster") || len(n1) > 128 || !strings.HasPrefix(n1, "dovetail/cluster/default/") {
		t.Fatalf("name %q", n1)
	}
	other := base
	other.AMI = "ami-2"
	if other.name("cluster") == n1 {
		t.Fatal("a new AMI must make a new template")
	}
	long := base
	long.NodeClass = strings.Repeat("n", 200) + " bad chars!"
	if n := long.name("cluster"); len(n) > 128 || strings.ContainsAny(n, " !") {
		t.Fatalf("long name %q", n)
	}
}

func TestPlanSkipsUnusableOptions(t *testing.T) {
	p := &Provider{ice: NewMemoryOfferings(newFakeClock(), time.Minute), metrics: mustMetrics(t), catalog: catalog.MustLoad()}
	resolved := &cloud.ResolvedNodeClass{
		AMIs:    []cloud.AMI{{ID: "ami-x86", Arch: "amd64"}},
		Subnets: []cloud.Subnet{{ID: "subnet-a", Zone: "us-east-1a", AvailableIPs: 10}},
	}
	p.ice.MarkUnavailable("c5.large", "us-east-1a", "spot", "InsufficientInstanceCapacity")
	attempts, skipped, err := p.plan(resolved, &cloud.LaunchRequest{Options: []cloud.LaunchOption{
		{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: "on-demand"},
		{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: "spot"},
		{InstanceType: "m7g.large", Zone: "us-east-1a", CapacityType: "spot"}, // no arm64 AMI
		{InstanceType: "m5.large", Zone: "us-east-1d", CapacityType: "spot"},  // no subnet
		{InstanceType: "c5.large", Zone: "us-east-1a", CapacityType: "spot"},  // ICE
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 2 || attempts[0].capacityType != "spot" || len(attempts[0].overrides) != 1 || attempts[1].capacityType != "on-demand" {
		t.Fatalf("attempts = %+v", attempts)
	}
	if len(skipped) != 1 || skipped[0].InstanceType != "c5.large" || skipped[0].Code != "InsufficientInstanceCapacity" {
		t.Fatalf("skipped = %+v", skipped)
	}
	if _, _, err := p.plan(resolved, &cloud.LaunchRequest{Options: []cloud.LaunchOption{{InstanceType: "m7g.large", Zone: "us-east-1a", CapacityType: "spot"}}}); err == nil || !strings.Contains(err.Error(), "no AMI for architecture arm64") {
		t.Fatalf("arm64-only plan: %v", err)
	}
}

func mustMetrics(t *testing.T) *metrics {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFamilyParsing(t *testing.T) {
	for fam, want := range map[string][2]string{"m7gd": {"m", "7"}, "u-6tb1": {"u", "1"}, "c5": {"c", "5"}, "x2iezn": {"x", "2"}, "mac": {"mac", ""}} {
		c, g := splitFamily(fam)
		if c != want[0] || g != want[1] {
			t.Errorf("splitFamily(%s) = %s, %s", fam, c, g)
		}
	}
	p := &Provider{catalog: catalog.MustLoad()}
	for it, want := range map[string]string{"m7g.large": "arm64", "m5.large": "amd64", "zz9g.large": "arm64", "zz9.large": "amd64", "g5.xlarge": "amd64"} {
		if got := p.archOf(it); got != want {
			t.Errorf("archOf(%s) = %s, want %s", it, got, want)
		}
	}
}

func TestMetricsSharedAcrossProvidersOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newMetrics(reg)
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	a.launches.WithLabelValues("launched", "spot").Inc()
	b.launches.WithLabelValues("launched", "spot").Inc()
	if got := testutil.ToFloat64(a.launches.WithLabelValues("launched", "spot")); got != 2 {
		t.Fatalf("shared counter = %v, want 2", got)
	}
}
