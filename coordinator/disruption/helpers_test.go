package disruption

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
)

var (
	t0    = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC) // a Monday, 03:00 UTC
	zones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}
)

const gi = int64(1) << 30

func dur(d time.Duration) *time.Duration { return &d }

var catalogTypes []cloud.InstanceType

func types(t testing.TB) []cloud.InstanceType {
	t.Helper()
	if catalogTypes == nil {
		cat, err := catalog.Load()
		if err != nil {
			t.Fatalf("catalog: %v", err)
		}
		for _, it := range cat.InstanceTypes("us-east-1", zones) {
			catalogTypes = append(catalogTypes, *it)
		}
	}
	return catalogTypes
}

func typeByName(t testing.TB, name string) cloud.InstanceType {
	for _, it := range types(t) {
		if it.Name == name {
			return it
		}
	}
	t.Fatalf("no type %s", name)
	return cloud.InstanceType{}
}

func price(it cloud.InstanceType, ct string) float64 {
	for _, o := range it.Offerings {
		if o.CapacityType == ct {
			return o.Price
		}
	}
	return 0
}

// pool returns an on-demand amd64 c/m/r pool that consolidates after 30s.
func testPool(name string) Pool {
	return Pool{
		Name: name, NodeClass: "default", ConsolidationPolicy: WhenEmptyOrUnderutilized,
		ConsolidateAfter: dur(30 * time.Second), ExpireAfter: dur(DefaultExpireAfter),
		Budgets: []budget.Budget{{Nodes: "100%"}},
		Requirements: []corev1.NodeSelectorRequirement{
			{Key: LabelCapacity, Operator: corev1.NodeSelectorOpIn, Values: []string{cloud.CapacityTypeOnDemand}},
			{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}},
			{Key: "karpenter.k8s.aws/instance-category", Operator: corev1.NodeSelectorOpIn, Values: []string{"c", "m", "r"}},
			{Key: "karpenter.k8s.aws/instance-generation", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}},
		},
	}
}

// testNode makes an initialized, Ready node of the given type, created an
// hour before t0, whose pods last changed 10 minutes before t0.
func testNode(t testing.TB, name, pool, typ, ct string, pods ...Pod) Node {
	it := typeByName(t, typ)
	labels := map[string]string{}
	for k, v := range it.Labels {
		labels[k] = v
	}
	labels[LabelCapacity] = ct
	labels[LabelZone] = zones[0]
	labels[LabelType] = typ
	labels[LabelNodePool] = pool
	return Node{
		Name: name, NodeClaim: name + "-claim", Pool: pool, NodeClass: "default", InstanceType: typ, Zone: zones[0], CapacityType: ct,
		Price: price(it, ct), Labels: labels, Annotations: map[string]string{}, Allocatable: ResourcesOf(it.Allocatable),
		Created: t0.Add(-time.Hour), LastPodChange: t0.Add(-10 * time.Minute), Initialized: true, Ready: true,
		ImageID: "ami-old", Pods: pods,
	}
}

func pod(name string, milliCPU int64, memGi float64) Pod {
	return Pod{Namespace: "default", Name: name, Requests: Resources{MilliCPU: milliCPU, Memory: int64(memGi * float64(gi)), Pods: 1}, Ready: true, Created: t0.Add(-time.Hour), EvictionCost: 1}
}

func daemon(name string) Pod {
	p := pod(name, 100, 0.1)
	p.Stays = true
	return p
}

func pods(prefix string, n int, milliCPU int64, memGi float64) []Pod {
	out := make([]Pod, n)
	for i := range out {
		out[i] = pod(fmt.Sprintf("%s-%d", prefix, i), milliCPU, memGi)
	}
	return out
}

func snapshot(t testing.TB, pools []Pool, nodes ...Node) *Snapshot {
	return &Snapshot{Pools: pools, Nodes: nodes, InstanceTypes: types(t),
		NodeClasses: []NodeClass{{Name: "default", AMIs: []AMIRef{{ID: "ami-old", Arch: "amd64"}}}}}
}

func skipFor(p Plan, node string, method Reason) *Skip {
	for i := range p.Skipped {
		if p.Skipped[i].Node == node && p.Skipped[i].Method == method {
			return &p.Skipped[i]
		}
	}
	return nil
}
