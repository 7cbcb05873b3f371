// Package v1 holds the karpenter.k8s.aws/v1 API type EC2NodeClass: how to
// launch an EC2 instance for a NodeClaim (AMIs, subnets, security groups,
// instance profile, user data, volumes, kubelet settings). The JSON shape
// follows Karpenter's AWS provider v1 exactly.
//
// +kubebuilder:object:generate=true
// +groupName=karpenter.k8s.aws
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of EC2NodeClass.
const Group = "karpenter.k8s.aws"

// Kind is the kind a NodePool's nodeClassRef names for an EC2NodeClass.
const Kind = "EC2NodeClass"

var (
	// SchemeGroupVersion is the group and version used to register these types.
	SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: "v1"}
	// GroupVersion is SchemeGroupVersion under the name kubebuilder projects use.
	GroupVersion = SchemeGroupVersion

	// SchemeBuilder collects the functions that add these types to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme registers EC2NodeClass and EC2NodeClassList with a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &EC2NodeClass{}, &EC2NodeClassList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
