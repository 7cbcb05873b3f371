// Package drifthash computes the drift hashes Karpenter stamps on every
// NodeClaim (karpenter.sh/nodepool-hash with its version, and
// karpenter.k8s.aws/ec2nodeclass-hash): the provisioner and the replacement
// planner stamp them when they build a NodeClaim from the NodePool and
// EC2NodeClass of their own snapshot, and the disruption planner compares
// them to tell whether a pool or class changed since.
package drifthash

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

// Annotations on NodeClaims (and their Nodes).
const (
	AnnotationNodePoolHash    = karpv1.NodePoolHashAnnotationKey
	AnnotationNodePoolHashVer = karpv1.NodePoolHashVersionAnnotationKey
	AnnotationNodeClassHash   = "karpenter.k8s.aws/ec2nodeclass-hash"
)

// HashVersion is written next to the nodepool hash; a node whose version
// differs is not judged by the hash (the hash function changed, not the pool).
const HashVersion = "dovetail-v1"

// TemplateStatic is the part of a NodePool template whose change drifts
// nodes through the hash (requirements are checked separately, by value, so
// widening them does not replace anything).
type TemplateStatic struct {
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	Taints        []corev1.Taint    `json:"taints,omitempty"`
	StartupTaints []corev1.Taint    `json:"startupTaints,omitempty"`
	NodeClassRef  string            `json:"nodeClassRef,omitempty"` // group/kind/name
	// Kubelet holds any kubelet settings the template carries, already
	// serialised by the caller (in Karpenter v1 they live on the NodeClass).
	Kubelet string `json:"kubelet,omitempty"`
}

// TemplateHash hashes the static template fields (FNV-64a over canonical
// JSON: map keys sorted, taints sorted), as a decimal string like Karpenter's.
// The provisioner writes it to karpenter.sh/nodepool-hash on each NodeClaim.
func TemplateHash(t TemplateStatic) string {
	t.Taints = sortedTaints(t.Taints)
	t.StartupTaints = sortedTaints(t.StartupTaints)
	b, err := json.Marshal(t)
	if err != nil {
		// Marshal of maps of strings and taints cannot fail; keep a stable value anyway.
		b = []byte(fmt.Sprint(t))
	}
	h := fnv.New64a()
	_, _ = h.Write(b)
	return strconv.FormatUint(h.Sum64(), 10)
}

func sortedTaints(in []corev1.Taint) []corev1.Taint {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.Taint, len(in))
	for i, t := range in {
		out[i] = corev1.Taint{Key: t.Key, Value: t.Value, Effect: t.Effect}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		if a.Effect != b.Effect {
			return a.Effect < b.Effect
		}
		return a.Value < b.Value
	})
	return out
}

// TemplateStaticOf extracts the hashed static fields of a NodePool template.
func TemplateStaticOf(np *karpv1.NodePool) TemplateStatic {
	t := np.Spec.Template
	ts := TemplateStatic{Labels: t.Labels, Annotations: t.Annotations, Taints: t.Spec.Taints, StartupTaints: t.Spec.StartupTaints}
	if ref := t.Spec.NodeClassRef; ref != nil {
		ts.NodeClassRef = ref.Group + "/" + ref.Kind + "/" + ref.Name
	}
	return ts
}

// NodeClassHash hashes an EC2NodeClass spec without its selector terms
// (changes to those drift through what they resolve to, not the hash). The
// launcher writes it to karpenter.k8s.aws/ec2nodeclass-hash on NodeClaims.
func NodeClassHash(spec awsv1.EC2NodeClassSpec) string {
	spec.AMISelectorTerms = nil
	spec.SubnetSelectorTerms = nil
	spec.SecurityGroupSelectorTerms = nil
	b, err := json.Marshal(spec)
	if err != nil {
		return ""
	}
	h := fnv.New64a()
	_, _ = h.Write(b)
	return strconv.FormatUint(h.Sum64(), 10)
}

// NodeClaimAnnotations are the drift annotations whoever creates a
// NodeClaim (provisioner, replacement launcher) must put on it, so that the
// drift planner can later tell whether the NodePool template or the
// NodeClass changed since. nc may be nil.
func NodeClaimAnnotations(np *karpv1.NodePool, nc *awsv1.EC2NodeClass) map[string]string {
	ann := map[string]string{
		AnnotationNodePoolHash:    TemplateHash(TemplateStaticOf(np)),
		AnnotationNodePoolHashVer: HashVersion,
	}
	if nc != nil {
		ann[AnnotationNodeClassHash] = NodeClassHash(nc.Spec)
	}
	return ann
}
