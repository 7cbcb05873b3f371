package helm

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/controlplane/manifest"
)

func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }

// TestInstallDryRunServer runs `helm install --dry-run=server` against the
// local control plane (Helm checks every object against the server's OpenAPI
// schema and for conflicts with existing objects), then server-side applies
// what it rendered, which the API server checks field by field (CRD-backed
// kinds included). The control plane serves the generated CRDs already.
func TestInstallDryRunServer(t *testing.T) {
	h := newHelm(t)
	cp := controlplane.Shared(t)
	cases := []struct {
		name string
		args []string
		want int // objects rendered
	}{
		{"defaults", defaults, len(defaultObjects)},
		// Without the Prometheus Operator's CRDs, which the control plane
		// does not serve; TestTemplateProduction checks those two objects.
		{"production", []string{"-f", productionValues, "--set", "serviceMonitor.enabled=false,prometheusRule.enabled=false"}, len(defaultObjects)},
		{"development", []string{"--set", "replicas=5,raftTLS.insecure=true,gossip.dev=true,apiTLS.insecure=true,networkPolicy.enabled=false"}, len(defaultObjects) - 1},
	}
	// Every dry run first: a dry run refuses objects that exist and are not
	// the release's, as the applies below leave them.
	rendered := make([][]manifest.Object, len(cases))
	for i, tc := range cases {
		args := append([]string{"install", release, chartDir("dovetail-coordinator"), "--namespace", namespace,
			"--dry-run=server", "--kubeconfig", cp.Kubeconfig, "-o", "json"}, tc.args...)
		out := h.mustRun(t, args...)
		var rel struct {
			Manifest string `json:"manifest"`
			Info     struct {
				Status string `json:"status"`
				Notes  string `json:"notes"`
			} `json:"info"`
		}
		if err := json.Unmarshal([]byte(out), &rel); err != nil {
			t.Fatalf("%s: helm install -o json: %v\n%s", tc.name, err, out)
		}
		objs, err := manifest.Decode("helm install --dry-run=server", []byte(rel.Manifest))
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != tc.want {
			t.Fatalf("%s: dry run rendered %d objects, want %d: %v", tc.name, len(objs), tc.want, kinds(objs))
		}
		for _, want := range []string{"rollout status statefulset/dovetail", "dovetail status --server", "kubectl get nodepools"} {
			if !strings.Contains(rel.Info.Notes, want) {
				t.Errorf("%s: NOTES.txt lacks %q:\n%s", tc.name, want, rel.Info.Notes)
			}
		}
		rendered[i] = objs
	}
	a, err := manifest.NewApplier(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		if err := a.ApplyAll(context.Background(), rendered[i]); err != nil {
			t.Fatalf("%s: apply the dry run's objects: %v", tc.name, err)
		}
		// Gone again before the next case and test: the cases share names,
		// and a later `helm install` refuses objects it does not own.
		deleteObjects(t, a, rendered[i])
	}
}

// deleteObjects deletes objs (already gone is fine).
func deleteObjects(t *testing.T, a *manifest.Applier, objs []manifest.Object) {
	t.Helper()
	for _, o := range objs {
		c, err := a.Client(o.Unstructured)
		if err != nil {
			t.Errorf("delete %s: %v", o.Describe(), err)
			continue
		}
		if err := c.Delete(context.Background(), o.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", o.Describe(), err)
		}
	}
}
