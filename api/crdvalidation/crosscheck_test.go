package crdvalidation

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

func TestKarpenterDocManifestsAccepted(t *testing.T) {
	v := validator(t)
	for _, obj := range decodeFile(t, "testdata/karpenter-docs.yaml") {
		if err := v.Validate(context.Background(), obj); err != nil {
			t.Errorf("%s/%s refused: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
}

func nodeClassWithAlias(alias string) *unstructured.Unstructured {
	term := func() []interface{} {
		return []interface{}{map[string]interface{}{"tags": map[string]interface{}{"karpenter.sh/discovery": "dovetail-local"}}}
	}
	return &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "karpenter.k8s.aws/v1",
		"kind":       "EC2NodeClass",
		"metadata":   map[string]interface{}{"name": "alias"},
		"spec": map[string]interface{}{
			"role":                       "r",
			"amiSelectorTerms":           []interface{}{map[string]interface{}{"alias": alias}},
			"subnetSelectorTerms":        term(),
			"securityGroupSelectorTerms": term(),
		},
	}}
}

// The Go alias parser and the CRD's CEL rules must agree on every alias.
func TestAliasRulesAgreeWithParseAlias(t *testing.T) {
	v := validator(t)
	for _, alias := range []string{
		"al2023@latest", "al2@v20240729", "bottlerocket@v1.20.5", "windows2019@latest", "windows2022@latest",
		"al2023", "al2023@", "@latest", "ubuntu@latest", "al2023@2024", "bottlerocket@1.20.5",
		"windows2022@v1", "al2023@latest@x", "al2023@vlatest",
	} {
		_, parseErr := awsv1.ParseAlias(alias)
		crdErr := v.Validate(context.Background(), nodeClassWithAlias(alias))
		if (parseErr == nil) != (crdErr == nil) {
			t.Errorf("alias %q: ParseAlias error %v, CRD error %v", alias, parseErr, crdErr)
		}
	}
}

func nodePoolWithRequirementKey(key string) *unstructured.Unstructured {
	np := minimalNodePool()
	_ = unstructured.SetNestedSlice(np.Object, []interface{}{
		map[string]interface{}{"key": key, "operator": "Exists"},
	}, "spec", "template", "spec", "requirements")
	return np
}

func nodePoolWithLabel(key string) *unstructured.Unstructured {
	np := minimalNodePool()
	_ = unstructured.SetNestedStringMap(np.Object, map[string]string{key: "x"}, "spec", "template", "metadata", "labels")
	return np
}

// The Go label-key checks (used by the CLI and planners on objects the API
// server has not seen) must agree with the CRD's CEL rules.
func TestLabelRulesAgreeWithGo(t *testing.T) {
	v := validator(t)
	keys := append([]string{
		"team", "example.com/team", "karpenter.sh/custom", "karpenter.sh/nodepool", "kubernetes.io/hostname",
		"kubernetes.io/foo", "example.kubernetes.io/foo", "node.kubernetes.io/foo", "node-restriction.kubernetes.io/x",
		"k8s.io/foo", "kops.k8s.io/instancegroup", "foo.k8s.io/bar", "karpenter.k8s.aws/custom",
		"sub.karpenter.sh/x", "topology.k8s.aws/zone-id",
	}, karpv1.WellKnownLabels...)
	ctx := context.Background()
	for _, key := range keys {
		goReq := karpv1.ValidateRequirementKey(key)
		crdReq := v.Validate(ctx, nodePoolWithRequirementKey(key))
		if (goReq == nil) != (crdReq == nil) {
			t.Errorf("requirement key %q: Go %v, CRD %v", key, goReq, crdReq)
		}
		if goReq != nil && crdReq != nil && !strings.Contains(crdReq.Error(), goReq.Error()) {
			t.Errorf("requirement key %q: messages differ: Go %q, CRD %q", key, goReq, crdReq)
		}
		goLabel := karpv1.ValidateTemplateLabelKey(key)
		crdLabel := v.Validate(ctx, nodePoolWithLabel(key))
		if (goLabel == nil) != (crdLabel == nil) {
			t.Errorf("template label %q: Go %v, CRD %v", key, goLabel, crdLabel)
		}
	}
}
