// Package integration tests Dovetail's API and the local control plane
// together: a real kube-apiserver with Dovetail's CRDs, the controller
// manager, the scheduler and kwok, all started once for the package by
// controlplane.Shared. Without the binaries from `make tools` the tests skip
// (and fail in CI, where CI=true).
package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/controlplane"
)

func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }

// waitTimeout bounds every wait for the cluster to converge. It is a
// deadline for a stuck test on a loaded two-core machine, not a speed target.
const waitTimeout = 2 * time.Minute

func cluster(t *testing.T) (*controlplane.ControlPlane, kubernetes.Interface) {
	t.Helper()
	cp := controlplane.Shared(t)
	kube, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	return cp, kube
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitUntil polls cond until it returns true, failing the test with the last
// observation when waitTimeout passes.
func waitUntil(t *testing.T, what string, cond func() (bool, string, error)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last string
	for {
		ok, obs, err := cond()
		if err != nil {
			obs = "error: " + err.Error()
		}
		if ok {
			return
		}
		last = obs
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s; last seen: %s", what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testNamespace creates a namespace for one test and deletes it afterwards,
// since the tests share one cluster.
func testNamespace(t *testing.T, kube kubernetes.Interface, prefix string) string {
	t.Helper()
	ctx := ctxFor(t)
	ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	// Pods are refused until the namespace's default service account exists.
	waitUntil(t, "default service account in "+ns.Name, func() (bool, string, error) {
		_, err := kube.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "not yet", nil
		}
		return err == nil, "", err
	})
	return ns.Name
}

var kwokNode struct {
	sync.Mutex
	name string
}

// ensureKwokNode registers one fake node for kwok to run (shared by the
// tests) and waits until it is Ready and free of the not-ready taint.
func ensureKwokNode(t *testing.T, kube kubernetes.Interface) string {
	t.Helper()
	kwokNode.Lock()
	defer kwokNode.Unlock()
	if kwokNode.name != "" {
		return kwokNode.name
	}
	ctx := ctxFor(t)
	name := fmt.Sprintf("kwok-it-%d", time.Now().UnixNano()%1e6)
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{controlplane.KwokNodeAnnotation: controlplane.KwokNodeValue},
			Labels: map[string]string{
				"kubernetes.io/hostname":           name,
				"kubernetes.io/os":                 "linux",
				"kubernetes.io/arch":               "amd64",
				"node.kubernetes.io/instance-type": "m5.large",
				"topology.kubernetes.io/zone":      "us-east-1a",
				"type":                             "kwok",
			},
		},
		Status: corev1.NodeStatus{
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("2"),
				corev1.ResourceMemory: resource.MustParse("8Gi"),
				corev1.ResourcePods:   resource.MustParse("110"),
			},
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("1930m"),
				corev1.ResourceMemory: resource.MustParse("7Gi"),
				corev1.ResourcePods:   resource.MustParse("110"),
			},
		},
	}
	if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create kwok node: %v", err)
	}
	waitUntil(t, "kwok node "+name+" Ready and untainted", func() (bool, string, error) {
		n, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		return ready && len(n.Spec.Taints) == 0, fmt.Sprintf("ready=%v taints=%v", ready, n.Spec.Taints), nil
	})
	kwokNode.name = name
	return name
}

// repoPath is a path inside the repository.
func repoPath(t *testing.T, elem ...string) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(append([]string{root}, elem...)...)
}
