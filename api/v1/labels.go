package v1

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Labels Karpenter (and Dovetail) put on nodes and NodeClaims.
const (
	NodePoolLabelKey        = Group + "/nodepool"
	CapacityTypeLabelKey    = Group + "/capacity-type"
	NodeRegisteredLabelKey  = Group + "/registered"
	NodeInitializedLabelKey = Group + "/initialized"
	// NodeDoNotSyncTaintsLabelKey on a node stops taints being synced from its NodeClaim.
	NodeDoNotSyncTaintsLabelKey = Group + "/do-not-sync-taints"
)

// Capacity types, as values of CapacityTypeLabelKey.
const (
	CapacityTypeSpot     = "spot"
	CapacityTypeOnDemand = "on-demand"
	CapacityTypeReserved = "reserved"
)

// Architectures and operating systems, as values of LabelArch and LabelOS.
const (
	ArchitectureAmd64 = "amd64"
	ArchitectureArm64 = "arm64"
	OSLinux           = "linux"
	OSWindows         = "windows"
)

// Well-known Kubernetes labels, repeated here so planners need only this package.
const (
	LabelArch           = corev1.LabelArchStable         // kubernetes.io/arch
	LabelOS             = corev1.LabelOSStable           // kubernetes.io/os
	LabelTopologyZone   = corev1.LabelTopologyZone       // topology.kubernetes.io/zone
	LabelTopologyRegion = corev1.LabelTopologyRegion     // topology.kubernetes.io/region
	LabelInstanceType   = corev1.LabelInstanceTypeStable // node.kubernetes.io/instance-type
	LabelHostname       = corev1.LabelHostname           // kubernetes.io/hostname
	LabelWindowsBuild   = corev1.LabelWindowsBuild       // node.kubernetes.io/windows-build
	// LabelTopologyZoneID is the AWS zone ID (use1-az1), stable across accounts.
	LabelTopologyZoneID = "topology.k8s.aws/zone-id"
)

// AWS instance labels (karpenter.k8s.aws/instance-*), derived from the instance type.
const (
	AWSGroup                             = "karpenter.k8s.aws"
	LabelInstanceHypervisor              = AWSGroup + "/instance-hypervisor"
	LabelInstanceEncryptionInTransit     = AWSGroup + "/instance-encryption-in-transit-supported"
	LabelInstanceCategory                = AWSGroup + "/instance-category"
	LabelInstanceFamily                  = AWSGroup + "/instance-family"
	LabelInstanceGeneration              = AWSGroup + "/instance-generation"
	LabelInstanceLocalNVME               = AWSGroup + "/instance-local-nvme"
	LabelInstanceSize                    = AWSGroup + "/instance-size"
	LabelInstanceCPU                     = AWSGroup + "/instance-cpu"
	LabelInstanceCPUManufacturer         = AWSGroup + "/instance-cpu-manufacturer"
	LabelInstanceCPUSustainedClockMhz    = AWSGroup + "/instance-cpu-sustained-clock-speed-mhz"
	LabelInstanceMemory                  = AWSGroup + "/instance-memory"
	LabelInstanceEBSBandwidth            = AWSGroup + "/instance-ebs-bandwidth"
	LabelInstanceNetworkBandwidth        = AWSGroup + "/instance-network-bandwidth"
	LabelInstanceGPUName                 = AWSGroup + "/instance-gpu-name"
	LabelInstanceGPUManufacturer         = AWSGroup + "/instance-gpu-manufacturer"
	LabelInstanceGPUCount                = AWSGroup + "/instance-gpu-count"
	LabelInstanceGPUMemory               = AWSGroup + "/instance-gpu-memory"
	LabelInstanceAcceleratorName         = AWSGroup + "/instance-accelerator-name"
	LabelInstanceAcceleratorManufacturer = AWSGroup + "/instance-accelerator-manufacturer"
	LabelInstanceAcceleratorCount        = AWSGroup + "/instance-accelerator-count"
	// LabelInstanceCapabilityFlex marks flex instance types (c7i-flex ...).
	LabelInstanceCapabilityFlex = AWSGroup + "/instance-capability-flex"
	// Capacity reservation labels, set on nodes launched into an ODCR.
	LabelCapacityReservationID   = AWSGroup + "/capacity-reservation-id"
	LabelCapacityReservationType = AWSGroup + "/capacity-reservation-type"
	// LabelNodeClass names the EC2NodeClass a node was launched from.
	LabelNodeClass = AWSGroup + "/ec2nodeclass"
)

// Annotations.
const (
	// DoNotDisruptAnnotationKey on a pod or node blocks voluntary disruption of its node.
	DoNotDisruptAnnotationKey = Group + "/do-not-disrupt"
	// NodePoolHashAnnotationKey records the hash of the NodePool template a NodeClaim was made from (drift).
	NodePoolHashAnnotationKey        = Group + "/nodepool-hash"
	NodePoolHashVersionAnnotationKey = Group + "/nodepool-hash-version"
	// NodeClaimTerminationTimestampAnnotationKey is when a draining node is forcibly terminated.
	NodeClaimTerminationTimestampAnnotationKey = Group + "/nodeclaim-termination-timestamp"
	// ConsolidationMinSavingsAnnotationKey (Dovetail) on a NodePool is the least
	// saving, in USD per hour or as a percent ("0.05", "10%"), that makes a
	// replacement worth the disruption.
	ConsolidationMinSavingsAnnotationKey = "dovetail.dev/consolidation-min-savings"
	// RebalanceAnnotationKey (Dovetail) on a NodePool says what to do with a
	// spot rebalance recommendation: "replace" (the default: replacement
	// first, inside the budgets as Drifted) or RebalanceIgnore.
	RebalanceAnnotationKey = "dovetail.dev/rebalance"
	// RebalanceIgnore leaves a node with a rebalance recommendation running.
	RebalanceIgnore = "ignore"
	// RebalanceReplace is the default.
	RebalanceReplace = "replace"
)

