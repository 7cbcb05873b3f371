package helm

import (
	"context"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/controlplane/manifest"
)

// TestCRDChartInstallUpgradeUninstall installs dovetail-crd for real on the
// local control plane, taking over the CRDs it already serves (as after
// `kubectl apply -f packaging/crds/`), then upgrades it and checks the change
// reached the CRDs (templates are upgraded; crds/ never is), and uninstalls
// it: with keepOnUninstall the CRDs and a NodePool stored under them stay.
func TestCRDChartInstallUpgradeUninstall(t *testing.T) {
	h := newHelm(t)
	cp := controlplane.Shared(t)
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	names := []string{"nodepools.karpenter.sh", "nodeclaims.karpenter.sh", "ec2nodeclasses.karpenter.k8s.aws"}
	kube := []string{"--kubeconfig", cp.Kubeconfig, "--namespace", "default"}
	const rel = "dovetail-crd"

	h.mustRun(t, append([]string{"install", rel, chartDir("dovetail-crd"), "--take-ownership"}, kube...)...)
	for _, n := range names {
		crd, err := crds.Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if a := crd.GetAnnotations(); a["meta.helm.sh/release-name"] != rel || a["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s after install: annotations %v, want the release's and resource-policy keep", n, a)
		}
	}

	// A NodePool stored under the CRDs, to see it survive the uninstall.
	files, err := manifest.Files(filepath.Join(repoRoot(), "packaging", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	examples, err := manifest.LoadFiles(files...)
	if err != nil {
		t.Fatal(err)
	}
	pool := find(t, examples, "NodePool", "general-purpose")
	a, err := manifest.NewApplier(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteObjects(t, a, []manifest.Object{pool}) })

	h.mustRun(t, append([]string{"upgrade", rel, chartDir("dovetail-crd"), "--set-string", "additionalAnnotations.example\\.com/owner=platform"}, kube...)...)
	for _, n := range names {
		crd, err := crds.Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := crd.GetAnnotations()["example.com/owner"]; got != "platform" {
			t.Errorf("CRD %s after upgrade: annotation example.com/owner=%q, want platform (the upgrade did not reach it)", n, got)
		}
	}

	h.mustRun(t, append([]string{"uninstall", rel}, kube...)...)
	for _, n := range names {
		if _, err := crds.Get(ctx, n, metav1.GetOptions{}); err != nil {
			t.Errorf("CRD %s after uninstall with keepOnUninstall: %v", n, err)
		}
	}
	c, err := a.Client(pool.Unstructured)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, pool.GetName(), metav1.GetOptions{}); err != nil {
		t.Errorf("NodePool %s after uninstalling the CRD chart: %v", pool.GetName(), err)
	}
}
