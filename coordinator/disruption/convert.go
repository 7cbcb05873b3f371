package disruption

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"

	"github.com/dovetail-dev/dovetail/coordinator/drifthash"
	"github.com/dovetail-dev/dovetail/podreq"
)

// This file turns the Kubernetes objects and the Raft state into the
// planners' Snapshot. The coordinator's SnapshotSource calls BuildSnapshot
// with what its informers hold.

// ClusterState is the input of BuildSnapshot.
type ClusterState struct {
	NodePools     []*karpv1.NodePool
	NodeClasses   []*awsv1.EC2NodeClass
	NodeClaims    []*karpv1.NodeClaim
	Nodes         []*corev1.Node
	Pods          []*corev1.Pod
	PDBs          []*policyv1.PodDisruptionBudget
	InstanceTypes []cloud.InstanceType
	// ClassInstanceTypes: per EC2NodeClass name, the types the class can
	// run (see Snapshot.ClassInstanceTypes).
	ClassInstanceTypes map[string][]cloud.InstanceType
	// Raft is the replicated state (ledger, rollouts, agent reports); may be nil.
	Raft *fsm.State
	// Subnets and security groups of running instances by provider ID, when
	// the caller knows them (from EC2); drift by subnet/SG needs them.
	InstanceNetwork map[string]InstanceNetwork
}

// InstanceNetwork is where an instance runs.
type InstanceNetwork struct {
	SubnetID       string
	SecurityGroups []string
}

// BuildSnapshot assembles a Snapshot. Objects it cannot interpret are left
// out or defaulted and reported in the returned errors (for logs and
// Events); it never fails as a whole.
func BuildSnapshot(cs ClusterState) (*Snapshot, []error) {
	var errs []error
	s := &Snapshot{InstanceTypes: cs.InstanceTypes, ClassInstanceTypes: cs.ClassInstanceTypes, Ledger: map[string]fsm.Disruption{}, Rollouts: map[string]fsm.Rollout{}, ReplacementReady: map[string]bool{}}
	static := map[string]bool{}
	for _, np := range cs.NodePools {
		static[np.Name] = np.Spec.Replicas != nil
		p, err := PoolFromAPI(np)
		if err != nil {
			errs = append(errs, err)
		}
		s.Pools = append(s.Pools, p)
	}
	for _, nc := range cs.NodeClasses {
		s.NodeClasses = append(s.NodeClasses, NodeClassFromAPI(nc))
	}
	if cs.Raft != nil {
		for k, v := range cs.Raft.Disruptions {
			s.Ledger[k] = *v
		}
		for k, v := range cs.Raft.Rollouts {
			s.Rollouts[k] = *v
		}
	}
	pdb := NewPDBIndex(cs.PDBs)
	podsByNode := map[string][]*corev1.Pod{}
	for _, p := range cs.Pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.Spec.NodeName == "" {
			if p.DeletionTimestamp == nil {
				s.PendingPods = append(s.PendingPods, PodFromAPI(p, pdb))
			}
			continue
		}
		podsByNode[p.Spec.NodeName] = append(podsByNode[p.Spec.NodeName], p)
	}
	claimByNode := map[string]*karpv1.NodeClaim{}
	claimByProvider := map[string]*karpv1.NodeClaim{}
	for _, c := range cs.NodeClaims {
		if c.Status.NodeName != "" {
			claimByNode[c.Status.NodeName] = c
		}
		if c.Status.ProviderID != "" {
			claimByProvider[c.Status.ProviderID] = c
		}
		ready := c.IsTrue(karpv1.ConditionTypeInitialized)
		s.ReplacementReady[c.Name] = ready
		if static[c.Labels[karpv1.NodePoolLabelKey]] {
			s.Claims = append(s.Claims, Claim{Name: c.Name, Pool: c.Labels[karpv1.NodePoolLabelKey],
				Resolved: c.Status.ProviderID != "", Deleting: c.DeletionTimestamp != nil, Created: c.CreationTimestamp.Time})
		}
	}
	for _, n := range cs.Nodes {
		claim := claimByNode[n.Name]
		if claim == nil && n.Spec.ProviderID != "" {
			claim = claimByProvider[n.Spec.ProviderID]
		}
		var status *fsm.NodeStatus
		if cs.Raft != nil {
			status = cs.Raft.Nodes[n.Name]
			if status != nil && !status.SameInstance(n.Spec.ProviderID, "") {
				// The status is about an earlier instance that had this
				// hostname: joining it would force-replace a healthy node.
				status = nil
			}
		}
		node := NodeFromAPI(n, claim, podsByNode[n.Name], pdb, status)
		node.Price = priceOf(cs.InstanceTypes, node.InstanceType, node.Zone, node.CapacityType)
		if net, ok := cs.InstanceNetwork[n.Spec.ProviderID]; ok {
			node.SubnetID, node.SecurityGroups = net.SubnetID, slices.Clone(net.SecurityGroups)
		}
		s.Nodes = append(s.Nodes, node)
	}
	return s, errs
}

