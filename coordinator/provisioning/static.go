package provisioning

import (
	"fmt"
	"math"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

// Static NodePools (spec.replicas) keep a fixed number of nodes whatever is
// pending. As in Karpenter's static provisioning controller, this side only
// scales up: a pool with fewer live NodeClaims than replicas gets the
// missing ones, each derived from the pool template alone (its
// requirements, taints, labels and the DaemonSets that would land on it),
// capped by limits.nodes. Scale-down (choosing which nodes go) is the
// disruption planner's (coordinator/disruption, static.go): it owns drains.

// StaticDeficit is what a static pool lacks.
type StaticDeficit struct {
	Pool     string
	Replicas int64
	// Live counts the pool's NodeClaims that are not being deleted (those a
	// disruption is replacing included, as Karpenter counts active plus
	// pending-disruption claims, so a drift replacement is not doubled).
	Live int64
	// Create is how many NodeClaims to create now (0 when the node limit
	// leaves no room; Blocked then says why).
	Create  int64
	Blocked string
}

// StaticDeficits compares every static pool with its NodeClaims. Pure.
func StaticDeficits(pools []*karpv1.NodePool, claims []*karpv1.NodeClaim) []StaticDeficit {
	live := map[string]int64{}
	all := map[string]int64{}
	for _, nc := range claims {
		if nc == nil {
			continue
		}
		p := nc.Labels[karpv1.NodePoolLabelKey]
		all[p]++
		if nc.DeletionTimestamp == nil {
			live[p]++
		}
	}
	var out []StaticDeficit
	for _, np := range pools {
		if np == nil || np.Spec.Replicas == nil || np.DeletionTimestamp != nil || staticNotReady(np) {
			continue
		}
		d := StaticDeficit{Pool: np.Name, Replicas: *np.Spec.Replicas, Live: live[np.Name]}
		want := d.Replicas - d.Live
		if want <= 0 {
			continue
		}
		// limits.nodes counts every claim the pool has, deleting ones
		// included (Karpenter's ReserveNodeCount: active+deleting+pending).
		limit := int64(math.MaxInt64)
		if q, ok := np.Spec.Limits["nodes"]; ok {
			limit = q.Value()
		}
		room := limit - all[np.Name]
		d.Create = min(want, max(room, 0))
		if d.Create < want {
			d.Blocked = fmt.Sprintf("limits.nodes %d reached (%d NodeClaims, %d being deleted)", limit, all[np.Name], all[np.Name]-d.Live)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pool < out[j].Pool })
	return out
}

// staticNotReady: Karpenter provisions a static pool only while its Ready
// condition is True. A pool whose status has not been written yet (no
// Ready condition) is not held back, so a fresh pool does not wait a
// status pass; one reported not Ready (NodeClass missing, invalid) is.
func staticNotReady(np *karpv1.NodePool) bool {
	for _, c := range np.Status.Conditions {
		if c.Type == karpv1.ConditionTypeReady {
			return c.Status == metav1.ConditionFalse
		}
	}
	return false
}

// StaticLaunches plans the NodeClaims that bring static pools up to their
// replicas. in is the same cluster view provisioning uses (claims launched
// but not yet in the informer already appended). Apart from names it is pure.
func StaticLaunches(in Inputs, opts PlanOptions) ([]Launch, []StaticDeficit, []string) {
	deficits := StaticDeficits(in.NodePools, in.NodeClaims)
	if len(deficits) == 0 {
		return nil, nil, nil
	}
	names := opts.Names
	if names == nil {
		names = RandomName
	}
	byName := map[string]*karpv1.NodePool{}
	for _, np := range in.NodePools {
		if np != nil {
			byName[np.Name] = np
		}
	}
	var launches []Launch
	var notes []string
	for _, d := range deficits {
		if d.Create <= 0 {
			continue
		}
		np := byName[d.Pool]
		tmpl, note := staticTemplate(in, np, opts)
		if tmpl == nil {
			notes = append(notes, note)
			continue
		}
		for range d.Create {
			nc := NodeClaimFor(tmpl, names(np.Name), np, ClassOf(in.NodeClasses, tmpl.NodeClassRef.Name))
			launches = append(launches, Launch{NodeClaim: nc, Options: tmpl.Options, Price: tmpl.Price})
		}
	}
	return launches, deficits, notes
}

// staticTemplate derives the NodeClaim a static pool launches: the
// scheduler's answer for one request-less pod that tolerates everything
// and selects only the pool, on an empty cluster. That gives the pool's
// requirements narrowed to the instance types that hold its DaemonSets, in
// the provisioner's option order (spot first when allowed, cheapest first),
// with the insufficient-capacity cache applied.
func staticTemplate(in Inputs, np *karpv1.NodePool, opts PlanOptions) (*scheduling.NewNodeClaim, string) {
	pool := scheduling.NodePoolFromAPI(np)
	pool.Static = false
	pool.Limits = nil // only limits.nodes applies to static pools, counted by StaticDeficits
	pool.Weight = 0
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "dovetail-static", Name: np.Name, UID: "static-" + np.UID},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{karpv1.NodePoolLabelKey: np.Name},
			Tolerations:  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
	snap := scheduling.Snapshot{
		Now: in.Now, Region: in.Region, Pods: []*corev1.Pod{probe},
		NodePools:     []scheduling.NodePool{pool},
		InstanceTypes: PoolInstanceTypes(in, []*karpv1.NodePool{np}),
		DaemonSets:    in.DaemonSets,
	}
	res := scheduling.Solve(snap, opts.Scheduling)
	if len(res.NewNodeClaims) != 1 || len(res.NewNodeClaims[0].Options) == 0 {
		why := "no instance type offered"
		if len(res.Unschedulable) > 0 {
			why = res.Unschedulable[0].Message
		}
		return nil, fmt.Sprintf("static nodepool %s: cannot build a NodeClaim: %s", np.Name, why)
	}
	c := res.NewNodeClaims[0]
	c.Pods, c.PodNames = nil, nil
	return &c, ""
}
