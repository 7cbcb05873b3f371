package crdvalidation

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

const (
	crdDir     = "../../packaging/crds"
	examples   = "../../packaging/examples"
	invalidDir = "../../packaging/examples/invalid"
)

func validator(t *testing.T) *Validator {
	t.Helper()
	defs, err := DecodeCRDs(os.DirFS(crdDir))
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(context.Background(), defs...)
	if err != nil {
		t.Fatalf("the API server would refuse our CRDs: %v", err)
	}
	return v
}

func TestCRDsOnDiskMatchEmbedded(t *testing.T) {
	v, err := ForDovetail(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []schema.GroupVersionKind{
		{Group: "karpenter.k8s.aws", Version: "v1", Kind: "EC2NodeClass"},
		{Group: "karpenter.sh", Version: "v1", Kind: "NodeClaim"},
		{Group: "karpenter.sh", Version: "v1", Kind: "NodePool"},
	}
	got := v.Kinds()
	if len(got) != len(want) {
		t.Fatalf("kinds = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("kinds = %v, want %v", got, want)
		}
	}
	if disk := validator(t); len(disk.Kinds()) != len(want) {
		t.Fatalf("kinds on disk = %v", disk.Kinds())
	}
}

func manifestFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", dir)
	}
	return files
}

func decodeFile(t *testing.T, file string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := DecodeManifests(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return objs
}

// typedCodec decodes strictly into Dovetail's Go types: a field the Go types
// do not know is an error, so examples and types cannot drift apart.
func typedCodec(t *testing.T) runtime.Decoder {
	t.Helper()
	s := runtime.NewScheme()
	if err := karpv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := awsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}

func TestExamplesAccepted(t *testing.T) {
	v := validator(t)
	codec := typedCodec(t)
	ctx := context.Background()
	names := map[string]string{}
	kinds := map[string]int{}
	for _, file := range manifestFiles(t, examples) {
		for _, obj := range decodeFile(t, file) {
			key := obj.GetKind() + "/" + obj.GetName()
			if prev, dup := names[key]; dup {
				t.Errorf("%s: %s also defined in %s; the examples must apply together", file, key, prev)
			}
			names[key] = file
			kinds[obj.GetKind()]++

			raw, err := yaml.Marshal(obj.Object)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := codec.Decode(raw, nil, nil); err != nil {
				t.Errorf("%s: %s does not decode strictly into the Go types: %v", file, key, err)
			}
			if err := v.Validate(ctx, obj); err != nil {
				t.Errorf("%s: %s refused: %v", file, key, err)
			}
		}
	}
	// Every NodePool must point at an EC2NodeClass the examples define.
	for _, file := range manifestFiles(t, examples) {
		for _, obj := range decodeFile(t, file) {
			if obj.GetKind() != "NodePool" {
				continue
			}
			ref, _, _ := unstructured.NestedString(obj.Object, "spec", "template", "spec", "nodeClassRef", "name")
			if _, ok := names["EC2NodeClass/"+ref]; !ok {
				t.Errorf("%s: NodePool %s refers to EC2NodeClass %q, which no example defines", file, obj.GetName(), ref)
			}
		}
	}
	if kinds["NodePool"] < 9 || kinds["EC2NodeClass"] < 3 {
		t.Errorf("examples define %v; want at least 9 NodePools and 3 EC2NodeClasses", kinds)
	}
}

// expectation reads the "# expect: <substring>" first line of an invalid example.
func expectation(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := bufio.NewReader(bytes.NewReader(data)).ReadLine()
	want, ok := strings.CutPrefix(string(line), "# expect: ")
	if !ok || strings.TrimSpace(want) == "" {
		t.Fatalf("%s: first line must be '# expect: <message substring>', got %q", file, line)
	}
	return strings.TrimSpace(want)
}

func TestInvalidExamplesRefused(t *testing.T) {
	v := validator(t)
	for _, file := range manifestFiles(t, invalidDir) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want := expectation(t, file)
			objs := decodeFile(t, file)
			if len(objs) != 1 {
				t.Fatalf("want exactly one object per invalid example, got %d", len(objs))
			}
			err := v.Validate(context.Background(), objs[0])
			if err == nil {
				t.Fatalf("accepted; want refusal containing %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("refused with\n  %v\nwant message containing\n  %q", err, want)
			}
		})
	}
}

// An invalid example must be wrong in exactly the way it says: with the
// offending part fixed it must pass. Here that is checked for the budget
// cases by removing the budgets (the rest of the object must then be valid).
func TestInvalidBudgetExamplesOtherwiseValid(t *testing.T) {
	v := validator(t)
	for _, file := range manifestFiles(t, invalidDir) {
		if !strings.Contains(filepath.Base(file), "budget") {
			continue
		}
		obj := decodeFile(t, file)[0]
		unstructured.RemoveNestedField(obj.Object, "spec", "disruption", "budgets")
		if err := v.Validate(context.Background(), obj); err != nil {
			t.Errorf("%s without budgets still refused: %v", file, err)
		}
	}
}