func priceOf(types []cloud.InstanceType, name, zone, ct string) float64 {
	for i := range types {
		if types[i].Name != name {
			continue
		}
		for _, o := range types[i].Offerings {
			if o.Zone == zone && o.CapacityType == ct {
				return o.Price
			}
		}
	}
	return 0
}

// PoolFromAPI converts a NodePool. A bad min-savings annotation or budget
// is reported; the pool is still returned (budgets fail closed on their own).
func PoolFromAPI(np *karpv1.NodePool) (Pool, error) {
	t := np.Spec.Template
	p := Pool{
		Name:                np.Name,
		ConsolidationPolicy: string(np.Spec.Disruption.ConsolidationPolicy),
		ConsolidateAfter:    np.Spec.Disruption.ConsolidateAfter.Duration,
		ExpireAfter:         t.Spec.ExpireAfter.Duration,
		Taints:              slices.Clone(t.Spec.Taints),
		Labels:              t.Labels,
	}
	if p.ConsolidationPolicy == "" {
		p.ConsolidationPolicy = WhenEmptyOrUnderutilized
	}
	if t.Spec.NodeClassRef != nil {
		p.NodeClass = t.Spec.NodeClassRef.Name
	}
	if t.Spec.TerminationGracePeriod != nil {
		d := t.Spec.TerminationGracePeriod.Duration
		p.TerminationGracePeriod = &d
	}
	p.Budgets = BudgetsOf(np)
	if np.Spec.Replicas != nil {
		r := *np.Spec.Replicas
		p.Replicas = &r
	}
	for _, r := range t.Spec.Requirements {
		p.Requirements = append(p.Requirements, corev1.NodeSelectorRequirement{Key: r.Key, Operator: r.Operator, Values: r.Values})
	}
	p.TemplateHash = drifthash.TemplateHash(drifthash.TemplateStaticOf(np))
	var errs []error
	if v, ok := np.Annotations[AnnotationMinSavings]; ok {
		ms, err := ParseMinSavings(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("NodePool %s: %w", np.Name, err))
		}
		p.MinSavings = ms
	}
	switch v, ok := np.Annotations[AnnotationRebalance]; {
	case !ok || v == karpv1.RebalanceReplace:
	case v == RebalanceIgnore:
		p.IgnoreRebalance = true
	default:
		// Fail safe: whoever wrote the annotation meant to change the
		// default, and the one change there is leaves nodes alone.
		p.IgnoreRebalance = true
		errs = append(errs, fmt.Errorf("NodePool %s: annotation %s=%q: want %q or %q (treated as %q until fixed)",
			np.Name, AnnotationRebalance, v, karpv1.RebalanceReplace, RebalanceIgnore, RebalanceIgnore))
	}
	for i, b := range p.Budgets {
		if err := b.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("NodePool %s budgets[%d]: %w (no disruption allowed until fixed)", np.Name, i, err))
		}
	}
	return p, errors.Join(errs...)
}

