package disruption

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
	"github.com/dovetail-dev/dovetail/podreq"
)

// SchedulingVerifier checks a decision with the full scheduling simulation
// (scheduling.Solve: affinity, topology spread, volume zones, DaemonSets)
// before the controller executes it; the planner's own fit check is
// resource-based and fast, this one is exact and run once per decision.
type SchedulingVerifier struct {
	// Cluster returns the scheduler's view of the cluster now: every node
	// with its pods, the NodePools, instance types and DaemonSets.
	Cluster func(ctx context.Context) (scheduling.Snapshot, error)
	Options scheduling.Options
}

// Verify implements Verifier. A delete must place every moving pod on the
// remaining nodes; a replacement may add one new NodeClaim, no dearer than
// the decision's replacement price (or, for SameAs replacements, any).
func (v SchedulingVerifier) Verify(ctx context.Context, _ *Snapshot, d Decision) error {
	if v.Cluster == nil {
		return nil
	}
	snap, err := v.Cluster(ctx)
	if err != nil {
		return fmt.Errorf("verify: scheduling snapshot: %w", err)
	}
	return verifyWith(snap, v.Options, d)
}

func verifyWith(snap scheduling.Snapshot, opts scheduling.Options, d Decision) error {
	gone := map[string]bool{}
	for _, n := range d.Nodes {
		gone[n] = true
	}
	var pods []*corev1.Pod
	nodes := make([]scheduling.Node, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		if !gone[n.Name] {
			nodes = append(nodes, n)
			continue
		}
		for _, p := range n.Pods {
			if moves(p) {
				pods = append(pods, stripBinding(p))
			}
		}
	}
	snap.Nodes = nodes
	snap.Pods = pods
	if len(pods) == 0 {
		return nil
	}
	switch {
	case d.Replacement == nil:
		opts.NoNewNodeClaims = true
	default:
		opts.MaxNewNodeClaims = 1
	}
	res := scheduling.Solve(snap, opts)
	if len(res.Unschedulable) > 0 {
		var why []string
		for i, u := range res.Unschedulable {
			if i == 3 {
				why = append(why, fmt.Sprintf("and %d more", len(res.Unschedulable)-3))
				break
			}
			why = append(why, u.PodName+": "+u.Message)
		}
		return fmt.Errorf("%d pod(s) would not be placed: %s", len(res.Unschedulable), strings.Join(why, "; "))
	}
	if d.Replacement != nil && d.Replacement.SameAs == "" && len(res.NewNodeClaims) == 1 {
		if got := res.NewNodeClaims[0].Price; got > d.Replacement.Price*1.0001 {
			return fmt.Errorf("the pods need a $%.4f/h node, not the planned $%.4f/h one", got, d.Replacement.Price)
		}
	}
	return nil
}

// moves reports whether a pod must find a new home when its node goes.
func moves(p *corev1.Pod) bool { return podreq.MovesOnDrain(p) }

// stripBinding returns the pod as its replacement would look: unbound.
func stripBinding(p *corev1.Pod) *corev1.Pod {
	c := p.DeepCopy()
	c.Spec.NodeName = ""
	return c
}
