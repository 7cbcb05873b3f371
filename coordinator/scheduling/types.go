// Package scheduling is Dovetail's pure scheduling simulation: given a
// Snapshot of the cluster (pending pods, existing nodes, in-flight
// NodeClaims, NodePools with their instance types and offerings, DaemonSets)
// Solve decides where every pod goes: onto an existing node, onto an
// in-flight NodeClaim, onto a new NodeClaim it proposes, or nowhere (with a
// reason per NodePool). It performs no I/O and reads no clock, so the same
// snapshot always yields the same result; the provisioner and the
// consolidation planner both call it.
package scheduling

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

// Well-known label keys the simulation treats specially.
const (
	LabelNodePool     = "karpenter.sh/nodepool"
	LabelCapacityType = "karpenter.sh/capacity-type"
	LabelZone         = corev1.LabelTopologyZone
	LabelRegion       = corev1.LabelTopologyRegion
	LabelHostname     = corev1.LabelHostname
	LabelInstanceType = corev1.LabelInstanceTypeStable
	LabelArch         = corev1.LabelArchStable
	LabelOS           = corev1.LabelOSStable
)

// Snapshot is everything Solve looks at. It is a value: Solve never
// modifies it, so callers may reuse it for what-if questions.
type Snapshot struct {
	// Now is the time the snapshot was taken (the only clock Solve sees).
	Now time.Time
	// Region, when set, is put on new NodeClaims as topology.kubernetes.io/region.
	Region string
	// Pods are the pods to place (pending pods, or for consolidation the
	// pods of the nodes being removed).
	Pods []*corev1.Pod
	// Nodes are the existing nodes with the pods bound to them.
	Nodes []Node
	// NodeClaims are launches in flight: NodeClaims without a Ready node yet.
	NodeClaims []NodeClaim
	// NodePools to create new NodeClaims from.
	NodePools []NodePool
	// InstanceTypes lists, per NodePool name, the instance types the pool's
	// NodeClass can launch, with their offerings and prices. The entry with
	// key "" is used for pools without an entry of their own.
	InstanceTypes map[string][]*cloud.InstanceType
	// DaemonSets whose pods would land on every new node they tolerate.
	DaemonSets []*appsv1.DaemonSet
	// Unavailable offerings (the insufficient-capacity cache) are never chosen.
	Unavailable []cloud.UnavailableOffering
	// Volumes: the zone of bound volumes and of WaitForFirstConsumer claims.
	PersistentVolumeClaims []*corev1.PersistentVolumeClaim
	PersistentVolumes      []*corev1.PersistentVolume
	StorageClasses         []*storagev1.StorageClass
	// Namespaces maps each namespace's name to its labels, for the
	// namespaceSelector of pod (anti-)affinity terms. nil means unknown: a
	// non-empty namespaceSelector then counts every namespace (a warning
	// says so).
	Namespaces map[string]map[string]string
}

// Node is an existing node as the simulation sees it.
type Node struct {
	Name        string
	Labels      map[string]string
	Taints      []corev1.Taint
	Allocatable corev1.ResourceList
	// Capacity counts against its NodePool's limits (Allocatable if empty).
	Capacity corev1.ResourceList
	// Pods bound to the node (including DaemonSet pods).
	Pods []*corev1.Pod
	// NodePool that owns the node ("" when not managed by Dovetail).
	NodePool string
	// Unschedulable (cordoned) or MarkedForDeletion nodes take no new pods,
	// but their pods still count for topology.
	Unschedulable     bool
	MarkedForDeletion bool
}

// NodeClaim is a launch in flight that new pods may be placed on.
type NodeClaim struct {
	Name     string
	NodePool string
	// Requirements of the claim (instance-type In [...], zone, capacity type ...).
	Requirements []Requirement
	Labels       map[string]string
	Taints       []corev1.Taint
	// Allocatable is what the claim will offer once launched; when empty the
	// smallest allocatable among its instance-type options is assumed.
	Allocatable corev1.ResourceList
	// Capacity counts against the pool's limits (largest option if empty).
	Capacity corev1.ResourceList
	// Pods already expected on the claim (nominated in an earlier batch).
	Pods []*corev1.Pod
}

// Requirement is a node selector requirement with Karpenter's minValues: the
// flexible instance-type list of a new NodeClaim must keep at least MinValues
// distinct values of Key.
type Requirement struct {
	Key       string                      `json:"key"`
	Operator  corev1.NodeSelectorOperator `json:"operator"`
	Values    []string                    `json:"values,omitempty"`
	MinValues *int                        `json:"minValues,omitempty"`
}

// NodeClassRef names the node class of a pool.
type NodeClassRef struct {
	Group string `json:"group,omitempty"`
	Kind  string `json:"kind,omitempty"`
	Name  string `json:"name"`
}

