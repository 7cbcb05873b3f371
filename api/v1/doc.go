// Package v1 holds the karpenter.sh/v1 API types Dovetail serves: NodePool and
// NodeClaim. The JSON shapes follow Karpenter v1 exactly, so manifests written
// for Karpenter apply unchanged; validation lives in the CRD (OpenAPI and CEL
// markers below) so the API server refuses bad objects with a readable message.
//
// +kubebuilder:object:generate=true
// +groupName=karpenter.sh
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of NodePool and NodeClaim.
const Group = "karpenter.sh"

var (
	// SchemeGroupVersion is the group and version used to register these types.
	SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: "v1"}
	// GroupVersion is SchemeGroupVersion under the name kubebuilder projects use.
	GroupVersion = SchemeGroupVersion

	// SchemeBuilder collects the functions that add these types to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme registers NodePool and NodeClaim (and their lists) with a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&NodePool{}, &NodePoolList{},
		&NodeClaim{}, &NodeClaimList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
