package karpentermetrics

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dovetail-dev/dovetail/cloud"
)

// sample finds the value of the series of family name whose labels include
// want; ok is false when there is none.
func sample(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			return metricValue(mf.GetType(), m), true
		}
	}
	return 0, false
}

func metricValue(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_SUMMARY:
		return float64(m.GetSummary().GetSampleCount())
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

func node(name, pool string, created time.Time) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created), Labels: map[string]string{
			"karpenter.sh/nodepool": pool, "karpenter.sh/capacity-type": "spot", "topology.kubernetes.io/zone": "us-east-1a",
			"node.kubernetes.io/instance-type": "m5.large", "kubernetes.io/arch": "amd64",
			"karpenter.k8s.aws/instance-family": "m5", "topology.k8s.aws/zone-id": "use1-az1"}},
		Status: corev1.NodeStatus{Phase: corev1.NodeRunning,
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1930m"), corev1.ResourceMemory: resource.MustParse("7Gi")}},
	}
}

func TestKubeServesKarpenterNodePodAndPoolMetrics(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	old := node("old", "general", t0)
	ds := true
	daemon := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "kube-system",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", Controller: &ds}}},
		Spec: corev1.PodSpec{NodeName: "old", Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	kube := fake.NewClientset(old, daemon)
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": map[string]any{"name": "general"},
		"spec":   map[string]any{"limits": map[string]any{"cpu": "100", "memory": "400Gi"}},
		"status": map[string]any{"resources": map[string]any{"cpu": "2", "memory": "8Gi", "nodes": "1"}}}}
	// A NodeClaim being deleted (the launcher's finalizer holds it) for 90 s.
	claim := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": map[string]any{"name": "general-abc",
			"labels": map[string]any{"karpenter.sh/nodepool": "general"}, "finalizers": []any{"karpenter.sh/termination"},
			"deletionTimestamp": now.Add(-90 * time.Second).Format(time.RFC3339)}}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{NodePoolsGVR: "NodePoolList", NodeClaimsGVR: "NodeClaimList"}, pool, claim)
	reg := prometheus.NewPedanticRegistry()
	types := staticTypes{{Name: "m5.large", Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi")},
		Offerings: []cloud.Offering{{Zone: "us-east-1a", CapacityType: "spot", Price: 0.035, Available: true}, {Zone: "us-east-1b", CapacityType: "spot", Price: 0.04}}}}
	k, err := NewKube(KubeConfig{Kube: kube, Dynamic: dyn, InstanceTypes: types, Registerer: reg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool {
		_, ok := sample(t, reg, "karpenter_cloudprovider_instance_type_offering_price_estimate", nil)
		return ok
	})

	// A node that existed when the term started is not "created".
	if _, ok := sample(t, reg, "karpenter_nodes_created_total", nil); ok {
		t.Fatal("pre-existing node counted as created")
	}
	// A pending pod that gets bound and becomes ready; a node that joins.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: metav1.NewTime(now.Add(-30 * time.Second))},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	if _, err := kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		v, ok := sample(t, reg, "karpenter_pods_unbound_time_seconds", map[string]string{"name": "web"})
		return ok && v == 30
	})
	if _, err := kube.CoreV1().Nodes().Create(ctx, node("new", "general", now), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod.Spec.NodeName = "new"
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-20 * time.Second))},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-5 * time.Second))}}}
	if _, err := kube.CoreV1().Pods("default").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { v, _ := sample(t, reg, "karpenter_pods_startup_duration_seconds", nil); return v == 1 })

	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"karpenter_nodes_created_total", map[string]string{"nodepool": "general", "zone": "us-east-1a"}, 1},
		{"karpenter_pods_bound_duration_seconds", nil, 1},
		{"karpenter_nodes_allocatable", map[string]string{"node_name": "old", "resource_type": "cpu", "nodepool": "general",
			"instance_type": "m5.large", "capacity_type": "spot", "arch": "amd64", "zone": "us-east-1a", "instance_family": "m5",
			"zone_id": "use1-az1", "phase": "Running", "managed": "true"}, 1.93},
		{"karpenter_nodes_allocatable", map[string]string{"node_name": "old", "resource_type": "memory"}, 7 << 30},
		{"karpenter_nodes_system_overhead", map[string]string{"node_name": "old", "resource_type": "cpu"}, 0.07},
		{"karpenter_nodes_total_pod_requests", map[string]string{"node_name": "old", "resource_type": "cpu"}, 0.1},
		{"karpenter_nodes_total_daemon_requests", map[string]string{"node_name": "old", "resource_type": "cpu"}, 0.1},
		{"karpenter_nodes_total_pod_requests", map[string]string{"node_name": "old", "resource_type": "pods"}, 1},
		{"karpenter_nodes_total_daemon_limits", map[string]string{"node_name": "old", "resource_type": "cpu"}, 0.2},
		{"karpenter_nodes_total_pod_requests", map[string]string{"node_name": "new", "resource_type": "memory"}, 1 << 30},
		{"karpenter_nodes_current_lifetime_seconds", map[string]string{"node_name": "old"}, 3600},
		{"karpenter_pods_state", map[string]string{"name": "web", "namespace": "default", "node": "new", "scheduled": "true",
			"nodepool": "general", "phase": "Running", "ready": "true", "managed": "true", "instance_type": "m5.large"}, 1},
		{"karpenter_pods_state", map[string]string{"name": "agent", "owner": "/apis/apps/v1/namespaces/kube-system/daemonsets/agent"}, 1},
		{"karpenter_nodepools_limit", map[string]string{"nodepool": "general", "resource_type": "cpu"}, 100},
		{"karpenter_nodepools_usage", map[string]string{"nodepool": "general", "resource_type": "memory"}, 8 << 30},
		{"karpenter_nodepools_cost_total", map[string]string{"nodepool": "general"}, 0.07},
		{"karpenter_cloudprovider_instance_type_offering_available", map[string]string{"instance_type": "m5.large", "zone": "us-east-1b", "capacity_type": "spot"}, 0},
		{"karpenter_cloudprovider_instance_type_offering_price_estimate", map[string]string{"instance_type": "m5.large", "zone": "us-east-1a"}, 0.035},
		{"karpenter_cloudprovider_instance_type_cpu_cores", map[string]string{"instance_type": "m5.large"}, 2},
		{"karpenter_cluster_utilization_percent", map[string]string{"resource_type": "cpu"}, 100 * 0.6 / 3.86},
	}
	for _, c := range checks {
		got, ok := sample(t, reg, c.name, c.labels)
		if !ok || diff(got, c.want) > 1e-9 {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := sample(t, reg, "karpenter_pods_unbound_time_seconds", nil); ok {
		t.Error("bound pod still has an unbound time")
	}

	// The joined node goes away: terminated once, with its lifetime.
	if err := kube.CoreV1().Nodes().Delete(ctx, "new", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		v, _ := sample(t, reg, "karpenter_nodes_terminated_total", map[string]string{"nodepool": "general"})
		return v == 1
	})
	if v, _ := sample(t, reg, "karpenter_nodes_termination_duration_seconds", map[string]string{"nodepool": "general"}); v != 1 {
		t.Errorf("termination duration observations = %v, want 1", v)
	}
	if v, _ := sample(t, reg, "karpenter_nodes_lifetime_duration_seconds", map[string]string{"nodepool": "general"}); v != 1 {
		t.Errorf("lifetime observations = %v, want 1", v)
	}

	// The NodeClaim's finalizer goes and it is gone: one termination of 90 s.
	if _, ok := sample(t, reg, "karpenter_nodeclaims_termination_duration_seconds", nil); ok {
		t.Fatal("termination duration observed before the NodeClaim was gone")
	}
	if err := dyn.Resource(NodeClaimsGVR).Delete(ctx, "general-abc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		v, _ := sample(t, reg, "karpenter_nodeclaims_termination_duration_seconds", map[string]string{"nodepool": "general"})
		return v == 1
	})
	if sum := histogramSum(t, reg, "karpenter_nodeclaims_termination_duration_seconds"); sum != 90 {
		t.Errorf("NodeClaim termination took %v s, want 90", sum)
	}

	// The next term must be able to register the same names.
	cancel()
	<-done
	done <- nil
	if n, err := testutilCount(reg); err != nil || n != 0 {
		t.Errorf("after the term %d families remain (err %v)", n, err)
	}
}

func histogramSum(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return sum
}

func diff(a, b float64) float64 {
	if a > b {
		return a - b
	}
	return b - a
}

func testutilCount(g prometheus.Gatherer) (int, error) {
	mfs, err := g.Gather()
	return len(mfs), err
}

type staticTypes []*cloud.InstanceType

func (s staticTypes) InstanceTypes(context.Context) ([]*cloud.InstanceType, error) { return s, nil }

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
