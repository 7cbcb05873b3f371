package ec2

import (
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Karpenter's node overhead model, so that Dovetail's scheduler sees the same
// allocatable figures a Karpenter user is used to (and that the bundled
// catalogue carries):
//   - the hypervisor keeps vmMemoryOverhead of the memory EC2 advertises;
//   - kube-reserved CPU is 6% of the first core, 1% of the second, 0.5% of
//     the third and fourth and 0.25% of every further core;
//   - kube-reserved memory is 11 MiB per pod plus 255 MiB;
//   - the kubelet evicts at 100Mi of free memory and 10% of free disk;
//   - kube-reserved ephemeral storage is 1Gi;
//   - max pods is what the ENIs can address: ENIs × (IPv4 per ENI − 1) + 2;
//   - arm64 types lose a further 59 MiB: every one of the 396 arm64 types in
//     Karpenter's generated instance-type reference is exactly that much below
//     the formula (all 967 amd64 types match it exactly). The cause is not
//     documented; reserving it keeps Dovetail from over-packing arm64 nodes.
const (
	arm64ExtraReservedMiB = 59
	vmMemoryOverhead      = 0.075
	evictionMemoryMiB     = 100
	evictionNodefsPercent = 10
	kubeReservedDiskGiB   = 1
	defaultRootVolumeGiB  = 20
)

// shape is what EC2 says about an instance type, as the overhead model needs it.
type shape struct {
	Arch      string // amd64 or arm64
	VCPU      int32
	MemoryMiB int64
	MaxPods   int32
	RootGiB   int32 // root volume size; 0 means the AL2023 default of 20 GiB
	GPUs      int32
	GPUVendor string // nvidia, amd
	Neuron    int32  // AWS Inferentia/Trainium devices
	EFA       int32
}

// eniMaxPods is the number of pods the VPC CNI can give addresses to.
func eniMaxPods(enis, ipv4PerENI int32) int32 {
	if enis <= 0 || ipv4PerENI <= 1 {
		return 0
	}
	return enis*(ipv4PerENI-1) + 2
}

// vmMemoryMiB is the memory the OS sees: EC2's figure less the hypervisor's share.
func vmMemoryMiB(memMiB int64) int64 {
	return memMiB - int64(math.Ceil(float64(memMiB)*vmMemoryOverhead))
}

// kubeReservedMilliCPU follows the GKE/EKS tiered reservation.
func kubeReservedMilliCPU(vcpu int32) int64 {
	tiers := []struct {
		start, end int64
		pct        float64
	}{{0, 1000, 0.06}, {1000, 2000, 0.01}, {2000, 4000, 0.005}, {4000, math.MaxInt64, 0.0025}}
	m := int64(vcpu) * 1000
	var r float64
	for _, t := range tiers {
		if m <= t.start {
			break
		}
		r += float64(min(m, t.end)-t.start) * t.pct
	}
	return int64(r)
}

func kubeReservedMemoryMiB(maxPods int32) int64 { return 11*int64(maxPods) + 255 }

// capacityAndAllocatable computes a node's capacity and what pods can use.
func capacityAndAllocatable(s shape) (capacity, allocatable corev1.ResourceList) {
	root := s.RootGiB
	if root <= 0 {
		root = defaultRootVolumeGiB
	}
	memMiB := vmMemoryMiB(s.MemoryMiB)
	capacity = corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewMilliQuantity(int64(s.VCPU)*1000, resource.DecimalSI),
		corev1.ResourceMemory:           mib(memMiB),
		corev1.ResourceEphemeralStorage: gib(int64(root)),
		corev1.ResourcePods:             *resource.NewQuantity(int64(s.MaxPods), resource.DecimalSI),
	}
	if s.GPUs > 0 {
		name := corev1.ResourceName("nvidia.com/gpu")
		if s.GPUVendor == "amd" {
			name = "amd.com/gpu"
		}
		capacity[name] = *resource.NewQuantity(int64(s.GPUs), resource.DecimalSI)
	}
	if s.Neuron > 0 {
		capacity["aws.amazon.com/neuron"] = *resource.NewQuantity(int64(s.Neuron), resource.DecimalSI)
	}
	if s.EFA > 0 {
		capacity["vpc.amazonaws.com/efa"] = *resource.NewQuantity(int64(s.EFA), resource.DecimalSI)
	}

	allocatable = capacity.DeepCopy()
	allocatable[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(s.VCPU)*1000-kubeReservedMilliCPU(s.VCPU), resource.DecimalSI)
	allocMem := memMiB - kubeReservedMemoryMiB(s.MaxPods) - evictionMemoryMiB
	if s.Arch == "arm64" {
		allocMem -= arm64ExtraReservedMiB
	}
	if allocMem < 0 {
		allocMem = 0
	}
	allocatable[corev1.ResourceMemory] = mib(allocMem)
	// The 10% nodefs threshold of a whole-GiB root volume, rounded up to a
	// whole GiB as Karpenter's docs show it (20Gi root → 17Gi allocatable).
	evictGiB := int64(math.Ceil(float64(root) * evictionNodefsPercent / 100))
	allocatable[corev1.ResourceEphemeralStorage] = gib(max(int64(root)-kubeReservedDiskGiB-evictGiB, 0))
	return capacity, allocatable
}

func mib(n int64) resource.Quantity { return resource.MustParse(fmt.Sprintf("%dMi", n)) }
func gib(n int64) resource.Quantity { return resource.MustParse(fmt.Sprintf("%dGi", n)) }
