package integration

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusCase is one manifest of testdata/corpus: a user's manifest that
// Karpenter v1.14.0 accepts or refuses, assembled by Dovetail's developers
// from Karpenter's docs, examples and CEL validation tests (each file says
// which in its "# source:" line). Documents before the last are applied
// first (an object to update); the last is the case under test.
type corpusCase struct {
	path   string
	source string
	refuse string // the message a refusal must contain; "" means accepted
	docs   []string
}

func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	files, err := filepath.Glob(repoPath(t, "test", "integration", "testdata", "corpus", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	var cases []corpusCase
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c := corpusCase{path: f}
		expect := ""
		sc := bufio.NewScanner(strings.NewReader(string(raw)))
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "# source: "); ok {
				c.source = v
			}
			if v, ok := strings.CutPrefix(line, "# expect: "); ok {
				expect = v
			}
		}
		switch {
		case expect == "accepted":
		case strings.HasPrefix(expect, "refused: "):
			c.refuse = strings.TrimPrefix(expect, "refused: ")
		default:
			t.Fatalf("%s: want a line '# expect: accepted' or '# expect: refused: MESSAGE', got %q", f, expect)
		}
		if c.source == "" {
			t.Fatalf("%s: no '# source:' line", f)
		}
		c.docs = strings.Split(string(raw), "\n---\n")
		cases = append(cases, c)
	}
	return cases
}

// TestKarpenterCorpus applies every corpus manifest with `kubectl apply
// --server-side`, as a Karpenter user would, and checks the API server
// accepts what Karpenter v1.14.0 accepts and refuses, with the message
// Karpenter gives, what it refuses.
func TestKarpenterCorpus(t *testing.T) {
	cp, _ := cluster(t)
	cases := loadCorpus(t)
	accepted, refused := 0, 0
	for _, c := range cases {
		t.Run(strings.TrimSuffix(filepath.Base(c.path), ".yaml"), func(t *testing.T) {
			dir := t.TempDir()
			var applied []string
			t.Cleanup(func() {
				for i := len(applied) - 1; i >= 0; i-- {
					if out, err := kubectl(t, cp.Kubeconfig, "delete", "--wait=false", "--ignore-not-found", "-f", applied[i]); err != nil {
						t.Logf("cleanup %s: %v\n%s", c.path, err, out)
					}
				}
			})
			for i, doc := range c.docs {
				f := filepath.Join(dir, "doc"+string(rune('0'+i))+".yaml")
				if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
					t.Fatal(err)
				}
				out, err := kubectl(t, cp.Kubeconfig, "apply", "--server-side", "--field-manager=corpus", "-f", f)
				last := i == len(c.docs)-1
				switch {
				case !last || c.refuse == "":
					if err != nil {
						t.Fatalf("refused (Karpenter v1.14.0 accepts it; source: %s):\n%s", c.source, out)
					}
					applied = append(applied, f)
				case err == nil:
					applied = append(applied, f)
					t.Fatalf("accepted; Karpenter v1.14.0 refuses it with %q (source: %s):\n%s", c.refuse, c.source, out)
				case !strings.Contains(out, c.refuse):
					t.Fatalf("refused, but the message does not say %q:\n%s", c.refuse, out)
				}
			}
		})
		if c.refuse == "" {
			accepted++
		} else {
			refused++
		}
	}
	t.Logf("corpus: %d manifests accepted as Karpenter accepts them, %d refused as it refuses them", accepted, refused)
}

// `kubectl scale nodepool` goes through the scale subresource
// (spec.replicas / status.nodes) of a static NodePool, and is refused on a
// dynamic one (Karpenter's static/dynamic transition rule).
func TestKubectlScaleStaticNodePool(t *testing.T) {
	cp, _ := cluster(t)
	f := filepath.Join(t.TempDir(), "static.yaml")
	manifest := `apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: scale-static
spec:
  replicas: 1
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: [{key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}]
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: scale-dynamic
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: [{key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}]
`
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl(t, cp.Kubeconfig, "apply", "--server-side", "-f", f); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = kubectl(t, cp.Kubeconfig, "delete", "--ignore-not-found", "-f", f) })
	if out, err := kubectl(t, cp.Kubeconfig, "scale", "nodepool", "scale-static", "--replicas=3"); err != nil {
		t.Fatalf("kubectl scale: %v\n%s", err, out)
	}
	out, err := kubectl(t, cp.Kubeconfig, "get", "nodepool", "scale-static", "-o", "jsonpath={.spec.replicas}")
	if err != nil || strings.TrimSpace(out) != "3" {
		t.Fatalf("spec.replicas after kubectl scale = %q (%v), want 3", out, err)
	}
	out, err = kubectl(t, cp.Kubeconfig, "scale", "nodepool", "scale-dynamic", "--replicas=2")
	if err == nil || !strings.Contains(out, "Cannot transition NodePool between static") {
		t.Fatalf("kubectl scale of a dynamic pool: %v\n%s; want Karpenter's transition refusal", err, out)
	}
}