// ParseMinSavings reads the consolidation-min-savings annotation: "15%" or
// "0.15". Out-of-range or unreadable values give 0 and an error.
func ParseMinSavings(v string) (float64, error) {
	s := strings.TrimSpace(v)
	pct := strings.HasSuffix(s, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err == nil && pct {
		f /= 100
	}
	if err != nil || f < 0 || f >= 1 {
		return 0, fmt.Errorf("annotation %s=%q: want a percentage like \"15%%\" (0%% to 99%%)", AnnotationMinSavings, v)
	}
	return f, nil
}

// NodeClassFromAPI converts an EC2NodeClass's resolved status.
func NodeClassFromAPI(nc *awsv1.EC2NodeClass) NodeClass {
	c := NodeClass{Name: nc.Name, Hash: drifthash.NodeClassHash(nc.Spec)}
	for _, a := range nc.Status.AMIs {
		ref := AMIRef{ID: a.ID}
		for _, r := range a.Requirements {
			if r.Key == corev1.LabelArchStable && r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 {
				ref.Arch = r.Values[0]
			}
		}
		c.AMIs = append(c.AMIs, ref)
	}
	for _, s := range nc.Status.Subnets {
		c.Subnets = append(c.Subnets, s.ID)
	}
	for _, g := range nc.Status.SecurityGroups {
		c.SecurityGroups = append(c.SecurityGroups, g.ID)
	}
	return c
}

// NodeFromAPI converts a node with its NodeClaim (nil when unmanaged), pods
// and agent status (may be nil).
func NodeFromAPI(n *corev1.Node, claim *karpv1.NodeClaim, pods []*corev1.Pod, pdb *PDBIndex, status *fsm.NodeStatus) Node {
	out := Node{
		Name:         n.Name,
		ProviderID:   n.Spec.ProviderID,
		InstanceType: n.Labels[corev1.LabelInstanceTypeStable],
		Zone:         n.Labels[corev1.LabelTopologyZone],
		CapacityType: n.Labels[karpv1.CapacityTypeLabelKey],
		Labels:       n.Labels,
		Annotations:  map[string]string{},
		Taints:       n.Spec.Taints,
		Allocatable:  ResourcesOf(n.Status.Allocatable),
		Created:      n.CreationTimestamp.Time,
		Deleting:     n.DeletionTimestamp != nil,
		Pool:         n.Labels[karpv1.NodePoolLabelKey],
		NodeClass:    n.Labels[karpv1.LabelNodeClass],
	}
	for k, v := range n.Annotations {
		out.Annotations[k] = v
	}
	ready := nodeCondition(n, corev1.NodeReady)
	out.Ready = ready != nil && ready.Status == corev1.ConditionTrue
	if claim != nil {
		out.NodeClaim = claim.Name
		if out.Pool == "" {
			out.Pool = claim.Labels[karpv1.NodePoolLabelKey]
		}
		if claim.Spec.NodeClassRef != nil {
			out.NodeClass = claim.Spec.NodeClassRef.Name
		}
		// Karpenter keeps the hash annotations on the NodeClaim.
		for k, v := range claim.Annotations {
			if _, ok := out.Annotations[k]; !ok {
				out.Annotations[k] = v
			}
		}
		out.Created = claim.CreationTimestamp.Time
		out.Initialized = claim.IsTrue(karpv1.ConditionTypeInitialized)
		out.Deleting = out.Deleting || claim.DeletionTimestamp != nil
		out.LastPodChange = claim.Status.LastPodEventTime.Time
		out.ImageID = claim.Status.ImageID
	} else {
		out.Pool = "" // without a NodeClaim the node is not ours to disrupt
	}
	for _, key := range []string{karpv1.LabelInstanceGPUCount, karpv1.LabelInstanceAcceleratorCount} {
		if v, err := strconv.Atoi(n.Labels[key]); err == nil && v > 0 {
			out.Accelerated = true
		}
	}
	// Repair signals: the kubelet's Ready condition (once the node has been
	// initialized; a booting node is not broken) and the agent's checks.
	if out.Initialized && ready != nil && ready.Status != corev1.ConditionTrue {
		out.Unhealthy = &Unhealthy{Condition: "Ready", Since: ready.LastTransitionTime.Time, Message: ready.Message}
	}
	if status != nil {
		for _, c := range status.Checks {
			if c.State != "failed" {
				continue
			}
			name := c.Condition
			if name == "" {
				name = c.Name
			}
			if out.Unhealthy == nil || c.Since.Before(out.Unhealthy.Since) {
				out.Unhealthy = &Unhealthy{Condition: name, Since: c.Since, Message: c.Message}
			}
		}
		if r := status.Interruption; r != nil {
			out.Interruption = &Interruption{Kind: string(r.Kind), Action: r.Action, Message: r.Message, Deadline: r.Deadline, Seen: r.ObservedAt}
		}
		out.ReplaceRequested = status.ReplaceRequested
	}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out.Pods = append(out.Pods, PodFromAPI(p, pdb))
	}
	return out
}