func minimalNodePool() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "karpenter.sh/v1",
		"kind":       "NodePool",
		"metadata":   map[string]interface{}{"name": "minimal"},
		"spec": map[string]interface{}{
			"template": map[string]interface{}{
				"spec": map[string]interface{}{
					"nodeClassRef": map[string]interface{}{"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
					"requirements": []interface{}{},
				},
			},
		},
	}}
}

func TestDefaultsAppliedAsKarpenter(t *testing.T) {
	v := validator(t)
	obj := minimalNodePool()
	if err := v.Validate(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	var np karpv1.NodePool
	if err := yaml.UnmarshalStrict(raw, &np); err != nil {
		t.Fatal(err)
	}
	d := np.Spec.Disruption
	if d.ConsolidationPolicy != karpv1.ConsolidationPolicyWhenEmptyOrUnderutilized {
		t.Errorf("consolidationPolicy = %q", d.ConsolidationPolicy)
	}
	if d.ConsolidateAfter.IsNever() || *d.ConsolidateAfter.Duration != 0 {
		t.Errorf("consolidateAfter = %v, want 0s", d.ConsolidateAfter)
	}
	if len(d.Budgets) != 1 || d.Budgets[0].Nodes != "10%" {
		t.Errorf("budgets = %+v, want one of 10%%", d.Budgets)
	}
	if got := np.Spec.Template.Spec.ExpireAfter.String(); got != "720h0m0s" {
		t.Errorf("expireAfter = %s, want 720h", got)
	}
}

func TestUnknownFieldReported(t *testing.T) {
	v := validator(t)
	obj := minimalNodePool()
	_ = unstructured.SetNestedField(obj.Object, "5m", "spec", "disruption", "consolidateAfterr")
	err := v.Validate(context.Background(), obj)
	if err == nil || !strings.Contains(err.Error(), "consolidateAfterr") {
		t.Fatalf("err = %v, want the unknown field named", err)
	}
}

func TestNodeClaimSpecImmutable(t *testing.T) {
	v := validator(t)
	nc := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "karpenter.sh/v1",
		"kind":       "NodeClaim",
		"metadata":   map[string]interface{}{"name": "general-purpose-abc12"},
		"spec": map[string]interface{}{
			"nodeClassRef": map[string]interface{}{"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
			"requirements": []interface{}{
				map[string]interface{}{"key": "karpenter.sh/nodepool", "operator": "In", "values": []interface{}{"general-purpose"}},
			},
			"resources": map[string]interface{}{"requests": map[string]interface{}{"cpu": "2", "memory": "4Gi"}},
		},
	}}
	ctx := context.Background()
	// A NodeClaim may carry the karpenter.sh/nodepool requirement a NodePool may not.
	if err := v.Validate(ctx, nc.DeepCopy()); err != nil {
		t.Fatalf("valid NodeClaim refused: %v", err)
	}
	changed := nc.DeepCopy()
	_ = unstructured.SetNestedField(changed.Object, "other", "spec", "nodeClassRef", "name")
	err := v.ValidateUpdate(ctx, changed, nc.DeepCopy())
	if err == nil || !strings.Contains(err.Error(), "spec is immutable") {
		t.Fatalf("err = %v, want spec is immutable", err)
	}
	if err := v.ValidateUpdate(ctx, nc.DeepCopy(), nc.DeepCopy()); err != nil {
		t.Fatalf("unchanged update refused: %v", err)
	}
}

// The CRD check must be the API server's: a rule too expensive to run is refused.
func TestExpensiveCELRuleRefused(t *testing.T) {
	defs, err := DecodeCRDs(os.DirFS(crdDir))
	if err != nil {
		t.Fatal(err)
	}
	var np *apiextensionsv1.CustomResourceDefinition
	for _, d := range defs {
		if d.Spec.Names.Kind == "NodePool" {
			np = d
		}
	}
	if np == nil {
		t.Fatal("no NodePool CRD")
	}
	labels := np.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["template"].Properties["metadata"].Properties["labels"]
	labels.MaxProperties = nil // unbounded map: every rule over it costs too much
	labels.XValidations = append(labels.XValidations, apiextensionsv1.ValidationRule{
		Rule: "self.all(x, self.all(y, x.matches(y)))", Message: "quadratic",
	})
	np.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["template"].Properties["metadata"].Properties["labels"] = labels
	if _, err := New(context.Background(), np); err == nil || !strings.Contains(err.Error(), "cost") {
		t.Fatalf("err = %v, want a cost refusal", err)
	}
}

func TestDecodeManifestsList(t *testing.T) {
	data := []byte(`apiVersion: v1
kind: List
items:
- apiVersion: karpenter.sh/v1
  kind: NodePool
  metadata: {name: a}
- apiVersion: karpenter.sh/v1
  kind: NodePool
  metadata: {name: b}
---
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: c}
`)
	objs, err := DecodeManifests(data)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetName())
	}
	if strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("names = %v", got)
	}
	if _, err := DecodeManifests([]byte("metadata: {name: x}\n")); err == nil {
		t.Fatal("object without apiVersion/kind accepted")
	}
	_ = metav1.Now
}
