package wiring

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/provisioning"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
	"github.com/dovetail-dev/dovetail/drain"
)

// AnnotationDisruptionKey marks a replacement NodeClaim with the
// idempotency key of the disruption it was launched for.
const AnnotationDisruptionKey = "dovetail.dev/disruption-key"

// replacementLauncher is the launcher as the replacement path uses it
// (coordinator/launcher.Launcher).
type replacementLauncher interface {
	Launch(ctx context.Context, nc *karpv1.NodeClaim, options []cloud.LaunchOption) error
	Delete(ctx context.Context, nodeClaim string) error
}

// replacer implements disruption.Launcher on the coordinator's launcher: a
// Replacement becomes a NodeClaim of its pool (labels, taints, requirements
// and drift annotations as the provisioner would make them) launched
// through the same Raft-fenced protocol.
type replacer struct {
	view     *clusterView
	types    *cloudTypes
	launcher replacementLauncher
	c        client.Reader
	region   string
	log      *slog.Logger
	now      func() time.Time
}

// ReplacementName is the NodeClaim name of the replacement launched for a
// disruption key: <pool>-<5 letters derived from the key>, Karpenter's shape,
// and the same for every retry so the launch stays idempotent.
func ReplacementName(pool, key string) string {
	h := sha256.Sum256([]byte(key))
	b := make([]byte, 5)
	for i := range b {
		b[i] = 'a' + h[i]%26
	}
	return pool + "-" + string(b)
}

// Launch implements disruption.Launcher.
func (r *replacer) Launch(ctx context.Context, key string, rep disruption.Replacement) (string, error) {
	name := ReplacementName(rep.Pool, key)
	if existing := r.view.nodeClaim(name); existing != nil && existing.Status.ProviderID != "" {
		return name, nil // launched before (an earlier attempt or leader)
	}
	nc, options, err := r.plan(ctx, name, rep)
	if err != nil {
		return "", err
	}
	if nc.Annotations == nil {
		nc.Annotations = map[string]string{}
	}
	nc.Annotations[AnnotationDisruptionKey] = key
	if err := r.launcher.Launch(ctx, nc, options); err != nil {
		return "", fmt.Errorf("launch replacement %s: %w", name, err)
	}
	r.log.Info("replacement launched", "nodeClaim", name, "pool", rep.Pool, "sameAs", rep.SameAs, "options", len(options))
	return name, nil
}

// plan chooses the replacement's NodeClaim and launch options with the
// scheduling simulation: the pods of the node it replaces (SameAs) or a
// stand-in pod with the decision's requests, on the decision's pool only,
// at most one new claim. Explicit consolidation options win over the
// simulation's. The offering the replaced spot node ran on is excluded
// (its capacity is being reclaimed).
func (r *replacer) plan(ctx context.Context, name string, rep disruption.Replacement) (*karpv1.NodeClaim, []cloud.LaunchOption, error) {
	pool := r.view.nodePool(rep.Pool)
	if pool == nil {
		return nil, nil, fmt.Errorf("replacement: NodePool %q not found", rep.Pool)
	}
	its, err := r.types.InstanceTypes(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("replacement: instance types: %w", err)
	}
	o, err := r.view.list()
	if err != nil {
		return nil, nil, fmt.Errorf("replacement: list cluster: %w", err)
	}
	// The pool's class narrows the types as provisioning does (and adds its
	// reservations' offerings), so a replacement never launches a type the
	// class cannot run.
	classTypes, err := provisioning.ClassInstanceTypes(ctx, r.types, o.nodeClasses, its)
	if err != nil {
		return nil, nil, fmt.Errorf("replacement: %w", err)
	}
	in := provisioning.Inputs{InstanceTypes: its, NodeClasses: o.nodeClasses, ClassTypes: classTypes, Reservations: r.types}
	snap := scheduling.Snapshot{
		Now: r.now(), Region: r.region,
		NodePools:     []scheduling.NodePool{scheduling.NodePoolFromAPI(pool)},
		InstanceTypes: provisioning.PoolInstanceTypes(in, []*karpv1.NodePool{pool}),
		DaemonSets:    o.daemonSets,
		Namespaces:    namespaceLabels(o.namespaces),
	}
	if rep.SameAs != "" {
		if n := r.view.node(rep.SameAs); n != nil && n.Labels[karpv1.CapacityTypeLabelKey] == cloud.CapacityTypeSpot {
			snap.Unavailable = append(snap.Unavailable, cloud.UnavailableOffering{
				InstanceType: n.Labels[corev1.LabelInstanceTypeStable], Zone: n.Labels[corev1.LabelTopologyZone],
				CapacityType: cloud.CapacityTypeSpot, Code: "Replaced"})
		}
	}
	// Offerings the planner says to avoid (a rebalance recommendation's
	// capacity pool): unavailable to the simulation, so no option uses them.
	for _, a := range rep.Avoid {
		if !slices.ContainsFunc(snap.Unavailable, func(u cloud.UnavailableOffering) bool {
			return u.InstanceType == a.InstanceType && u.Zone == a.Zone && u.CapacityType == a.CapacityType
		}) {
			snap.Unavailable = append(snap.Unavailable, a)
		}
	}
	attempts := [][]*corev1.Pod{}
	if rep.SameAs != "" {
		if pods := movingPods(o.pods, rep.SameAs); len(pods) > 0 {
			attempts = append(attempts, pods)
		}
	}
	attempts = append(attempts, []*corev1.Pod{standIn(rep)})
	var res scheduling.Result
	for _, pods := range attempts {
		snap.Pods = pods
		res = scheduling.Solve(snap, scheduling.Options{MaxNewNodeClaims: 1})
		if len(res.NewNodeClaims) > 0 {
			break
		}
	}
	if len(res.NewNodeClaims) == 0 {
		why := "no instance type of the pool fits"
		if len(res.Unschedulable) > 0 {
			why = res.Unschedulable[0].Message
		}
		return nil, nil, fmt.Errorf("replacement for pool %s: %s", rep.Pool, why)
	}
	claim := res.NewNodeClaims[0]
	options := claim.Options
	if len(rep.Options) > 0 {
		options = rep.Options
		claim.Requirements = restrictTo(claim.Requirements, rep.Options)
	}
	options = withoutOfferings(options, rep.Avoid)
	if len(options) == 0 {
		return nil, nil, fmt.Errorf("replacement for pool %s: every launch option is an offering to avoid (%v)", rep.Pool, rep.Avoid)
	}
	return provisioning.NodeClaimFor(&claim, name, pool, provisioning.ClassOf(o.nodeClasses, claim.NodeClassRef.Name)), options, nil
}

