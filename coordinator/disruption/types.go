// Package disruption decides which nodes the leader takes away and why:
// consolidation (empty, underutilized delete/replace, multi-node), drift,
// expiry, interruption replacement, repair and rolling AMI updates, all
// inside the NodePools' disruption budgets. It also holds the controller
// that carries a decision out: launch replacement, wait for Ready, taint,
// drain, delete the NodeClaim.
//
// The planners are pure: Plan(snapshot, now, options) returns decisions,
// skipped candidates with reasons and Raft commands as values, with no I/O,
// so a plan can be printed, explained, replayed and table-tested. The
// Snapshot is Dovetail's own compact view of the cluster (filled by an
// adapter from informers and the Raft state), not the Kubernetes objects
// themselves, which keeps decisions fast at 5,000 nodes.
package disruption

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
	"github.com/dovetail-dev/dovetail/coordinator/drifthash"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// Reason is why a node is disrupted. The first three are the ones a budget
// can name; the rest are Dovetail's (and Karpenter's) other paths.
type Reason = budget.Reason

// Disruption reasons.
const (
	ReasonEmpty         = budget.ReasonEmpty
	ReasonUnderutilized = budget.ReasonUnderutilized
	ReasonDrifted       = budget.ReasonDrifted
	ReasonExpired       = budget.ReasonExpired
	// ReasonInterrupted covers spot interruption and scheduled maintenance:
	// forceful, never blocked by budgets. (A rebalance recommendation is
	// ReasonRebalance, voluntary: rebalance.go.)
	ReasonInterrupted Reason = "Interrupted"
	// ReasonUnhealthy is node repair: forceful, bounded by the repair limit.
	ReasonUnhealthy Reason = "Unhealthy"
	// ReasonOverprovisioned is a static pool scaled below its node count
	// (Karpenter's static deprovisioning): not blocked by budgets, but the
	// drain respects PodDisruptionBudgets.
	ReasonOverprovisioned Reason = "Overprovisioned"
)

// Well-known annotations, labels and taints: the API's, under the short
// names the planners use.
const (
	AnnotationDoNotDisrupt    = karpv1.DoNotDisruptAnnotationKey
	AnnotationNodePoolHash    = drifthash.AnnotationNodePoolHash
	AnnotationNodePoolHashVer = drifthash.AnnotationNodePoolHashVer
	AnnotationNodeClassHash   = drifthash.AnnotationNodeClassHash
	// AnnotationMinSavings on a NodePool asks for a minimum saving before an
	// underutilized node is replaced, e.g. "15%". Deletions are not affected.
	AnnotationMinSavings = karpv1.ConsolidationMinSavingsAnnotationKey
	// AnnotationRebalance on a NodePool set to RebalanceIgnore opts the
	// pool out of acting on spot rebalance recommendations.
	AnnotationRebalance = karpv1.RebalanceAnnotationKey
	RebalanceIgnore     = karpv1.RebalanceIgnore
	// TaintDisrupted is put on a node before it is drained.
	TaintDisrupted = karpv1.DisruptedTaintKey
	LabelNodePool  = karpv1.NodePoolLabelKey
	LabelCapacity  = karpv1.CapacityTypeLabelKey
	LabelZone      = karpv1.LabelTopologyZone
	LabelType      = karpv1.LabelInstanceType
)

// Consolidation policies.
const (
	WhenEmpty                 = "WhenEmpty"
	WhenEmptyOrUnderutilized  = "WhenEmptyOrUnderutilized"
	DefaultExpireAfter        = 720 * time.Hour
	GeneralPurposeExpireAfter = 336 * time.Hour
)

// Resources is what the planners count: CPU in millicores, memory in bytes,
// pod slots and accelerators (GPUs + Neuron devices).
type Resources struct {
	MilliCPU int64 `json:"milliCPU"`
	Memory   int64 `json:"memory"`
	Pods     int64 `json:"pods"`
	Accel    int64 `json:"accel,omitempty"`
}

// Add returns r+o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.MilliCPU + o.MilliCPU, r.Memory + o.Memory, r.Pods + o.Pods, r.Accel + o.Accel}
}

// Sub returns r-o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.MilliCPU - o.MilliCPU, r.Memory - o.Memory, r.Pods - o.Pods, r.Accel - o.Accel}
}

