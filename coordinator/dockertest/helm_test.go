package dockertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/controlplane/manifest"
)

// TestHelmChartAppliesToAPIServer renders packaging/helm/dovetail-coordinator
// with helm and server-side applies every object to a real API server,
// which rejects unknown or mistyped fields. Skipped without a helm binary
// (PATH or $HOME/go/bin).
func TestHelmChartAppliesToAPIServer(t *testing.T) {
	helm, err := exec.LookPath("helm")
	if err != nil {
		home, _ := os.UserHomeDir()
		helm = filepath.Join(home, "go", "bin", "helm")
		if _, err := os.Stat(helm); err != nil {
			t.Skip("helm not installed (go install helm.sh/helm/v3/cmd/helm@v3.22.0)")
		}
	}
	chart := filepath.Join(repoRoot(t), "packaging", "helm", "dovetail-coordinator")
	for _, values := range [][]string{nil, {"--set", "replicas=5", "--set", "raftTLS.insecure=true", "--set", "gossip.dev=true", "--set", "apiTLS.insecure=true"}} {
		args := append([]string{"template", "dc", chart, "--namespace", "kube-system"}, values...)
		out, err := exec.Command(helm, args...).Output()
		if err != nil {
			t.Fatalf("helm %v: %v", args, err)
		}
		objs, err := manifest.Decode("helm template", out)
		if err != nil {
			t.Fatal(err)
		}
		// 7 + NetworkPolicy + the dovetail-view and dovetail-admin ClusterRoles.
		if len(objs) != 10 {
			t.Fatalf("rendered %d objects, want 10", len(objs))
		}
		cp := controlplane.Shared(t)
		a, err := manifest.NewApplier(cp.RESTConfig)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.ApplyAll(context.Background(), objs); err != nil {
			t.Fatalf("apply rendered chart (%v): %v", values, err)
		}
	}
}
