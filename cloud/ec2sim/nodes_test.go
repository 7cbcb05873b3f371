package ec2sim

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/controlplane"
)

// TestNodeRegistration runs against the real local control plane (skipped
// when its binaries are not built, failed under CI=true).
func TestNodeRegistration(t *testing.T) {
	cp := controlplane.StartForTest(t)
	clk := newFakeClock()
	s := startSim(t, Config{Clock: clk, BootDelay: 10 * time.Second, RESTConfig: cp.RESTConfig})
	kc, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	userData := "#!/bin/bash\n/etc/eks/bootstrap.sh x --kubelet-extra-args '--node-labels=karpenter.sh/nodepool=default,team=a --register-with-taints=karpenter.sh/unregistered=:NoExecute'\n"
	id := launchOne(t, s, "node-1", "spot", "m5.large", b64(userData))
	info, _ := s.Instance(id)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Pending: no Node yet.
	if err := s.WaitNodesSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Nodes().Get(ctx, info.PrivateDNS, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("node exists while pending: %v", err)
	}
	clk.Advance(11 * time.Second)
	s.Reconcile()
	if err := s.WaitNodesSynced(ctx); err != nil {
		t.Fatal(err)
	}
	node, err := kc.CoreV1().Nodes().Get(ctx, info.PrivateDNS, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		corev1.LabelInstanceTypeStable:      "m5.large",
		corev1.LabelArchStable:              "amd64",
		corev1.LabelTopologyZone:            "us-east-1a",
		corev1.LabelTopologyRegion:          "us-east-1",
		"karpenter.sh/capacity-type":        "spot",
		"karpenter.sh/nodepool":             "default",
		"team":                              "a",
		"karpenter.k8s.aws/instance-family": "m5",
		"karpenter.k8s.aws/instance-cpu":    "2",
	}
	for k, v := range want {
		if node.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, node.Labels[k], v)
		}
	}
	if node.Spec.ProviderID != "aws:///us-east-1a/"+id || node.Annotations[KwokAnnotation] != "fake" {
		t.Errorf("providerID %q annotations %v", node.Spec.ProviderID, node.Annotations)
	}
	if len(node.Spec.Taints) == 0 || node.Spec.Taints[0].Key != "karpenter.sh/unregistered" {
		t.Errorf("taints %v", node.Spec.Taints)
	}
	if cpu := node.Status.Capacity[corev1.ResourceCPU]; cpu.Value() != 2 {
		t.Errorf("capacity %v", node.Status.Capacity)
	}
	// kwok makes it Ready.
	ready := false
	for !ready && ctx.Err() == nil {
		n, err := kc.CoreV1().Nodes().Get(ctx, info.PrivateDNS, metav1.GetOptions{})
		if err == nil {
			for _, c := range n.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
		}
		if !ready {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !ready {
		t.Fatal("node never became Ready")
	}

	if err := s.TerminateInstance(id); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	s.Reconcile()
	if err := s.WaitNodesSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Nodes().Get(ctx, info.PrivateDNS, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("node still there after terminate: %v", err)
	}
}

// TestNodeSpec checks the Node a running instance turns into, without a
// cluster (the registration itself is TestNodeRegistration).
func TestNodeSpec(t *testing.T) {
	s := startSim(t, Config{Region: "us-west-2"})
	nodeadm := "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    flags:\n    - --node-labels=karpenter.sh/nodepool=gpu\n    - --register-with-taints=nvidia.com/gpu=true:NoSchedule\n"
	id := launchOne(t, s, "spec-1", "on-demand", "m5.large", b64(nodeadm))
	s.mu.Lock()
	spec := s.nodeSpecLocked(s.instances[id])
	s.mu.Unlock()
	info, _ := s.Instance(id)
	if spec.name != info.PrivateDNS || spec.name == "" || spec.providerID != "aws:///us-west-2a/"+id || spec.ip != info.PrivateIP {
		t.Fatalf("identity: %+v", spec)
	}
	if !strings.HasSuffix(spec.name, ".us-west-2.compute.internal") {
		t.Fatalf("name %s", spec.name)
	}
	for k, v := range map[string]string{
		corev1.LabelTopologyRegion: "us-west-2", corev1.LabelTopologyZone: "us-west-2a", "karpenter.sh/capacity-type": "on-demand",
		"karpenter.sh/nodepool": "gpu", "topology.k8s.aws/zone-id": "usw2-az1", corev1.LabelHostname: spec.name,
	} {
		if spec.labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, spec.labels[k], v)
		}
	}
	if len(spec.taints) != 1 || spec.taints[0].Key != "nvidia.com/gpu" || spec.taints[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("taints %v", spec.taints)
	}
	if m := spec.alloc[corev1.ResourceMemory]; m.Value() >= 8<<30 || m.Value() < 6<<30 {
		t.Errorf("allocatable memory %v", m.String())
	}
	if p := spec.capacity[corev1.ResourcePods]; p.Value() != 29 {
		t.Errorf("pods %v", p.String())
	}
}

// BenchmarkNodeRegistration measures launch-to-Node throughput against the
// real control plane: b.N instances through CreateFleet, until every Node
// exists.
func BenchmarkNodeRegistration(b *testing.B) {
	cp := controlplane.StartForTest(b)
	s := startSim(b, Config{RESTConfig: cp.RESTConfig, DisableIMDS: true})
	ctx := context.Background()
	c := ec2Client(s, 3)
	lt := mustTemplate(b, ctx, c, s, "bench", "x86_64", "")
	kc, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.CreateFleet(ctx, fleetInput("nb-"+strconv.Itoa(i), lt, "on-demand", override{"m5.large", s.SubnetIDs()[i%3]})); err != nil {
			b.Fatal(err)
		}
	}
	s.Reconcile()
	if err := s.WaitNodesSynced(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	nodes, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) < b.N {
		b.Fatalf("nodes %d, want %d (%v)", len(nodes.Items), b.N, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "nodes/s")
}
