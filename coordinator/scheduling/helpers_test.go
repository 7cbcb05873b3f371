package scheduling

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
)

var testZones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

func realTypes(t testing.TB) []*cloud.InstanceType {
	t.Helper()
	c, err := catalog.Load()
	if err != nil {
		t.Fatalf("catalog: %v", err)
	}
	return c.InstanceTypes("us-east-1", testZones)
}

// fakeType builds a small synthetic instance type.
func fakeType(name string, cpu, memGi, pods int64, price float64, extra map[string]string, res corev1.ResourceList) *cloud.InstanceType {
	labels := map[string]string{
		LabelInstanceType:                   name,
		LabelArch:                           "amd64",
		LabelOS:                             "linux",
		"karpenter.k8s.aws/instance-cpu":    fmt.Sprint(cpu),
		"karpenter.k8s.aws/instance-family": "f" + fmt.Sprint(cpu),
	}
	for k, v := range extra {
		labels[k] = v
	}
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(cpu, resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memGi<<30, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(pods, resource.DecimalSI),
	}
	for k, v := range res {
		alloc[k] = v
	}
	it := &cloud.InstanceType{Name: name, Labels: labels, Allocatable: alloc, Capacity: alloc}
	for _, z := range testZones {
		it.Offerings = append(it.Offerings,
			cloud.Offering{Zone: z, CapacityType: cloud.CapacityTypeOnDemand, Price: price, Available: true},
			cloud.Offering{Zone: z, CapacityType: cloud.CapacityTypeSpot, Price: price * 0.4, Available: true})
	}
	return it
}

func fakeTypes() []*cloud.InstanceType {
	return []*cloud.InstanceType{
		fakeType("small", 2, 4, 20, 0.1, nil, nil),
		fakeType("medium", 4, 8, 40, 0.2, nil, nil),
		fakeType("large", 8, 16, 80, 0.4, nil, nil),
		fakeType("arm", 4, 8, 40, 0.15, map[string]string{LabelArch: "arm64"}, nil),
		fakeType("gpu", 8, 32, 40, 3, map[string]string{"karpenter.k8s.aws/instance-gpu-count": "1"},
			corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}),
	}
}

type podOpt func(*corev1.Pod)

func mkPod(name, cpu, mem string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}}}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func pods(n int, prefix, cpu, mem string, opts ...podOpt) []*corev1.Pod {
	out := make([]*corev1.Pod, n)
	for i := range out {
		out[i] = mkPod(fmt.Sprintf("%s-%d", prefix, i), cpu, mem, append([]podOpt{withLabels("app", prefix)}, opts...)...)
	}
	return out
}

func withLabels(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withNodeSelector(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.NodeSelector = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

func withToleration(key, value string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpEqual, Value: value, Effect: corev1.TaintEffectNoSchedule})
	}
}

func ensureAffinity(p *corev1.Pod) *corev1.Affinity {
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	return p.Spec.Affinity
}

func withRequiredNode(key string, op corev1.NodeSelectorOperator, values ...string) podOpt {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.NodeAffinity == nil {
			a.NodeAffinity = &corev1.NodeAffinity{}
		}
		if a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
			a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}}
		}
		t := &a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0]
		t.MatchExpressions = append(t.MatchExpressions, corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values})
	}
}

func withPreferredNode(weight int32, key string, values ...string) podOpt {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.NodeAffinity == nil {
			a.NodeAffinity = &corev1.NodeAffinity{}
		}
		a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.PreferredSchedulingTerm{Weight: weight, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}}}})
	}
}

func selfSelector(p *corev1.Pod) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": p.Labels["app"]}}
}

func withSpread(key string, skew int32, when corev1.UnsatisfiableConstraintAction) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
			MaxSkew: skew, TopologyKey: key, WhenUnsatisfiable: when, LabelSelector: selfSelector(p)})
	}
}

// withSpreadOn spreads on a selector of one label (not the pod's own app).
func withSpreadOn(key string, skew int32, label, value string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
			MaxSkew: skew, TopologyKey: key, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{label: value}}})
	}
}

func withAffinity(key string) podOpt {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		a.PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: key, LabelSelector: selfSelector(p)}}}
	}
}

func withAntiAffinity(key string) podOpt {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.PodAntiAffinity == nil {
			a.PodAntiAffinity = &corev1.PodAntiAffinity{}
		}
		a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
			corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: selfSelector(p)})
	}
}

func withPreferredAnti(weight int32, key string) podOpt {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.PodAntiAffinity == nil {
			a.PodAntiAffinity = &corev1.PodAntiAffinity{}
		}
		a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.WeightedPodAffinityTerm{Weight: weight, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: selfSelector(p)}})
	}
}

func defaultPool(name string, reqs ...Requirement) NodePool {
	if len(reqs) == 0 {
		reqs = []Requirement{{Key: LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{"spot", "on-demand"}}}
	}
	return NodePool{Name: name, Requirements: reqs, NodeClassRef: NodeClassRef{Name: "default"}}
}

// podsOn maps pod name to where it went ("node:x", "new:i", "none").
func podsOn(r Result) map[string]string {
	out := map[string]string{}
	for i, nc := range r.NewNodeClaims {
		for _, p := range nc.PodNames {
			out[p] = fmt.Sprintf("new:%d", i)
		}
	}
	for _, p := range r.Placements {
		if p.Node != "" {
			out[p.PodName] = "node:" + p.Node
		} else {
			out[p.PodName] = "claim:" + p.NodeClaim
		}
	}
	for _, u := range r.Unschedulable {
		out[u.PodName] = "none"
	}
	return out
}
