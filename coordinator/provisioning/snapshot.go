package provisioning

import (
	"fmt"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

// Inputs is the cluster state a snapshot is built from: what the
// controller's informers hold, or what `dovetail simulate` read from YAML.
type Inputs struct {
	Now            time.Time
	Region         string
	Pods           []*corev1.Pod // every pod: pending and bound
	Nodes          []*corev1.Node
	NodeClaims     []*karpv1.NodeClaim
	NodePools      []*karpv1.NodePool
	NodeClasses    []*awsv1.EC2NodeClass
	DaemonSets     []*appsv1.DaemonSet
	PVCs           []*corev1.PersistentVolumeClaim
	PVs            []*corev1.PersistentVolume
	StorageClasses []*storagev1.StorageClass
	// Namespaces, for the namespaceSelector of pod (anti-)affinity terms.
	// nil: not known (a non-empty selector then counts every namespace).
	Namespaces []*corev1.Namespace
	// InstanceTypes every pool may use, with offerings (availability already
	// reflecting the insufficient-capacity cache).
	InstanceTypes []*cloud.InstanceType
	// ClassTypes are, per EC2NodeClass name, the instance types compatible
	// with the class (absent: all of InstanceTypes).
	ClassTypes map[string][]*cloud.InstanceType
	// Reservations says which capacity reservations have room; nil: every
	// active reservation in a node class's status is offered.
	Reservations ReservationAvailability
	// RequireNodeClass drops pools whose EC2NodeClass is not in NodeClasses
	// (the controller sets it; offline simulation may not have them).
	RequireNodeClass bool
}

// Provisionable reports whether the provisioner should find room for the
// pod: not bound, not finished or terminating, not a DaemonSet pod, and
// marked unschedulable by kube-scheduler (PodScheduled=False, reason
// Unschedulable).
func Provisionable(p *corev1.Pod) bool {
	if p.Spec.NodeName != "" || p.DeletionTimestamp != nil {
		return false
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return false
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

// PendingForSimulation is looser than Provisionable: offline snapshots
// (kubectl get -o yaml of a cluster without a scheduler run, or hand-written
// files) often lack the PodScheduled condition, so any unbound live pod counts.
func PendingForSimulation(p *corev1.Pod) bool {
	if p.Spec.NodeName != "" || p.DeletionTimestamp != nil {
		return false
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return false
		}
	}
	return true
}

// Build turns the inputs into a scheduling snapshot. pending selects the
// pods to place (Provisionable for the controller). The notes say what was
// left out and why.
func Build(in Inputs, pending func(*corev1.Pod) bool) (scheduling.Snapshot, []string) {
	if pending == nil {
		pending = Provisionable
	}
	var notes []string
	snap := scheduling.Snapshot{
		Now:                    in.Now,
		Region:                 in.Region,
		InstanceTypes:          PoolInstanceTypes(in, in.NodePools),
		DaemonSets:             in.DaemonSets,
		PersistentVolumeClaims: in.PVCs,
		PersistentVolumes:      in.PVs,
		StorageClasses:         in.StorageClasses,
	}
	if in.Namespaces != nil {
		snap.Namespaces = make(map[string]map[string]string, len(in.Namespaces))
		for _, ns := range in.Namespaces {
			if ns != nil {
				snap.Namespaces[ns.Name] = ns.Labels
			}
		}
	}
	byNode := map[string][]*corev1.Pod{}
	for _, p := range in.Pods {
		if p == nil {
			continue
		}
		if p.Spec.NodeName != "" {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
			}
			continue
		}
		if pending(p) {
			snap.Pods = append(snap.Pods, p)
		}
	}
	startup := map[string][]corev1.Taint{}
	for _, np := range in.NodePools {
		if np != nil {
			startup[np.Name] = np.Spec.Template.Spec.StartupTaints
		}
	}
	nodes, providers := map[string]bool{}, map[string]bool{}
	for _, n := range in.Nodes {
		if n == nil {
			continue
		}
		nodes[n.Name] = true
		if n.Spec.ProviderID != "" {
			providers[n.Spec.ProviderID] = true
		}
		sn := scheduling.NodeFromAPI(n, byNode[n.Name])
		// Until a node is initialized its pool's startup taints are
		// expected to go away (a CNI or driver removes them), so like
		// Karpenter they do not keep pods off it; otherwise every batch
		// during boot would launch more nodes.
		if st := startup[sn.NodePool]; len(st) > 0 && n.Labels[karpv1.NodeInitializedLabelKey] != "true" {
			sn.Taints = withoutTaints(sn.Taints, st)
		}
		snap.Nodes = append(snap.Nodes, sn)
	}
	classes := map[string]bool{}
	for _, c := range in.NodeClasses {
		if c != nil && c.DeletionTimestamp == nil {
			classes[c.Name] = true
		}
	}
	pools := map[string]bool{}
	for _, np := range in.NodePools {
		if np == nil || np.DeletionTimestamp != nil {
			continue
		}
		if in.RequireNodeClass {
			ref := np.Spec.Template.Spec.NodeClassRef
			if ref == nil || !classes[ref.Name] {
				notes = append(notes, fmt.Sprintf("nodepool %s skipped: its EC2NodeClass %s does not exist", np.Name, refName(ref)))
				continue
			}
		}
		pools[np.Name] = true
		snap.NodePools = append(snap.NodePools, scheduling.NodePoolFromAPI(np))
	}
	for _, nc := range in.NodeClaims {
		if nc == nil || nc.DeletionTimestamp != nil {
			continue
		}
		if nc.Status.NodeName != "" && nodes[nc.Status.NodeName] {
			continue // registered: the node itself is in the snapshot
		}
		if nc.Status.ProviderID != "" && providers[nc.Status.ProviderID] {
			// Its Node joined but the launcher has not marked the claim
			// registered yet (one reconcile pass, 10 s as shipped): the
			// Node, with the pods kube-scheduler bound to it, is the
			// claim. Kept as well, it was an empty second copy of the
			// node that took pending pods the node itself refuses (a
			// hostname anti-affinity pod next to its twin), so the plan
			// launched nothing for them. Karpenter keys both by provider
			// ID too.
			continue
		}
		snap.NodeClaims = append(snap.NodeClaims, scheduling.NodeClaimFromAPI(nc, nil))
	}
	sort.SliceStable(snap.Pods, func(i, j int) bool {
		if snap.Pods[i].Namespace != snap.Pods[j].Namespace {
			return snap.Pods[i].Namespace < snap.Pods[j].Namespace
		}
		return snap.Pods[i].Name < snap.Pods[j].Name
	})
	return snap, notes
}

func withoutTaints(taints, remove []corev1.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range taints {
		drop := false
		for _, r := range remove {
			if t.Key == r.Key && t.Effect == r.Effect && (r.Value == "" || r.Value == t.Value) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, t)
		}
	}
	return out
}

func refName(ref *karpv1.NodeClassReference) string {
	if ref == nil {
		return "(none)"
	}
	return ref.Name
}
