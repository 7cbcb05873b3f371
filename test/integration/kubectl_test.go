package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kubectl runs bin/kubectl against the shared cluster, as a user of the
// local cluster would.
func kubectl(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	bin := repoPath(t, "bin", "kubectl")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bin/kubectl missing (CI=true): run `make tools`")
		}
		t.Skip("bin/kubectl missing: run `make tools`")
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// The README's promise: `kubectl apply -f packaging/examples/` succeeds, and
// an invalid NodePool is refused with a clear message.
func TestKubectlAppliesExamplesAndRefusesInvalid(t *testing.T) {
	cp, _ := cluster(t)
	out, err := kubectl(t, cp.Kubeconfig, "version", "-o", "yaml")
	if err != nil || !strings.Contains(out, "gitVersion: v1.37.2") {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	out, err = kubectl(t, cp.Kubeconfig, "apply", "-f", repoPath(t, "packaging", "examples")+string(filepath.Separator))
	if err != nil {
		t.Fatalf("kubectl apply -f packaging/examples/: %v\n%s", err, out)
	}
	t.Logf("kubectl apply:\n%s", out)

	invalid, err := filepath.Glob(repoPath(t, "packaging", "examples", "invalid", "nodepool-*.yaml"))
	if err != nil || len(invalid) == 0 {
		t.Fatalf("no invalid NodePool example: %v", err)
	}
	want, err := expectLine(invalid[0])
	if err != nil {
		t.Fatal(err)
	}
	out, err = kubectl(t, cp.Kubeconfig, "apply", "-f", invalid[0])
	if err == nil {
		t.Fatalf("kubectl apply of %s succeeded; want refusal", invalid[0])
	}
	if !strings.Contains(out, want) {
		t.Fatalf("kubectl refusal of %s does not say %q:\n%s", filepath.Base(invalid[0]), want, out)
	}
	t.Logf("refused as expected: %s", strings.TrimSpace(out))

	out, err = kubectl(t, cp.Kubeconfig, "get", "nodepools,ec2nodeclasses", "-o", "name")
	if err != nil {
		t.Fatalf("kubectl get: %v\n%s", err, out)
	}
	if !strings.Contains(out, "nodepool.karpenter.sh/") || !strings.Contains(out, "ec2nodeclass.karpenter.k8s.aws/") {
		t.Fatalf("kubectl get after apply lists no pools or classes:\n%s", out)
	}
}