// NodePool is a NodePool as the simulation sees it (see FromAPI helpers in
// package provisioning for the conversion from karpenter.sh/v1).
type NodePool struct {
	Name         string
	Weight       int32
	Requirements []Requirement
	// Labels, Annotations and Taints of the template land on the node;
	// StartupTaints are ignored for scheduling.
	Labels        map[string]string
	Annotations   map[string]string
	Taints        []corev1.Taint
	StartupTaints []corev1.Taint
	// Limits cap the pool's total capacity (cpu, memory, nodes, ...),
	// counting existing nodes and in-flight NodeClaims.
	Limits       corev1.ResourceList
	NodeClassRef NodeClassRef
	// Static pools (spec.replicas) keep a fixed node count: their nodes and
	// in-flight NodeClaims take pods, but pending pods never open new ones
	// (Karpenter's static provisioning creates those, not the scheduler).
	Static bool
}

// Options tune Solve.
type Options struct {
	// MaxInstanceTypes caps the flexible instance-type list of a new
	// NodeClaim (default 60, as Karpenter).
	MaxInstanceTypes int
	// NoNewNodeClaims forbids new NodeClaims: pods may only go onto existing
	// nodes and in-flight claims (consolidation's "does it fit elsewhere").
	NoNewNodeClaims bool
	// MaxNewNodeClaims, when > 0, caps the number of new NodeClaims; pods
	// that would need more stay unschedulable.
	MaxNewNodeClaims int
	// IgnorePreferences treats preferred terms as absent instead of
	// trying them first.
	IgnorePreferences bool
}

// Result is the decision.
type Result struct {
	// NewNodeClaims to create, in a deterministic order.
	NewNodeClaims []NewNodeClaim `json:"newNodeClaims"`
	// Placements of pods onto existing nodes and in-flight NodeClaims.
	Placements []Placement `json:"placements"`
	// Unschedulable pods, each with the reason per NodePool.
	Unschedulable []Unschedulable `json:"unschedulable"`
	// Stats about the run.
	Stats Stats `json:"stats"`
	// NoCompatibleInstanceTypes names the NodePools (open to new nodes)
	// whose requirements filter out every instance type with an available
	// offering, sorted; provisioning records Karpenter's
	// NoCompatibleInstanceTypes Event on each.
	NoCompatibleInstanceTypes []string `json:"noCompatibleInstanceTypes,omitempty"`
}

// NewNodeClaim is a node the plan wants launched.
type NewNodeClaim struct {
	NodePool     string            `json:"nodePool"`
	NodeClassRef NodeClassRef      `json:"nodeClassRef"`
	Labels       map[string]string `json:"labels,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Taints       []corev1.Taint    `json:"taints,omitempty"`
	// StartupTaints are copied from the pool template.
	StartupTaints []corev1.Taint `json:"startupTaints,omitempty"`
	// Requirements of the claim, including node.kubernetes.io/instance-type
	// In [InstanceTypes...], the zones and capacity types allowed.
	Requirements []Requirement `json:"requirements"`
	// InstanceTypes that fit, cheapest first.
	InstanceTypes []string `json:"instanceTypes"`
	// Options are the (type, zone, capacity type) launch options, spot first
	// when spot is allowed and available, each group cheapest first.
	Options []cloud.LaunchOption `json:"options"`
	// Pods assigned to the claim.
	Pods []*corev1.Pod `json:"-"`
	// PodNames are namespace/name of Pods, for printing.
	PodNames []string `json:"pods"`
	// Requests is the sum of the pods' and DaemonSets' requests.
	Requests corev1.ResourceList `json:"requests"`
	// Price is the $/hour of the first option.
	Price float64 `json:"price"`
	// CapacityType and Zone of the first option.
	CapacityType string `json:"capacityType"`
	Zone         string `json:"zone,omitempty"`
}

// Placement puts a pod on an existing node or an in-flight NodeClaim.
type Placement struct {
	Pod *corev1.Pod `json:"-"`
	// PodName is namespace/name.
	PodName string `json:"pod"`
	// Node is set for an existing node, NodeClaim for an in-flight claim.
	Node      string `json:"node,omitempty"`
	NodeClaim string `json:"nodeClaim,omitempty"`
}

// Unschedulable is a pod no existing node, in-flight claim or NodePool can take.
type Unschedulable struct {
	Pod     *corev1.Pod `json:"-"`
	PodName string      `json:"pod"`
	// Reasons maps NodePool name to why it cannot serve the pod; the key ""
	// holds a reason that applies regardless of pools.
	Reasons map[string]string `json:"reasons"`
	// Message is a one-line summary suitable for a Kubernetes Event.
	Message string `json:"message"`
}

// Stats describes the run.
type Stats struct {
	Pods           int `json:"pods"`
	Classes        int `json:"classes"`
	Relaxations    int `json:"relaxations"`
	NewNodeClaims  int `json:"newNodeClaims"`
	ExistingPlaced int `json:"existingPlaced"`
	Unschedulable  int `json:"unschedulable"`
	// Warnings about input the simulation had to ignore.
	Warnings []string `json:"warnings,omitempty"`
}

// TotalPrice is the $/hour of all new NodeClaims.
func (r *Result) TotalPrice() float64 {
	var p float64
	for i := range r.NewNodeClaims {
		p += r.NewNodeClaims[i].Price
	}
	return p
}
