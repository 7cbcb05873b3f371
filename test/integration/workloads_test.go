package integration

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

func deployment(ns, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					// Only the fake node: a pod landing anywhere else would
					// mean the scheduler ignored the selector.
					NodeSelector: map[string]string{"type": "kwok"},
					Containers: []corev1.Container{{
						Name:  "app",
						Image: "registry.k8s.io/pause:3.10",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU:    resource.MustParse("100m"),
							corev1.ResourceMemory: resource.MustParse("64Mi"),
						}},
					}},
				},
			},
		},
	}
}

// runningPods waits until the deployment has want Running pods, all bound to
// node, and returns them.
func runningPods(t *testing.T, kube kubernetes.Interface, ns, app, node string, want int) []corev1.Pod {
	t.Helper()
	ctx := ctxFor(t)
	var pods []corev1.Pod
	waitUntil(t, fmt.Sprintf("%d running pods of %s on %s", want, app, node), func() (bool, string, error) {
		l, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return false, "", err
		}
		pods = pods[:0]
		var seen []string
		for _, p := range l.Items {
			seen = append(seen, fmt.Sprintf("%s phase=%s node=%q ip=%q", p.Name, p.Status.Phase, p.Spec.NodeName, p.Status.PodIP))
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == node && p.DeletionTimestamp == nil {
				pods = append(pods, p)
			}
		}
		return len(pods) == want, fmt.Sprint(seen), nil
	})
	return pods
}

// A Deployment gets a ReplicaSet and Pods (controller manager), the pods are
// bound to the kwok node (scheduler) and run (kwok's pod stages).
func TestDeploymentRunsOnKwokNode(t *testing.T) {
	_, kube := cluster(t)
	ctx := ctxFor(t)
	node := ensureKwokNode(t, kube)
	ns := testNamespace(t, kube, "deploy")

	if _, err := kube.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "web", 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := runningPods(t, kube, ns, "web", node, 3)
	for _, p := range pods {
		if p.Status.PodIP == "" {
			t.Errorf("pod %s runs without an IP", p.Name)
		}
		if len(p.OwnerReferences) == 0 || p.OwnerReferences[0].Kind != "ReplicaSet" {
			t.Errorf("pod %s not owned by a ReplicaSet: %v", p.Name, p.OwnerReferences)
		}
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			t.Errorf("pod %s Running but not Ready", p.Name)
		}
	}
	waitUntil(t, "deployment status 3/3 available", func() (bool, string, error) {
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return d.Status.AvailableReplicas == 3 && d.Status.ReadyReplicas == 3,
			fmt.Sprintf("ready=%d available=%d", d.Status.ReadyReplicas, d.Status.AvailableReplicas), nil
	})
}

// The disruption controller computes PDB status, and the eviction API
// refuses with 429 an eviction the budget does not allow, then allows it
// once the budget does.
func TestEvictionHonoursPDB(t *testing.T) {
	_, kube := cluster(t)
	ctx := ctxFor(t)
	node := ensureKwokNode(t, kube)
	ns := testNamespace(t, kube, "pdb")

	if _, err := kube.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "db", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(2)),
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
		},
	}
	if _, err := kube.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := runningPods(t, kube, ns, "db", node, 2)

	waitPDB := func(allowed int32) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("PDB status with %d disruptions allowed", allowed), func() (bool, string, error) {
			p, err := kube.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "db", metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			s := p.Status
			return s.ObservedGeneration == p.Generation && s.ExpectedPods == 2 && s.CurrentHealthy == 2 && s.DisruptionsAllowed == allowed,
				fmt.Sprintf("observedGeneration=%d/%d expected=%d healthy=%d desired=%d allowed=%d",
					s.ObservedGeneration, p.Generation, s.ExpectedPods, s.CurrentHealthy, s.DesiredHealthy, s.DisruptionsAllowed), nil
		})
	}
	waitPDB(0)

	evict := func(pod string) error {
		return kube.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod},
		})
	}
	err := evict(pods[0].Name)
	if err == nil {
		t.Fatal("eviction allowed although the PDB allows 0 disruptions")
	}
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("eviction refused with %v, want HTTP 429", err)
	}
	if code := apiStatusCode(err); code != 429 {
		t.Fatalf("eviction status code %d, want 429", code)
	}
	if p, err := kube.CoreV1().Pods(ns).Get(ctx, pods[0].Name, metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("refused eviction still touched the pod: err=%v deletion=%v", err, p.DeletionTimestamp)
	}

	// Relax the budget: the same eviction now goes through.
	cur, err := kube.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.MinAvailable = ptr.To(intstr.FromInt32(1))
	if _, err := kube.PolicyV1().PodDisruptionBudgets(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPDB(1)
	if err := evict(pods[0].Name); err != nil {
		t.Fatalf("eviction refused after the budget allowed it: %v", err)
	}
	waitUntil(t, "evicted pod gone or terminating", func() (bool, string, error) {
		p, err := kube.CoreV1().Pods(ns).Get(context.Background(), pods[0].Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		if err != nil {
			return false, "", err
		}
		return p.DeletionTimestamp != nil, "pod still there, not terminating", nil
	})
}

func apiStatusCode(err error) int32 {
	if s, ok := err.(apierrors.APIStatus); ok {
		return s.Status().Code
	}
	return 0
}
