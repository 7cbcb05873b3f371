package integration

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/controlplane/manifest"
)

// Every manifest a user would write, from packaging/examples/, is accepted
// by the real API server with Dovetail's CRDs, and reads back as applied.
func TestExamplesAreAccepted(t *testing.T) {
	cp, _ := cluster(t)
	ctx := ctxFor(t)
	files, err := manifest.Files(repoPath(t, "packaging", "examples"))
	if err != nil {
		t.Fatalf("list examples: %v", err)
	}
	if len(files) == 0 {
		t.Fatal("packaging/examples has no manifests")
	}
	a, err := manifest.NewApplier(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	a.FieldManager = "integration-examples"
	kinds := map[string]int{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			objs, err := manifest.LoadFiles(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 0 {
				t.Fatalf("%s holds no objects", f)
			}
			for _, o := range objs {
				got, err := a.Apply(ctx, o)
				if err != nil {
					t.Errorf("refused: %v", err)
					continue
				}
				kinds[o.GetKind()]++
				// Read back through a fresh GET: what the server stored, not
				// what the apply response echoed.
				c, err := a.Client(o.Unstructured)
				if err != nil {
					t.Fatal(err)
				}
				stored, err := c.Get(ctx, o.GetName(), metav1.GetOptions{})
				if err != nil {
					t.Errorf("%s: not readable after apply: %v", o.Describe(), err)
					continue
				}
				if stored.GetUID() != got.GetUID() || stored.GetUID() == "" {
					t.Errorf("%s: stored object differs from the applied one", o.Describe())
				}
			}
		})
	}
	t.Logf("accepted example objects by kind: %v", kinds)
}

// Every manifest in packaging/examples/invalid/ is refused by the API server
// with the message its first line announces: "# expect: <substring>".
func TestInvalidExamplesAreRefused(t *testing.T) {
	cp, _ := cluster(t)
	ctx := ctxFor(t)
	files, err := manifest.Files(repoPath(t, "packaging", "examples", "invalid"))
	if err != nil {
		t.Fatalf("list invalid examples: %v", err)
	}
	if len(files) == 0 {
		t.Fatal("packaging/examples/invalid has no manifests")
	}
	a, err := manifest.NewApplier(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)), func(t *testing.T) {
			want, err := expectLine(f)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := manifest.LoadFiles(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != 1 {
				t.Fatalf("want exactly one object per invalid example, got %d", len(objs))
			}
			o := objs[0]
			c, err := a.Client(o.Unstructured)
			if err != nil {
				t.Fatal(err)
			}
			// A plain create, as `kubectl create` would send: the object
			// must be refused by validation, not by a name clash.
			created, err := c.Create(ctx, o.Unstructured, metav1.CreateOptions{})
			if err == nil {
				_ = c.Delete(ctx, created.GetName(), metav1.DeleteOptions{})
				t.Fatalf("accepted; want refusal with %q", want)
			}
			if apierrors.IsAlreadyExists(err) {
				t.Fatalf("name %q clashes with an existing object; invalid examples need unique names", o.GetName())
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Errorf("refused for a reason other than validation: %v", err)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal does not say %q:\n%v", want, err)
			}
		})
	}
}

// expectLine reads the "# expect: <substring>" first line of an invalid example.
func expectLine(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return "", &os.PathError{Op: "read first line", Path: path, Err: os.ErrInvalid}
	}
	line := strings.TrimSpace(sc.Text())
	want, ok := strings.CutPrefix(line, "# expect:")
	want = strings.TrimSpace(want)
	if !ok || want == "" {
		return "", &os.PathError{Op: "first line must be '# expect: <substring>', got " + line, Path: path, Err: os.ErrInvalid}
	}
	return want, nil
}
