// Package builtin defines Dovetail's built-in NodePools — general-purpose
// and system — and their default EC2NodeClass, like EKS Auto Mode's, and
// the reconciler that keeps them as defined: it creates them, restores any
// edit to their spec, and removes them when they are turned off.
package builtin

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

// Names of the built-in objects.
const (
	GeneralPurpose   = "general-purpose"
	System           = "system"
	DefaultNodeClass = "default"
)

// LabelBuiltin marks objects the reconciler owns. Removing the label hands
// the object over to the user: it is then neither restored nor deleted.
const LabelBuiltin = "dovetail.dev/builtin"

// TaintCriticalAddonsOnly keeps ordinary workloads off the system pool.
const TaintCriticalAddonsOnly = "CriticalAddonsOnly"

// Expiry of the built-in pools' nodes: two weeks (EKS Auto Mode's figure),
// shorter than Karpenter's 720h default so nodes pick up patched AMIs.
const ExpireAfter = 336 * time.Hour

// ConsolidateAfter of the built-in pools.
const ConsolidateAfter = 30 * time.Second

// Options say how the defaults are filled in for a cluster.
type Options struct {
	// ClusterName selects subnets and security groups tagged
	// karpenter.sh/discovery=<ClusterName> and goes into instance tags.
	ClusterName string
	// Role is the IAM role of the nodes' instance profile.
	Role string
}

func nodeClassRef() *karpv1.NodeClassReference {
	return &karpv1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: DefaultNodeClass}
}

func meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelBuiltin: "true"}}
}

func req(key string, op corev1.NodeSelectorOperator, values ...string) karpv1.NodeSelectorRequirementWithMinValues {
	return karpv1.NodeSelectorRequirementWithMinValues{Key: key, Operator: op, Values: values}
}

// GeneralPurposePool is on-demand amd64 c/m/r of generation 5 and later,
// consolidating when empty or underutilized, nodes expiring after 336h.
func GeneralPurposePool() *karpv1.NodePool {
	np := &karpv1.NodePool{
		TypeMeta:   metav1.TypeMeta{APIVersion: karpv1.SchemeGroupVersion.String(), Kind: "NodePool"},
		ObjectMeta: meta(GeneralPurpose),
	}
	np.Spec.Template.Spec = karpv1.NodeClaimTemplateSpec{
		NodeClassRef: nodeClassRef(),
		Requirements: []karpv1.NodeSelectorRequirementWithMinValues{
			req(karpv1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, karpv1.CapacityTypeOnDemand),
			req(corev1.LabelArchStable, corev1.NodeSelectorOpIn, karpv1.ArchitectureAmd64),
			req(corev1.LabelOSStable, corev1.NodeSelectorOpIn, karpv1.OSLinux),
			req(karpv1.LabelInstanceCategory, corev1.NodeSelectorOpIn, "c", "m", "r"),
			req(karpv1.LabelInstanceGeneration, corev1.NodeSelectorOpGt, "4"),
		},
		ExpireAfter:            karpv1.NewNillableDuration(ExpireAfter),
		TerminationGracePeriod: &metav1.Duration{Duration: 24 * time.Hour},
	}
	np.Spec.Disruption = karpv1.Disruption{
		ConsolidationPolicy: karpv1.ConsolidationPolicyWhenEmptyOrUnderutilized,
		ConsolidateAfter:    karpv1.NewNillableDuration(ConsolidateAfter),
		Budgets:             []karpv1.Budget{{Nodes: "10%"}},
	}
	return np
}

// SystemPool is for cluster add-ons: amd64 and arm64, tainted
// CriticalAddonsOnly so only pods that tolerate it land there.
func SystemPool() *karpv1.NodePool {
	np := GeneralPurposePool()
	np.Name = System
	np.Spec.Template.Spec.Requirements = []karpv1.NodeSelectorRequirementWithMinValues{
		req(karpv1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, karpv1.CapacityTypeOnDemand),
		req(corev1.LabelArchStable, corev1.NodeSelectorOpIn, karpv1.ArchitectureAmd64, karpv1.ArchitectureArm64),
		req(corev1.LabelOSStable, corev1.NodeSelectorOpIn, karpv1.OSLinux),
		req(karpv1.LabelInstanceCategory, corev1.NodeSelectorOpIn, "c", "m", "r"),
		req(karpv1.LabelInstanceGeneration, corev1.NodeSelectorOpGt, "4"),
	}
	np.Spec.Template.Spec.Taints = []corev1.Taint{{Key: TaintCriticalAddonsOnly, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
	return np
}

// DefaultEC2NodeClass runs the latest AL2023 AMI in the cluster's tagged
// subnets and security groups.
func DefaultEC2NodeClass(o Options) *awsv1.EC2NodeClass {
	disc := map[string]string{"karpenter.sh/discovery": o.ClusterName}
	nc := &awsv1.EC2NodeClass{
		TypeMeta:   metav1.TypeMeta{APIVersion: awsv1.SchemeGroupVersion.String(), Kind: awsv1.Kind},
		ObjectMeta: meta(DefaultNodeClass),
	}
	nc.Spec = awsv1.EC2NodeClassSpec{
		AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
		SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: disc}},
		SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: disc}},
		Role:                       o.Role,
		Tags:                       map[string]string{"dovetail.dev/cluster": o.ClusterName},
	}
	return nc
}