// Fits reports whether o fits in r.
func (r Resources) Fits(o Resources) bool {
	return o.MilliCPU <= r.MilliCPU && o.Memory <= r.Memory && o.Pods <= r.Pods && o.Accel <= r.Accel
}

// Pod is a pod as the disruption planners need it.
type Pod struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Requests  Resources `json:"requests"` // Pods is 1
	// NodeSelector and Tolerations decide where the pod may move.
	NodeSelector map[string]string   `json:"nodeSelector,omitempty"`
	Tolerations  []corev1.Toleration `json:"tolerations,omitempty"`
	// Stays is true for pods that do not move when the node goes
	// (DaemonSet pods, static/mirror pods): they do not keep a node busy.
	Stays bool `json:"stays,omitempty"`
	// DoNotDisrupt is the karpenter.sh/do-not-disrupt annotation.
	DoNotDisrupt bool `json:"doNotDisrupt,omitempty"`
	// EvictionCost is Karpenter's cost of evicting the pod: 1, moved by
	// controller.kubernetes.io/pod-deletion-cost and the pod's priority,
	// clamped to [-10, 10] (static scale-down orders nodes by it).
	EvictionCost float64 `json:"evictionCost,omitempty"`
	// BlockingPDB names a PodDisruptionBudget selecting the pod that allows
	// no eviction right now ("ns/name"), empty otherwise.
	BlockingPDB string    `json:"blockingPDB,omitempty"`
	Ready       bool      `json:"ready"`
	Created     time.Time `json:"created"`
}

// Key is "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Unhealthy says a node's health condition has been bad since a time.
type Unhealthy struct {
	Condition string    `json:"condition"`
	Since     time.Time `json:"since"`
	Message   string    `json:"message,omitempty"`
}

// Interruption is an active spot interruption, rebalance recommendation or
// scheduled maintenance for a node.
type Interruption struct {
	Kind string `json:"kind"` // report.KindInterruption, KindRebalance, KindMaintenance
	// Action is the spot action (terminate, stop, hibernate) or the
	// maintenance code (instance-stop, instance-retirement, system-reboot...).
	Action string `json:"action,omitempty"`
	// Message is the maintenance event's description, if any.
	Message  string    `json:"message,omitempty"`
	Deadline time.Time `json:"deadline,omitzero"`
	Seen     time.Time `json:"seen"`
}

