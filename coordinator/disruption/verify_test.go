package disruption

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

func kpod(name, node string, antiAffinity bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}}}}}}
	if antiAffinity {
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, TopologyKey: corev1.LabelHostname}}}}
	}
	return p
}

func knode(name string, pods ...*corev1.Pod) scheduling.Node {
	return scheduling.Node{Name: name, NodePool: "gp", Labels: map[string]string{corev1.LabelHostname: name},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("29")},
		Pods:        pods}
}

func TestSchedulingVerifier(t *testing.T) {
	d := Decision{Reason: ReasonUnderutilized, Pool: "gp", Nodes: []string{"a"}}
	plain := scheduling.Snapshot{Nodes: []scheduling.Node{knode("a", kpod("w1", "a", false)), knode("b", kpod("w2", "b", false))}}
	v := SchedulingVerifier{Cluster: func(context.Context) (scheduling.Snapshot, error) { return plain, nil }}
	if err := v.Verify(context.Background(), nil, d); err != nil {
		t.Fatalf("plain pods fit on b: %v", err)
	}
	// Required anti-affinity: w1 may not join w2 on b, which the
	// resource-only planner cannot see; the verifier refuses.
	spread := scheduling.Snapshot{Nodes: []scheduling.Node{knode("a", kpod("w1", "a", true)), knode("b", kpod("w2", "b", true))}}
	v.Cluster = func(context.Context) (scheduling.Snapshot, error) { return spread, nil }
	err := v.Verify(context.Background(), nil, d)
	if err == nil || !strings.Contains(err.Error(), "web/w1") {
		t.Fatalf("anti-affinity should block the delete, got %v", err)
	}
}