// Taints.
const (
	// DisruptedTaintKey marks a node being disrupted so no new pods land on it.
	DisruptedTaintKey = Group + "/disrupted"
	// UnregisteredTaintKey is set on a node at boot and removed when it registers with its NodeClaim.
	UnregisteredTaintKey = Group + "/unregistered"
)

// Finalizers.
const (
	TerminationFinalizer = Group + "/termination"
)

var (
	// DisruptedNoScheduleTaint is put on nodes selected for disruption.
	DisruptedNoScheduleTaint = corev1.Taint{Key: DisruptedTaintKey, Effect: corev1.TaintEffectNoSchedule}
	// UnregisteredNoExecuteTaint is put on nodes until they register.
	UnregisteredNoExecuteTaint = corev1.Taint{Key: UnregisteredTaintKey, Effect: corev1.TaintEffectNoExecute}
)

// Condition types on NodeClaims and NodePools (metav1.Condition.Type).
const (
	ConditionTypeLaunched             = "Launched"
	ConditionTypeRegistered           = "Registered"
	ConditionTypeInitialized          = "Initialized"
	ConditionTypeDrifted              = "Drifted"
	ConditionTypeConsolidatable       = "Consolidatable"
	ConditionTypeEmpty                = "Empty"
	ConditionTypeExpired              = "Expired"
	ConditionTypeDrained              = "Drained"
	ConditionTypeVolumesDetached      = "VolumesDetached"
	ConditionTypeInstanceTerminating  = "InstanceTerminating"
	ConditionTypeConsistentStateFound = "ConsistentStateFound"
	ConditionTypeDisruptionReason     = "DisruptionReason"
	ConditionTypeReady                = "Ready"
	// NodePool conditions.
	ConditionTypeValidationSucceeded     = "ValidationSucceeded"
	ConditionTypeNodeClassReady          = "NodeClassReady"
	ConditionTypeNodeRegistrationHealthy = "NodeRegistrationHealthy"
)

// RestrictedLabelDomains are label domains users may not set in requirements
// or template labels, except for the keys in WellKnownLabels. As in
// Karpenter v1.14, only Karpenter's own domains are restricted: other
// kubernetes.io and k8s.io keys are the user's (and the kubelet's) business.
var RestrictedLabelDomains = []string{Group, AWSGroup}

// WellKnownLabels are the restricted-domain labels users may use in
// requirements: Dovetail knows their values for every instance type/offering.
var WellKnownLabels = []string{
	NodePoolLabelKey, CapacityTypeLabelKey,
	LabelTopologyZone, LabelTopologyRegion, LabelInstanceType, LabelArch, LabelOS, LabelWindowsBuild,
	"beta.kubernetes.io/instance-type", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
	"failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
	LabelTopologyZoneID,
	LabelInstanceHypervisor, LabelInstanceEncryptionInTransit, LabelInstanceCategory, LabelInstanceFamily,
	LabelInstanceGeneration, LabelInstanceLocalNVME, LabelInstanceSize, LabelInstanceCPU,
	LabelInstanceCPUManufacturer, LabelInstanceCPUSustainedClockMhz, LabelInstanceMemory,
	LabelInstanceEBSBandwidth, LabelInstanceNetworkBandwidth, LabelInstanceGPUName,
	LabelInstanceGPUManufacturer, LabelInstanceGPUCount, LabelInstanceGPUMemory,
	LabelInstanceAcceleratorName, LabelInstanceAcceleratorManufacturer, LabelInstanceAcceleratorCount,
	LabelInstanceCapabilityFlex, LabelCapacityReservationID, LabelCapacityReservationType,
	AWSGroup + "/instance-tenancy", AWSGroup + "/capacity-reservation-interruptible", AWSGroup + "/ec2nodeclass",
	AWSGroup + "/placement-group-id", AWSGroup + "/placement-group-partition",
}

// ValidateRequirementKey returns an error if key may not be used in a NodePool
// requirement. It mirrors the CEL rules in the CRD, for code paths (CLI,
// simulate) that see objects the API server has not validated.
func ValidateRequirementKey(key string) error {
	switch key {
	case NodePoolLabelKey, LabelHostname:
		return fmt.Errorf("label %q is restricted", key)
	}
	if isWellKnown(key) {
		return nil
	}
	return restrictedDomain(key)
}

// ValidateTemplateLabelKey returns an error if key may not be set as a
// NodePool template label (mirrors the CRD's CEL rules).
func ValidateTemplateLabelKey(key string) error {
	switch key {
	case NodePoolLabelKey, LabelHostname:
		return fmt.Errorf("label %q is restricted", key)
	}
	if isWellKnown(key) {
		return nil
	}
	return restrictedDomain(key)
}

func isWellKnown(key string) bool {
	for _, k := range WellKnownLabels {
		if k == key {
			return true
		}
	}
	return false
}

func restrictedDomain(key string) error {
	// Like the CRD's CEL rules, the domain is everything before the first
	// "/", or the whole key when it has none.
	domain, _, _ := strings.Cut(key, "/")
	for _, r := range RestrictedLabelDomains {
		if strings.HasSuffix(domain, r) {
			return fmt.Errorf("label domain %q is restricted", r)
		}
	}
	return nil
}
