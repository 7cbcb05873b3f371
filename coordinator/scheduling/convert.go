package scheduling

import (
	corev1 "k8s.io/api/core/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

// RequirementsFromAPI converts karpenter.sh/v1 requirements.
func RequirementsFromAPI(in []karpv1.NodeSelectorRequirementWithMinValues) []Requirement {
	out := make([]Requirement, 0, len(in))
	for _, r := range in {
		out = append(out, Requirement{Key: r.Key, Operator: r.Operator, Values: append([]string(nil), r.Values...), MinValues: r.MinValues})
	}
	return out
}

// RequirementsToAPI converts back to karpenter.sh/v1 requirements.
func RequirementsToAPI(in []Requirement) []karpv1.NodeSelectorRequirementWithMinValues {
	out := make([]karpv1.NodeSelectorRequirementWithMinValues, 0, len(in))
	for _, r := range in {
		out = append(out, karpv1.NodeSelectorRequirementWithMinValues{Key: r.Key, Operator: r.Operator, Values: append([]string(nil), r.Values...), MinValues: r.MinValues})
	}
	return out
}

// NodePoolFromAPI converts a karpenter.sh/v1 NodePool.
func NodePoolFromAPI(np *karpv1.NodePool) NodePool {
	out := NodePool{
		Name:          np.Name,
		Requirements:  RequirementsFromAPI(np.Spec.Template.Spec.Requirements),
		Labels:        np.Spec.Template.Labels,
		Annotations:   np.Spec.Template.Annotations,
		Taints:        np.Spec.Template.Spec.Taints,
		StartupTaints: np.Spec.Template.Spec.StartupTaints,
		Limits:        corev1.ResourceList(np.Spec.Limits),
		Static:        np.Spec.Replicas != nil,
	}
	if np.Spec.Weight != nil {
		out.Weight = *np.Spec.Weight
	}
	if ref := np.Spec.Template.Spec.NodeClassRef; ref != nil {
		out.NodeClassRef = NodeClassRef{Group: ref.Group, Kind: ref.Kind, Name: ref.Name}
	}
	return out
}

// NodeClaimFromAPI converts an in-flight karpenter.sh/v1 NodeClaim (one
// without a registered node yet). Pods are those already expected on it.
func NodeClaimFromAPI(nc *karpv1.NodeClaim, pods []*corev1.Pod) NodeClaim {
	return NodeClaim{
		Name:         nc.Name,
		NodePool:     nc.Labels[karpv1.NodePoolLabelKey],
		Requirements: RequirementsFromAPI(nc.Spec.Requirements),
		Labels:       nc.Labels,
		Taints:       nc.Spec.Taints,
		Allocatable:  nc.Status.Allocatable,
		Capacity:     nc.Status.Capacity,
		Pods:         pods,
	}
}

// NodeFromAPI converts a Kubernetes node with the pods bound to it.
func NodeFromAPI(n *corev1.Node, pods []*corev1.Pod) Node {
	out := Node{
		Name:          n.Name,
		Labels:        n.Labels,
		Taints:        schedulingTaints(n.Spec.Taints),
		Allocatable:   n.Status.Allocatable,
		Capacity:      n.Status.Capacity,
		Pods:          pods,
		NodePool:      n.Labels[karpv1.NodePoolLabelKey],
		Unschedulable: n.Spec.Unschedulable,
	}
	out.MarkedForDeletion = n.DeletionTimestamp != nil
	return out
}

// ephemeralTaints are put on every new node and removed by Kubernetes once
// it is ready; like Karpenter, the simulation does not let them repel pods.
var ephemeralTaints = map[string]bool{
	corev1.TaintNodeNotReady:                         true,
	corev1.TaintNodeUnreachable:                      true,
	"node.cloudprovider.kubernetes.io/uninitialized": true,
}

func schedulingTaints(in []corev1.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range in {
		if !ephemeralTaints[t.Key] {
			out = append(out, t)
		}
	}
	return out
}
