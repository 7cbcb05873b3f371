package wiring

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/provisioning"
)

// The consolidation verifier's scheduling snapshot carries the namespaces'
// labels, so a namespaceSelector in a pod's affinity is evaluated as
// kube-scheduler evaluates it. Here the pod on n1 requires a db pod on its
// node in a namespace labelled team=a; the only db pod (on n2) is in a
// namespace without that label, so deleting n1 must be refused. Without
// namespace labels the selector counted every namespace, the db pod
// matched, and the verifier let the deletion through: the pod would then
// have stayed Pending.
func TestConsolidationVerifyEvaluatesNamespaceSelector(t *testing.T) {
	ready := func(name string) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				corev1.LabelHostname: name, corev1.LabelTopologyZone: "us-east-1a"}},
			Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
				corev1.ResourcePods: resource.MustParse("110")}},
		}
	}
	pod := func(ns, name, node string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("100Mi")}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}
	}
	mover := pod("team-a", "app", "n1", map[string]string{"app": "web"})
	mover.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			TopologyKey:       corev1.LabelHostname,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
		}}}}
	for _, c := range []struct {
		name       string
		otherLabel map[string]string
		refused    bool
	}{
		{"db pod in an unselected namespace", nil, true},
		{"db pod in a selected namespace", map[string]string{"team": "a"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := []runtime.Object{
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"team": "a"}}},
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other", Labels: c.otherLabel}},
				ready("n1"), ready("n2"),
				mover.DeepCopy(),
				pod("other", "db", "n2", map[string]string{"app": "db"}),
			}
			dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
				provisioning.NodePoolsGVR: "NodePoolList", provisioning.NodeClaimsGVR: "NodeClaimList",
				provisioning.EC2NodeClassesGVR: "EC2NodeClassList",
			})
			view := newClusterView(kubefake.NewClientset(objs...), dyn, slog.Default())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			// Shutdown waits for the informers, which stop with ctx.
			defer view.stop()
			defer cancel()
			if err := view.start(ctx); err != nil {
				t.Fatal(err)
			}
			src := &snapshotSource{view: view, store: newFSMStore(),
				types: &cloudTypes{src: fakeTypes{}}, now: time.Now}
			verifier := disruption.SchedulingVerifier{Cluster: src.scheduling}
			err := verifier.Verify(ctx, nil, disruption.Decision{Reason: "Underutilized", Nodes: []string{"n1"}})
			if c.refused && (err == nil || !strings.Contains(err.Error(), "team-a/app")) {
				t.Fatalf("deleting n1: %v, want refused (team-a/app has no db pod in a team=a namespace to join)", err)
			}
			if !c.refused && err != nil {
				t.Fatalf("deleting n1: %v, want allowed (the db pod on n2 is in a team=a namespace)", err)
			}
		})
	}
}