// withoutOfferings drops the options on an avoided offering (an option
// without a zone or capacity type matches any).
func withoutOfferings(options []cloud.LaunchOption, avoid []cloud.UnavailableOffering) []cloud.LaunchOption {
	if len(avoid) == 0 {
		return options
	}
	return slices.DeleteFunc(slices.Clone(options), func(o cloud.LaunchOption) bool {
		return slices.ContainsFunc(avoid, func(a cloud.UnavailableOffering) bool {
			return o.InstanceType == a.InstanceType && (o.Zone == "" || o.Zone == a.Zone) && (o.CapacityType == "" || o.CapacityType == a.CapacityType)
		})
	})
}

// movingPods are the pods a drain of node would evict, unbound copies.
func movingPods(pods []*corev1.Pod, node string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		if p.Spec.NodeName != node {
			continue
		}
		if evict, _, _ := drain.Classify(p); !evict {
			continue
		}
		c := p.DeepCopy()
		c.Spec.NodeName = ""
		c.Status = corev1.PodStatus{}
		out = append(out, c)
	}
	return out
}

// standIn is one pod with the decision's requests that tolerates anything:
// the shape of the replacement when its pods are not known.
func standIn(rep disruption.Replacement) *corev1.Pod {
	cpu := rep.Requests.MilliCPU
	if cpu <= 0 {
		cpu = 1
	}
	mem := rep.Requests.Memory
	if mem <= 0 {
		mem = 1 << 20
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "dovetail-replacement", Name: "stand-in", UID: "stand-in"},
		Spec: corev1.PodSpec{
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU:    *resource.NewMilliQuantity(cpu, resource.DecimalSI),
				corev1.ResourceMemory: *resource.NewQuantity(mem, resource.BinarySI),
			}}}},
		},
	}
}

// restrictTo sets the instance-type, zone and capacity-type requirements to
// exactly what the options offer.
func restrictTo(reqs []scheduling.Requirement, options []cloud.LaunchOption) []scheduling.Requirement {
	sets := map[string]map[string]bool{
		scheduling.LabelInstanceType: {}, scheduling.LabelZone: {}, scheduling.LabelCapacityType: {},
	}
	for _, o := range options {
		sets[scheduling.LabelInstanceType][o.InstanceType] = true
		if o.Zone != "" {
			sets[scheduling.LabelZone][o.Zone] = true
		}
		if o.CapacityType != "" {
			sets[scheduling.LabelCapacityType][o.CapacityType] = true
		}
	}
	out := make([]scheduling.Requirement, 0, len(reqs)+3)
	for _, rq := range reqs {
		if s, ok := sets[rq.Key]; ok && len(s) > 0 {
			continue
		}
		out = append(out, rq)
	}
	for _, key := range []string{scheduling.LabelInstanceType, scheduling.LabelZone, scheduling.LabelCapacityType} {
		if len(sets[key]) == 0 {
			continue
		}
		vals := make([]string, 0, len(sets[key]))
		for v := range sets[key] {
			vals = append(vals, v)
		}
		sort.Strings(vals)
		out = append(out, scheduling.Requirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: vals})
	}
	return out
}

// Ready implements disruption.Launcher: the NodeClaim is Initialized (the
// launcher saw its Node Ready), or its Node is Ready.
func (r *replacer) Ready(_ context.Context, nodeClaim string) (bool, error) {
	nc := r.view.nodeClaim(nodeClaim)
	if nc == nil {
		return false, nil
	}
	if nc.IsTrue(karpv1.ConditionTypeInitialized) {
		return true, nil
	}
	if nc.Status.NodeName == "" {
		return false, nil
	}
	n := r.view.node(nc.Status.NodeName)
	if n == nil {
		return false, nil
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, nil
		}
	}
	return false, nil
}

// Delete implements disruption.Launcher: the launcher marks the intent
// deleting, deletes the NodeClaim and terminates the instance.
func (r *replacer) Delete(ctx context.Context, nodeClaim string) error {
	return r.launcher.Delete(ctx, nodeClaim)
}
