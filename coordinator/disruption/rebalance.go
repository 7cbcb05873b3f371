package disruption

import (
	"fmt"
	"sort"
	"time"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/report"
)

// Rebalance recommendations (issue 15). EC2 posts one when a spot
// instance's capacity pool is at elevated risk of interruption, usually
// minutes before a notice, often without one following. Acting on it is a
// voluntary, replacement-first disruption: it is worth moving the pods while
// there is time, but not worth breaking the rules that protect them.
//
// Budgets: Karpenter v1.14's budget reasons are an enum of Empty, Drifted
// and Underutilized, and Dovetail's CRD keeps exactly that enum so a NodePool
// moves between the two unchanged (a fourth value would be refused by
// Karpenter's CRD, and by Dovetail's when installed from karpenter-crd). The
// decision therefore has its own reason, RebalanceRecommended (ledger,
// metrics, Events, explain), and is counted against the budgets as Drifted:
// like drift it replaces a working node early, replacement first, so an
// operator who freezes drift (say during business hours) freezes this too,
// and a budget that names Drifted is the way to pace it.

// ReasonRebalance is a spot rebalance recommendation acted on.
const ReasonRebalance Reason = "RebalanceRecommended"

// rebalanceBudgetReason is the budget reason a rebalance counts against.
const rebalanceBudgetReason = ReasonDrifted

// SkipRebalanceIgnored: the NodePool opted out with AnnotationRebalance.
const SkipRebalanceIgnored = "RebalanceIgnored"

// rebalances: nodes with an active rebalance recommendation are replaced
// (replacement first, avoiding the offering that got the recommendation)
// inside the budgets, unless their NodePool opted out. A node that also has
// an interruption notice was already taken by interruptions(): the fsm keeps
// the interruption over the recommendation.
func (p *planner) rebalances() {
	var cands []*Node
	for i := range p.s.Nodes {
		n := &p.s.Nodes[i]
		if n.Pool == "" || n.Interruption == nil || n.Interruption.Kind != string(report.KindRebalance) || p.taken[n.Name] {
			continue
		}
		cands = append(cands, n)
	}
	// Oldest recommendation first: it has had the longest to turn into a notice.
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i].Interruption.Seen, cands[j].Interruption.Seen
		if !a.Equal(b) {
			return a.Before(b)
		}
		return cands[i].Name < cands[j].Name
	})
	for _, n := range cands {
		pool := p.pools[n.Pool]
		what := fmt.Sprintf("spot rebalance recommendation for %s in %s seen %s", n.InstanceType, n.Zone, n.Interruption.Seen.UTC().Format(time.RFC3339))
		if pool == nil {
			p.skip(n, ReasonRebalance, SkipUnknownPool, "%s but NodePool %s is not known", what, n.Pool)
			continue
		}
		if pool.IgnoreRebalance {
			p.skip(n, ReasonRebalance, SkipRebalanceIgnored, "%s; NodePool %s is annotated %s=%s, the node is left to run until interrupted",
				what, pool.Name, AnnotationRebalance, RebalanceIgnore)
			continue
		}
		if code, why := blocked(n, false); code != "" {
			p.skip(n, ReasonRebalance, code, "%s but %s", what, why)
			continue
		}
		allowed, lim := p.allowance(pool, rebalanceBudgetReason)
		if allowed <= 0 {
			p.skip(n, ReasonRebalance, SkipBudget, "%s but blocked by %s (counted as %s; %d disrupting, max %d)",
				what, lim.Budget, rebalanceBudgetReason, p.poolDisrupting[pool.Name], lim.Max)
			continue
		}
		r := sameAs(n, pool)
		r.Avoid = rebalanceAvoid(n)
		p.decide(Decision{
			Reason: ReasonRebalance, Pool: pool.Name, Nodes: []string{n.Name}, NodeClaims: []string{n.NodeClaim},
			Replacement: r, Budget: lim.Budget + " (as " + string(rebalanceBudgetReason) + ")", DrainUntil: drainUntil(pool, p.now),
			Message: what + "; replacing it away from that offering",
		})
	}
}

// rebalanceAvoid is the offering a rebalance replacement must not use: the
// node's own instance type, zone and capacity type, the capacity pool at
// risk (nil when the node's offering is not known).
func rebalanceAvoid(n *Node) []cloud.UnavailableOffering {
	if n == nil || n.InstanceType == "" || n.Zone == "" {
		return nil
	}
	ct := n.CapacityType
	if ct == "" {
		ct = cloud.CapacityTypeSpot
	}
	return []cloud.UnavailableOffering{{InstanceType: n.InstanceType, Zone: n.Zone, CapacityType: ct, Code: "RebalanceRecommendation"}}
}