// Node is a node (with its NodeClaim) as the planners see it.
type Node struct {
	Name         string            `json:"name"`
	NodeClaim    string            `json:"nodeClaim"`
	Pool         string            `json:"pool"`
	NodeClass    string            `json:"nodeClass,omitempty"`
	ProviderID   string            `json:"providerID,omitempty"`
	InstanceType string            `json:"instanceType"`
	Zone         string            `json:"zone"`
	CapacityType string            `json:"capacityType"`
	Price        float64           `json:"price"` // USD/hour of what it runs on
	Labels       map[string]string `json:"labels,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Taints       []corev1.Taint    `json:"taints,omitempty"`
	Allocatable  Resources         `json:"allocatable"`
	Created      time.Time         `json:"created"`
	// Initialized is the NodeClaim's Initialized condition: registered,
	// Ready, startup taints gone, resources advertised.
	Initialized bool `json:"initialized"`
	Ready       bool `json:"ready"`
	// Deleting is set once the NodeClaim or node has a deletion timestamp.
	Deleting bool `json:"deleting,omitempty"`
	// LastPodChange is when a pod was last bound to or removed from the
	// node (Karpenter's consolidateAfter clock); zero means Created.
	LastPodChange  time.Time `json:"lastPodChange,omitzero"`
	ImageID        string    `json:"imageID,omitempty"`
	SubnetID       string    `json:"subnetID,omitempty"`
	SecurityGroups []string  `json:"securityGroups,omitempty"`
	// Accelerated nodes (GPU/Neuron) get a shorter repair toleration.
	Accelerated      bool          `json:"accelerated,omitempty"`
	Unhealthy        *Unhealthy    `json:"unhealthy,omitempty"`
	Interruption     *Interruption `json:"interruption,omitempty"`
	ReplaceRequested bool          `json:"replaceRequested,omitempty"`
	Pods             []Pod         `json:"pods,omitempty"`
}

// Pool is a NodePool as the planners see it.
type Pool struct {
	Name      string `json:"name"`
	NodeClass string `json:"nodeClass"`
	// ConsolidationPolicy is WhenEmpty or WhenEmptyOrUnderutilized.
	ConsolidationPolicy string `json:"consolidationPolicy"`
	// ConsolidateAfter nil means Never (consolidation off).
	ConsolidateAfter *time.Duration `json:"consolidateAfter,omitempty"`
	// ExpireAfter nil means Never.
	ExpireAfter            *time.Duration  `json:"expireAfter,omitempty"`
	TerminationGracePeriod *time.Duration  `json:"terminationGracePeriod,omitempty"`
	Budgets                []budget.Budget `json:"budgets,omitempty"`
	// Requirements is spec.template.spec.requirements.
	Requirements []corev1.NodeSelectorRequirement `json:"requirements,omitempty"`
	Taints       []corev1.Taint                   `json:"taints,omitempty"`
	Labels       map[string]string                `json:"labels,omitempty"`
	// TemplateHash is the hash of the template's static fields (drifthash.TemplateHash())
	// compared with each node's karpenter.sh/nodepool-hash annotation.
	TemplateHash string `json:"templateHash,omitempty"`
	// MinSavings is the fraction (0.15 for "15%") a replacement must save.
	MinSavings float64 `json:"minSavings,omitempty"`
	// IgnoreRebalance: the pool is annotated dovetail.dev/rebalance=ignore;
	// its nodes are not replaced on a rebalance recommendation.
	IgnoreRebalance bool `json:"ignoreRebalance,omitempty"`
	// Replicas is spec.replicas of a static pool (nil: dynamic). Static
	// pools are never consolidated; a pool above its replicas is scaled
	// down by the static planner (static.go).
	Replicas *int64 `json:"replicas,omitempty"`
}

// NodeClass is an EC2NodeClass's resolved status as drift needs it.
type NodeClass struct {
	Name string `json:"name"`
	// Hash of the NodeClass spec, compared with the node's
	// karpenter.k8s.aws/ec2nodeclass-hash annotation.
	Hash           string   `json:"hash,omitempty"`
	AMIs           []AMIRef `json:"amis,omitempty"`
	Subnets        []string `json:"subnets,omitempty"`
	SecurityGroups []string `json:"securityGroups,omitempty"`
}

// Snapshot is everything a disruption decision looks at, taken at one
// instant. Slices are owned by the planner for the duration of Plan and not
// modified.
type Snapshot struct {
	Pools         []Pool               `json:"pools"`
	NodeClasses   []NodeClass          `json:"nodeClasses,omitempty"`
	Nodes         []Node               `json:"nodes"`
	InstanceTypes []cloud.InstanceType `json:"instanceTypes,omitempty"`
	// ClassInstanceTypes are, per EC2NodeClass name, the instance types the
	// class can run (provisioning.ClassInstanceTypes: the same narrowing
	// provisioning applies); a pool whose class has no entry chooses
	// replacements from InstanceTypes.
	ClassInstanceTypes map[string][]cloud.InstanceType `json:"classInstanceTypes,omitempty"`
	// PendingPods are pods not yet bound; consolidation keeps room for them.
	PendingPods []Pod `json:"pendingPods,omitempty"`
	// Ledger is the Raft disruption ledger (in-flight disruptions by node).
	Ledger map[string]fsm.Disruption `json:"ledger,omitempty"`
	// Rollouts is the Raft rollout state by NodePool.
	Rollouts map[string]fsm.Rollout `json:"rollouts,omitempty"`
	// ReplacementReady says, by NodeClaim name, whether a replacement
	// launched for a disruption has become Ready; absent means not yet.
	ReplacementReady map[string]bool `json:"replacementReady,omitempty"`
	// Claims are the NodeClaims of static pools (registered or not): a
	// static pool's size is its NodeClaims, launched or still launching.
	Claims []Claim `json:"claims,omitempty"`
}

// Claim is a static pool's NodeClaim as the static planner counts it.
type Claim struct {
	Name string `json:"name"`
	Pool string `json:"pool"`
	// Resolved: the instance exists (status.providerID set).
	Resolved bool      `json:"resolved,omitempty"`
	Deleting bool      `json:"deleting,omitempty"`
	Created  time.Time `json:"created"`
}

// AMIRef is a resolved AMI: its id and architecture.
type AMIRef struct {
	ID   string `json:"id"`
	Arch string `json:"arch,omitempty"`
}
