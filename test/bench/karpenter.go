package bench

import (
	"fmt"
	"math/rand"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

// MixKarpenter is Karpenter core's scheduling benchmark workload
// (kubernetes-sigs/karpenter pkg/controllers/provisioning/scheduling/
// scheduling_benchmark_test.go, makeDiversePods), drawn from the same
// random sequence (seed 42): fifths of generic pods, zonal spread, hostname
// spread, zonal self-affinity and hostname anti-affinity. Labels are shared
// across groups: generic and spread pods carry my-label from seven values
// and every spread selects one of those values, so a spread counts generic
// pods and other spreads' pods too; the zonal affinity groups are
// my-affininity (sic) values; all anti-affinity pods are one group
// (app=nginx). Requests are drawn per pod from {100m, 250m, 500m, 1,
// 1.5} cpu and {100Mi, 256Mi, 512Mi, 1Gi, 2Gi, 4Gi}.
const MixKarpenter Mix = "karpenter"

// KarpenterZones are the zones of Karpenter's fake cloud provider.
var KarpenterZones = []string{"test-zone-1", "test-zone-2", "test-zone-3"}

// KarpenterPods generates Karpenter's diverse pods. Creation times
// increase in generation order, as test.Pod's metav1.Now() does, so
// kube-scheduler's queue order is the generation order.
func KarpenterPods(count int, seed int64) []*corev1.Pod {
	r := rand.New(rand.NewSource(seed))
	labelValues := []string{"a", "b", "c", "d", "e", "f", "g"}
	value := func() string { return labelValues[r.Intn(len(labelValues))] }
	cpu := func() resource.Quantity {
		v := []int{100, 250, 500, 1000, 1500}
		return resource.MustParse(fmt.Sprintf("%dm", v[r.Intn(len(v))]))
	}
	mem := func() resource.Quantity {
		v := []int{100, 256, 512, 1024, 2048, 4096}
		return resource.MustParse(fmt.Sprintf("%dMi", v[r.Intn(len(v))]))
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []*corev1.Pod
	mk := func(kind string, lbls map[string]string) *corev1.Pod {
		i := len(out)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", kind, i), Namespace: "default", Labels: lbls,
				CreationTimestamp: metav1.NewTime(base.Add(time.Duration(i) * time.Millisecond))},
			Status: corev1.PodStatus{Phase: corev1.PodPending},
		}
		out = append(out, p)
		return p
	}
	requests := func(p *corev1.Pod) {
		c := cpu()
		m := mem()
		p.Spec.Containers = []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: c, corev1.ResourceMemory: m}}}}
	}
	generic := func(n int) {
		for i := 0; i < n; i++ {
			requests(mk("generic", map[string]string{"my-label": value()}))
		}
	}
	spread := func(n int, key string) {
		for i := 0; i < n; i++ {
			p := mk("spread-"+shortKey(key), map[string]string{"my-label": value()})
			p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: key, WhenUnsatisfiable: corev1.DoNotSchedule,
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"my-label": value()}}}}
			requests(p)
		}
	}
	n := count / 5
	generic(n)
	spread(n, corev1.LabelTopologyZone)
	spread(n, corev1.LabelHostname)
	for i := 0; i < n; i++ {
		lbls := map[string]string{"my-affininity": value()}
		p := mk("affinity-zone", lbls)
		p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			TopologyKey: corev1.LabelTopologyZone, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"my-affininity": lbls["my-affininity"]}}}}}}
		requests(p)
	}
	for i := 0; i < n; i++ {
		p := mk("anti-hostname", map[string]string{"app": "nginx"})
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			TopologyKey: corev1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}}}}}}
		requests(p)
	}
	generic(count - len(out))
	return out
}

func shortKey(k string) string {
	if k == corev1.LabelHostname {
		return "hostname"
	}
	return "zone"
}

// KarpenterTypes is Karpenter's fake.InstanceTypes(400): type i has i+1
// vCPU, 2(i+1) GiB and 10(i+1) pods, priced 0.1 per vCPU plus 0.1 per GB
// (10^9 bytes) of capacity, offered as spot in test-zone-1/2 and on-demand
// in test-zone-1/2/3. As Karpenter's benchmark computes allocatable, 100m
// cpu and 10Mi memory are kube-reserved.
func KarpenterTypes() []*cloud.InstanceType {
	out := make([]*cloud.InstanceType, 0, 400)
	for i := 0; i < 400; i++ {
		n := int64(i + 1)
		name := fmt.Sprintf("fake-it-%d", i)
		capacity := corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewQuantity(n, resource.DecimalSI),
			corev1.ResourceMemory: resource.MustParse(fmt.Sprintf("%dGi", 2*n)),
			corev1.ResourcePods:   *resource.NewQuantity(10*n, resource.DecimalSI),
		}
		alloc := capacity.DeepCopy()
		c := alloc[corev1.ResourceCPU]
		c.Sub(resource.MustParse("100m"))
		alloc[corev1.ResourceCPU] = c
		m := alloc[corev1.ResourceMemory]
		m.Sub(resource.MustParse("10Mi"))
		alloc[corev1.ResourceMemory] = m
		mq := capacity[corev1.ResourceMemory]
		price := 0.1*float64(n) + 0.1*mq.AsApproximateFloat64()/1e9
		it := &cloud.InstanceType{Name: name, Capacity: capacity, Allocatable: alloc, Labels: map[string]string{
			corev1.LabelInstanceTypeStable: name, corev1.LabelArchStable: "amd64", corev1.LabelOSStable: "linux",
		}}
		for _, z := range KarpenterZones[:2] {
			it.Offerings = append(it.Offerings, cloud.Offering{Zone: z, CapacityType: cloud.CapacityTypeSpot, Price: price, Available: true})
		}
		for _, z := range KarpenterZones {
			it.Offerings = append(it.Offerings, cloud.Offering{Zone: z, CapacityType: cloud.CapacityTypeOnDemand, Price: price, Available: true})
		}
		out = append(out, it)
	}
	return out
}

// KarpenterPool is the benchmark's NodePool: no requirements (so
// on-demand, as Karpenter) and limits far above the batch.
func KarpenterPool() scheduling.NodePool {
	return scheduling.NodePool{Name: "default", NodeClassRef: scheduling.NodeClassRef{Name: "default"},
		Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10000000"), corev1.ResourceMemory: resource.MustParse("10000000Gi")}}
}
