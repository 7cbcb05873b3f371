package drain

// Against the real API server (package controlplane): server-side dry run,
// real PDB refusals, real Events. Skipped without `make tools` binaries.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/controlplane"
)

func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }

func realCluster(t *testing.T, node string, pods int) kubernetes.Interface {
	t.Helper()
	cp := controlplane.Shared(t)
	kc, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	q := resource.MustParse
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node, Annotations: map[string]string{controlplane.KwokNodeAnnotation: controlplane.KwokNodeValue}},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{"cpu": q("16"), "memory": q("64Gi"), "pods": q("110")},
			Capacity: corev1.ResourceList{"cpu": q("16"), "memory": q("64Gi"), "pods": q("110")}},
	}
	if _, err := kc.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kc.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	ns := node
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	grace := int64(3)
	for i := range pods {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("db-%d", i), Labels: map[string]string{"app": "db"}},
			Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{{Name: "c", Image: "x.invalid/db:1"}}}}
		if _, err := kc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	minAvail := intstr.FromInt32(int32(pods))
	if _, err := kc.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &minAvail, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		pdb, err := kc.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "db", metav1.GetOptions{})
		if err == nil && pdb.Status.ObservedGeneration == pdb.Generation && pdb.Status.CurrentHealthy == int32(pods) {
			return kc
		}
		if time.Now().After(deadline) {
			t.Fatalf("PDB never computed: %+v", pdb)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIntegrationDryRunAgainstRealPDB(t *testing.T) {
	const node = "drain-dry-run"
	kc := realCluster(t, node, 2)
	d, err := New(kc, Options{DryRun: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Drain(t.Context(), node, time.Now().Add(time.Minute), "consolidation")
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete || res.Count(OutcomeBlocked) != 2 {
		t.Fatalf("dry run should report the PDB: %+v", res.Pods)
	}
	n, _ := kc.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	if n.Spec.Unschedulable || hasTaint(n, DisruptedTaintKey, "") {
		t.Fatalf("dry run changed the node: %+v", n.Spec)
	}
	pods, _ := kc.CoreV1().Pods(node).List(t.Context(), metav1.ListOptions{})
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			t.Fatalf("dry run deleted %s", p.Name)
		}
	}
}

func TestIntegrationRealPDBBlocksThenRestore(t *testing.T) {
	const node = "drain-pdb"
	kc := realCluster(t, node, 2)
	d, err := New(kc, Options{Logger: slog.New(slog.DiscardHandler), Component: "dovetail-test"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Drain(t.Context(), node, time.Now().Add(3*time.Second), "maintenance")
	if err != nil {
		t.Fatal(err)
	}
	if b := res.Blocked(); len(b) != 2 || b[0].Attempts < 2 {
		t.Fatalf("blocked %+v", b)
	}
	pods, _ := kc.CoreV1().Pods(node).List(t.Context(), metav1.ListOptions{})
	if len(pods.Items) != 2 {
		t.Fatalf("PDB-protected pods removed: %d left", len(pods.Items))
	}
	evs, _ := kc.CoreV1().Events(node).List(t.Context(), metav1.ListOptions{})
	blocked := 0
	for _, e := range evs.Items {
		if e.Reason == "EvictionBlocked" {
			blocked++
		}
	}
	if blocked != 2 {
		t.Fatalf("%d EvictionBlocked events, want one per pod", blocked)
	}
	if err := d.Restore(t.Context(), node, "test over"); err != nil {
		t.Fatal(err)
	}
	n, _ := kc.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	// node.kubernetes.io/unschedulable is the node controller's, removed by it.
	if n.Spec.Unschedulable || hasTaint(n, DisruptedTaintKey, "") || hasTaint(n, InterruptionTaintKey, "maintenance") {
		t.Fatalf("not restored: %+v", n.Spec)
	}
}
