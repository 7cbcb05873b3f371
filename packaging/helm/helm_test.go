package helm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/dovetail-dev/dovetail/controlplane/manifest"
)

const (
	release   = "dovetail"
	namespace = "kube-system"
	// accountID is the one value the chart has no default for (unless
	// attestation.insecure): the AWS account whose instances may report.
	accountID = "123456789012"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func chartDir(name string) string { return filepath.Join(repoRoot(), "packaging", "helm", name) }

var productionValues = filepath.Join(repoRoot(), "packaging", "helm", "values-production.yaml")

// helmCmd runs bin/helm with its cache, config and data under a temp dir, so
// a test neither reads nor writes the user's Helm repositories and plugins.
type helmCmd struct {
	bin string
	env []string
}

func newHelm(t *testing.T) *helmCmd {
	t.Helper()
	binDir := os.Getenv("DOVETAIL_BIN")
	if binDir == "" {
		binDir = filepath.Join(repoRoot(), "bin")
	}
	bin := filepath.Join(binDir, "helm")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing (CI=true: make tools must have built it): %v", bin, err)
		}
		t.Skipf("skipping: %s missing (make tools builds it): %v", bin, err)
	}
	home := t.TempDir()
	env := append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	return &helmCmd{bin: bin, env: env}
}

// run returns helm's stdout, and an error carrying its stderr.
func (h *helmCmd) run(args ...string) (string, string, error) {
	cmd := exec.Command(h.bin, args...)
	cmd.Env = h.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (h *helmCmd) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := h.run(args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stderr, out)
	}
	return out
}

// render runs helm template for the coordinator chart with extra arguments.
func (h *helmCmd) render(t *testing.T, args ...string) []manifest.Object {
	t.Helper()
	out := h.mustRun(t, append([]string{"template", release, chartDir("dovetail-coordinator"), "--namespace", namespace}, args...)...)
	objs, err := manifest.Decode("helm template", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// defaults are the chart's values.yaml plus the one required value.
// --set-string: --set would make it a number, which the schema refuses (an
// account ID may start with 0).
var defaults = []string{"--set-string", "attestation.accountId=" + accountID}

func kinds(objs []manifest.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}

func find(t *testing.T, objs []manifest.Object, kind, name string) manifest.Object {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered; got %v", kind, name, kinds(objs))
	return manifest.Object{}
}

func TestLintStrict(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"coordinator defaults", append([]string{"lint", "--strict", chartDir("dovetail-coordinator")}, defaults...)},
		{"coordinator production", []string{"lint", "--strict", chartDir("dovetail-coordinator"), "-f", productionValues}},
		{"coordinator development", []string{"lint", "--strict", chartDir("dovetail-coordinator"),
			"--set", "raftTLS.insecure=true,apiTLS.insecure=true,gossip.dev=true,attestation.insecure=true"}},
		{"crd chart", []string{"lint", "--strict", chartDir("dovetail-crd")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.mustRun(t, tc.args...)
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint: %s", out)
			}
		})
	}
}