func nodeCondition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// PodFromAPI converts a pod: effective requests (podreq.Requests, the rule
// the provisioner and kube-scheduler use, native sidecars included), where
// it may go, and whether it holds its node (podreq.MovesOnDrain).
func PodFromAPI(p *corev1.Pod, pdb *PDBIndex) Pod {
	req := ResourcesOf(podreq.Requests(p))
	req.Pods = 1
	out := Pod{
		Namespace: p.Namespace, Name: p.Name, Requests: req,
		NodeSelector: p.Spec.NodeSelector, Tolerations: p.Spec.Tolerations,
		DoNotDisrupt: p.Annotations[karpv1.DoNotDisruptAnnotationKey] == "true",
		Created:      p.CreationTimestamp.Time,
		Stays:        !podreq.MovesOnDrain(p),
		EvictionCost: EvictionCost(p),
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			out.Ready = true
		}
	}
	if pdb != nil {
		out.BlockingPDB = pdb.Blocking(p)
	}
	return out
}

// EvictionCost is Karpenter's disruption cost of evicting a pod: 1, plus
// pod-deletion-cost/2^27 and priority/2^25, clamped to [-10, 10], so one
// pod at the extremes weighs like -15 or +17 ordinary pods before the clamp.
// An unreadable deletion cost is ignored (Karpenter logs and ignores it).
func EvictionCost(p *corev1.Pod) float64 {
	cost := 1.0
	if v, ok := p.Annotations[corev1.PodDeletionCost]; ok {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			cost += f / math.Pow(2, 27)
		}
	}
	if p.Spec.Priority != nil {
		cost += float64(*p.Spec.Priority) / math.Pow(2, 25)
	}
	return min(max(cost, -10), 10)
}

// PDBIndex finds the PodDisruptionBudget that currently forbids evicting a pod.
type PDBIndex struct {
	byNS map[string][]pdbSel
}

type pdbSel struct {
	name string
	sel  labels.Selector
}

// NewPDBIndex indexes the PDBs that allow no disruption right now.
func NewPDBIndex(pdbs []*policyv1.PodDisruptionBudget) *PDBIndex {
	ix := &PDBIndex{byNS: map[string][]pdbSel{}}
	for _, p := range pdbs {
		if p.Status.DisruptionsAllowed > 0 || p.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || sel.Empty() {
			continue
		}
		ix.byNS[p.Namespace] = append(ix.byNS[p.Namespace], pdbSel{p.Namespace + "/" + p.Name, sel})
	}
	return ix
}

// Blocking returns "ns/name" of a PDB that blocks evicting p, or "".
func (ix *PDBIndex) Blocking(p *corev1.Pod) string {
	for _, s := range ix.byNS[p.Namespace] {
		if s.sel.Matches(labels.Set(p.Labels)) {
			return s.name
		}
	}
	return ""
}

// BudgetsOf converts a NodePool's disruption budgets to the evaluator's form.
// The NodePool status controller validates the same values, so what it flags
// as invalid is exactly what the planner would fail to evaluate.
func BudgetsOf(np *karpv1.NodePool) []budget.Budget {
	var out []budget.Budget
	for _, b := range np.Spec.Disruption.Budgets {
		bb := budget.Budget{Nodes: b.Nodes}
		if b.Schedule != nil {
			bb.Schedule = *b.Schedule
		}
		if b.Duration != nil {
			bb.Duration = b.Duration.Duration
		}
		for _, r := range b.Reasons {
			bb.Reasons = append(bb.Reasons, budget.Reason(r))
		}
		out = append(out, bb)
	}
	return out
}
