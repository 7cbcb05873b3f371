package karpentermetrics

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// wellKnownNodeLabels are the node labels Karpenter v1.14 with the AWS
// provider copies onto its node metrics (core pkg/apis/v1 WellKnownLabels
// plus the labels aws/karpenter-provider-aws pkg/apis/v1 inserts), each as
// Karpenter names the Prometheus label: the part after the "/", lowercased,
// "-" turned into "_" (pkg/controllers/metrics/node getWellKnownLabels).
var wellKnownNodeLabels = []string{
	"karpenter.sh/nodepool",
	"topology.kubernetes.io/zone",
	"topology.kubernetes.io/region",
	"node.kubernetes.io/instance-type",
	"kubernetes.io/arch",
	"kubernetes.io/os",
	"karpenter.sh/capacity-type",
	"node.kubernetes.io/windows-build",
	"karpenter.k8s.aws/capacity-reservation-id",
	"karpenter.k8s.aws/capacity-reservation-type",
	"karpenter.k8s.aws/capacity-reservation-interruptible",
	"karpenter.k8s.aws/instance-hypervisor",
	"karpenter.k8s.aws/instance-encryption-in-transit-supported",
	"karpenter.k8s.aws/instance-category",
	"karpenter.k8s.aws/instance-capability-flex",
	"karpenter.k8s.aws/instance-family",
	"karpenter.k8s.aws/instance-generation",
	"karpenter.k8s.aws/instance-size",
	"karpenter.k8s.aws/instance-local-nvme",
	"karpenter.k8s.aws/instance-cpu",
	"karpenter.k8s.aws/instance-cpu-manufacturer",
	"karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz",
	"karpenter.k8s.aws/instance-memory",
	"karpenter.k8s.aws/instance-ebs-bandwidth",
	"karpenter.k8s.aws/instance-network-bandwidth",
	"karpenter.k8s.aws/instance-gpu-name",
	"karpenter.k8s.aws/instance-gpu-manufacturer",
	"karpenter.k8s.aws/instance-gpu-count",
	"karpenter.k8s.aws/instance-gpu-memory",
	"karpenter.k8s.aws/instance-accelerator-name",
	"karpenter.k8s.aws/instance-accelerator-manufacturer",
	"karpenter.k8s.aws/instance-accelerator-count",
	"topology.k8s.aws/zone-id",
	"karpenter.k8s.aws/instance-tenancy",
	"karpenter.k8s.aws/placement-group-id",
	"karpenter.k8s.aws/placement-group-partition",
}

// promLabel is Karpenter's Prometheus spelling of a Kubernetes label key.
func promLabel(key string) string {
	if i := strings.LastIndex(key, "/"); i >= 0 {
		key = key[i+1:]
	}
	return strings.ReplaceAll(strings.ToLower(key), "-", "_")
}

// nodeLabelKeys are the well-known label keys in the order of nodeLabelNames.
var nodeLabelKeys, nodeLabelNames = func() ([]string, []string) {
	keys := append([]string(nil), wellKnownNodeLabels...)
	sort.Slice(keys, func(i, j int) bool { return promLabel(keys[i]) < promLabel(keys[j]) })
	names := make([]string, 0, len(keys)+3)
	for _, k := range keys {
		names = append(names, promLabel(k))
	}
	return keys, append(names, "node_name", "phase", "managed")
}()

// nodeLabelValues are the values for nodeLabelNames, from a Node.
func nodeLabelValues(n *corev1.Node) []string {
	v := make([]string, 0, len(nodeLabelNames))
	for _, k := range nodeLabelKeys {
		v = append(v, n.Labels[k])
	}
	managed := "false"
	if n.Labels["karpenter.sh/nodepool"] != "" {
		managed = "true"
	}
	return append(v, n.Name, string(n.Status.Phase), managed)
}

// resourceType is Karpenter's resource_type label value: the resource name
// lowercased with "-" as "_" ("cpu", "memory", "ephemeral_storage", "pods").
func resourceType(r corev1.ResourceName) string {
	return strings.ReplaceAll(strings.ToLower(string(r)), "-", "_")
}

// quantity is Karpenter's number for a quantity: cores for CPU, the integer
// value (bytes, pods) for everything else.
func quantity(r corev1.ResourceName, q resource.Quantity) float64 {
	if r == corev1.ResourceCPU {
		return float64(q.MilliValue()) / 1000
	}
	return float64(q.Value())
}
