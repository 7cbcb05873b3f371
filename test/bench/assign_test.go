package bench

import (
	"math"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

func TestAssignmentBoundExactOnProportionalCatalogue(t *testing.T) {
	// Every synthetic type is k × (1 vCPU, 2 GiB, 10 pods) at k × $0.30, so
	// fractionally a batch of one shape costs $0.30 × max(vCPU, GiB/2, pods/10).
	pods := Pods(100, MixPlain, 1)
	for _, p := range pods {
		p.Spec.Containers[0].Resources.Requests = Pods(1, MixPlain, 7)[0].Spec.Containers[0].Resources.Requests
	}
	var cpu, mem float64
	for _, p := range pods {
		cpu += p.Spec.Containers[0].Resources.Requests.Cpu().AsApproximateFloat64()
		mem += p.Spec.Containers[0].Resources.Requests.Memory().AsApproximateFloat64() / (1 << 30)
	}
	want := math.Max(math.Max(0.3*cpu, 0.15*mem), 0.03*float64(len(pods)))
	if got := AssignmentBound(pods, SyntheticTypes()); math.Abs(got-want) > 1e-6*want {
		t.Fatalf("bound %v, want %v", got, want)
	}
}

// The bound is a floor: no packing Solve finds costs less, and it is at
// least as tight as the per-resource bound once converged.
func TestAssignmentBoundIsAValidFloor(t *testing.T) {
	real := catalog.MustLoad().InstanceTypes("us-east-1", Zones)
	for _, c := range []struct {
		types []*cloud.InstanceType
		mix   Mix
		n     int
	}{{real, MixPlain, 300}, {real, MixFifths, 300}, {real, MixPlain, 2000}, {SyntheticTypes(), MixFifths, 500}} {
		pods := Pods(c.n, c.mix, 3)
		res := scheduling.Solve(scheduling.Snapshot{Region: "us-east-1", Pods: pods, NodePools: []scheduling.NodePool{Pool()},
			InstanceTypes: map[string][]*cloud.InstanceType{"": c.types}}, scheduling.Options{})
		if len(res.Unschedulable) > 0 {
			t.Fatalf("%s %d: unschedulable pods", c.mix, c.n)
		}
		b := AssignmentBound(pods, c.types)
		if b <= 0 || b > res.TotalPrice()*(1+1e-9) {
			t.Errorf("%s %d: bound %v, packing costs %v", c.mix, c.n, b, res.TotalPrice())
		}
		if simple := LowerBound(pods, c.types); b < simple*(1-1e-6) {
			t.Errorf("%s %d: bound %v below the per-resource bound %v", c.mix, c.n, b, simple)
		}
	}
}

// Hostname anti-affinity is part of the bound: pods that repel each other
// need a machine each.
func TestAssignmentBoundModelsAntiAffinity(t *testing.T) {
	pods := Pods(500, MixFifths, 3)
	var anti []*corev1.Pod
	for _, p := range pods {
		if antiGroup(p) != "" {
			anti = append(anti, p)
		}
	}
	if len(anti) != 100 {
		t.Fatalf("%d anti-affinity pods, want 100", len(anti))
	}
	// One deployment, one shape: 100 machines of the cheapest type that holds it.
	types := SyntheticTypes()
	var cheapest float64 = math.Inf(1)
	for _, it := range types {
		if it.Allocatable.Cpu().Cmp(*anti[0].Spec.Containers[0].Resources.Requests.Cpu()) >= 0 &&
			it.Allocatable.Memory().Cmp(*anti[0].Spec.Containers[0].Resources.Requests.Memory()) >= 0 {
			cheapest = math.Min(cheapest, it.Offerings[0].Price)
		}
	}
	if got, want := AssignmentBound(anti, types), 100*cheapest; math.Abs(got-want) > 1e-6*want {
		t.Fatalf("bound %v, want %v (100 machines)", got, want)
	}
	// Still a floor under Solve on Karpenter's workload.
	kp := KarpenterPods(1000, 42)
	res := scheduling.Solve(scheduling.Snapshot{Pods: kp, NodePools: []scheduling.NodePool{KarpenterPool()},
		InstanceTypes: map[string][]*cloud.InstanceType{"": KarpenterTypes()}}, scheduling.Options{})
	if b := AssignmentBound(kp, KarpenterTypes()); b <= 0 || b > res.TotalPrice() {
		t.Fatalf("Karpenter 1,000: bound %v, packing %v", b, res.TotalPrice())
	}
}
