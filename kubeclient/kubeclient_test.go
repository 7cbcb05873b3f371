package kubeclient

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestSchemeKnowsKarpenterAndBuiltinKinds(t *testing.T) {
	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	for _, gvk := range []schema.GroupVersionKind{
		{Group: "karpenter.sh", Version: "v1", Kind: "NodePool"},
		{Group: "karpenter.sh", Version: "v1", Kind: "NodeClaim"},
		{Group: "karpenter.k8s.aws", Version: "v1", Kind: "EC2NodeClass"},
		{Group: "", Version: "v1", Kind: "Node"},
		{Group: "policy", Version: "v1", Kind: "Eviction"},
	} {
		if !s.Recognizes(gvk) {
			t.Errorf("scheme does not recognise %s", gvk)
		}
	}
}
