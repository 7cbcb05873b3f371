package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeMultiDocument(t *testing.T) {
	src := `# expect: something
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: a
---
# only a comment
---
{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "x"}}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c}
- apiVersion: v1
  kind: Secret
  metadata: {name: d}
`
	objs, err := Decode("f.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName()+"@"+o.Source)
	}
	// Numbers count every "---" section, empty ones too, so they point into the file.
	want := []string{"NodePool/a@f.yaml#2", "ConfigMap/b@f.yaml#4", "ConfigMap/c@f.yaml#5[0]", "Secret/d@f.yaml#5[1]"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if d := objs[1].Describe(); d != "ConfigMap x/b (f.yaml#4)" {
		t.Errorf("Describe = %q", d)
	}
}

func TestDecodeRefusesDocumentWithoutKind(t *testing.T) {
	_, err := Decode("bad.yaml", []byte("metadata:\n  name: x\n"))
	if err == nil || !strings.Contains(err.Error(), "bad.yaml#1") || !strings.Contains(err.Error(), "no kind") {
		t.Fatalf("err = %v", err)
	}
	_, err = Decode("broken.yaml", []byte("apiVersion: v1\nkind: [\n"))
	if err == nil || !strings.Contains(err.Error(), "broken.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestFilesSkipsSubdirsAndOtherFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"b.yaml", "a.yml", "c.json", "README.md", ".hidden.yaml", "invalid/x.yaml"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if strings.Join(names, ",") != "a.yml,b.yaml,c.json" {
		t.Errorf("Files = %v", names)
	}
	all, err := FilesRecursive(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 || !strings.HasSuffix(all[len(all)-1], filepath.Join("invalid", "x.yaml")) {
		t.Errorf("FilesRecursive = %v", all)
	}
	one, err := Files(filepath.Join(dir, "b.yaml"))
	if err != nil || len(one) != 1 {
		t.Errorf("Files(file) = %v, %v", one, err)
	}
}
