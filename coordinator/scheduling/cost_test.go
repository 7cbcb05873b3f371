package scheduling

import (
	"math"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dovetail-dev/dovetail/cloud"
)

func TestBestBlendIsTheTwoResourceOptimum(t *testing.T) {
	const gi = float64(1 << 30)
	cs := []blendCand{
		{i: 0, price: 0.30, cpu: 8000, mem: 16 * gi}, // compute
		{i: 1, price: 0.36, cpu: 8000, mem: 32 * gi}, // general purpose
		{i: 2, price: 0.50, cpu: 8000, mem: 64 * gi}, // memory
	}
	// 80 cpu and 400 GiB (5 GiB per cpu): 7.5 general + 2.5 memory nodes.
	b, ok := bestBlend(cs, vec{80000, 400 << 30})
	if !ok {
		t.Fatal("no blend")
	}
	if b.a != 1 || b.b != 2 || math.Abs(b.xa-7.5) > 1e-9 || math.Abs(b.xb-2.5) > 1e-9 || math.Abs(b.cost-3.95) > 1e-9 {
		t.Fatalf("blend = %+v, want 7.5 × general + 2.5 × memory = $3.95 (compute + memory would cost $4.00)", b)
	}
	// Unit prices price both blend types exactly: $0.0275/cpu, $0.004375/GiB.
	if math.Abs(b.prices.perCPU*1000-0.0275) > 1e-9 || math.Abs(b.prices.perMem*gi-0.004375) > 1e-9 {
		t.Fatalf("unit prices = %v/cpu %v/GiB", b.prices.perCPU*1000, b.prices.perMem*gi)
	}
	// A cpu-heavy mix is cheapest on compute nodes alone; memory is free at the margin.
	b, _ = bestBlend(cs, vec{80000, 100 << 30})
	if b.a != 0 || b.b != -1 || b.prices.perMem != 0 || math.Abs(b.cost-3.0) > 1e-9 {
		t.Fatalf("cpu-heavy blend = %+v, want 10 × compute", b)
	}
	if _, ok := bestBlend(nil, vec{1000, 1 << 30}); ok {
		t.Fatal("blend without candidates")
	}
}

// A run whose pods are much cheaper on a type of their own (cpu-heavy,
// memory-light pods on small nodes) gets nodes of that type, and the rest
// of the batch does not lose room to it on the shared nodes.
func TestOddRunGetsItsOwnCheaperType(t *testing.T) {
	types := []*cloud.InstanceType{
		fakeType("big", 16, 64, 110, 0.40, nil, nil),
		fakeType("tiny", 2, 1, 20, 0.02, nil, nil),
	}
	var ps []*corev1.Pod
	ps = append(ps, pods(200, "balanced", "1", "4Gi")...)
	ps = append(ps, pods(50, "light", "1", "200Mi")...)
	s := Snapshot{Pods: ps, NodePools: []NodePool{defaultPool("default")}, InstanceTypes: map[string][]*cloud.InstanceType{"": types}}
	r := Solve(s, Options{})
	if len(r.Unschedulable) != 0 {
		t.Fatalf("unschedulable: %v", r.Unschedulable[0].Message)
	}
	tiny, big := 0, 0
	for _, nc := range r.NewNodeClaims {
		light := 0
		for _, n := range nc.PodNames {
			if strings.HasPrefix(n, "default/light-") {
				light++
			}
		}
		switch nc.InstanceTypes[0] {
		case "tiny":
			tiny++
			if light != len(nc.PodNames) {
				t.Errorf("tiny node %v holds other pods", nc.PodNames)
			}
			// Still a flexible list, cheapest first.
			if len(nc.InstanceTypes) != 2 || nc.InstanceTypes[1] != "big" || nc.Options[0].InstanceType != "tiny" || nc.Options[0].CapacityType != "spot" {
				t.Errorf("tiny node list %v options[0] %+v", nc.InstanceTypes, nc.Options[0])
			}
		case "big":
			big++
			if light > 0 {
				t.Errorf("big node holds %d light pods", light)
			}
		}
	}
	// 50 light pods two per tiny node; 200 cpu of balanced pods on 16-cpu nodes.
	if tiny != 25 || big != 13 {
		t.Fatalf("nodes: %d tiny, %d big; want 25 and 13", tiny, big)
	}
	if want := 25*0.008 + 13*0.16; math.Abs(r.TotalPrice()-want) > 1e-9 {
		t.Fatalf("price %v, want %v", r.TotalPrice(), want)
	}
}

// Own nodes for an odd run never cost pods their place: with a node limit
// the run falls back to room on the shared nodes.
func TestOddRunFallsBackToSharedNodesAtNodeLimit(t *testing.T) {
	types := []*cloud.InstanceType{
		fakeType("big", 16, 64, 110, 0.40, nil, nil),
		fakeType("tiny", 2, 1, 20, 0.02, nil, nil),
	}
	var ps []*corev1.Pod
	ps = append(ps, pods(20, "balanced", "1", "4Gi")...)
	ps = append(ps, pods(10, "light", "1", "200Mi")...)
	pool := defaultPool("default")
	pool.Limits = corev1.ResourceList{"nodes": resource.MustParse("2")}
	s := Snapshot{Pods: ps, NodePools: []NodePool{pool}, InstanceTypes: map[string][]*cloud.InstanceType{"": types}}
	r := Solve(s, Options{})
	if len(r.Unschedulable) != 0 || len(r.NewNodeClaims) != 2 {
		t.Fatalf("%d unschedulable, %d nodes; want all 30 pods on 2 big nodes", len(r.Unschedulable), len(r.NewNodeClaims))
	}
	// Consolidation's "one new node?" is not split either.
	r = Solve(Snapshot{Pods: ps[15:], NodePools: []NodePool{defaultPool("default")}, InstanceTypes: s.InstanceTypes}, Options{MaxNewNodeClaims: 1})
	if len(r.Unschedulable) != 0 || len(r.NewNodeClaims) != 1 {
		t.Fatalf("one new node: %d unschedulable, %d nodes", len(r.Unschedulable), len(r.NewNodeClaims))
	}
}

// One pod too large for any type does not switch the cost model off for
// the rest of the batch.
func TestOddRunWithAnUnschedulableGiant(t *testing.T) {
	types := []*cloud.InstanceType{
		fakeType("big", 16, 64, 110, 0.40, nil, nil),
		fakeType("tiny", 2, 1, 20, 0.02, nil, nil),
	}
	ps := append(pods(200, "balanced", "1", "4Gi"), pods(50, "light", "1", "200Mi")...)
	ps = append(ps, mkPod("giant", "64", "1Gi"))
	r := Solve(Snapshot{Pods: ps, NodePools: []NodePool{defaultPool("default")}, InstanceTypes: map[string][]*cloud.InstanceType{"": types}}, Options{})
	if len(r.Unschedulable) != 1 || r.Unschedulable[0].PodName != "default/giant" {
		t.Fatalf("unschedulable: %+v", r.Unschedulable)
	}
	if want := 25*0.008 + 13*0.16; math.Abs(r.TotalPrice()-want) > 1e-9 {
		t.Fatalf("price %v, want %v", r.TotalPrice(), want)
	}
}
