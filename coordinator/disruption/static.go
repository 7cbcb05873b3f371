package disruption

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
)

// staticScaleDown is Karpenter's static deprovisioning: a static pool
// (spec.replicas) with more active NodeClaims than replicas loses the
// surplus, chosen in Karpenter's order:
//  1. NodeClaims without an instance yet (deleted at once, nothing to drain);
//  2. empty nodes (only DaemonSet/mirror pods, none do-not-disrupt);
//  3. the rest, nodes without do-not-disrupt pods first, then by rescheduling
//     cost (sum of the pods' eviction costs) times the fraction of the
//     node's lifetime left, cheapest first.
//
// Active claims exclude those being deleted and those a disruption is
// already replacing (in the ledger), so a drift replacement in flight is
// not mistaken for surplus. Node disruption budgets do not block a scale
// operation (Karpenter's documented behaviour), but the decisions are
// counted and the drain respects PodDisruptionBudgets.
func (p *planner) staticScaleDown() {
	inLedger := map[string]bool{}
	for _, e := range p.s.Ledger {
		if e.NodeClaim != "" {
			inLedger[e.NodeClaim] = true
		}
	}
	for _, pool := range p.sortedPools() {
		if pool.Replicas == nil {
			continue
		}
		nodeOf := map[string]*Node{}
		for _, n := range p.byPool[pool.Name] {
			if n.NodeClaim != "" {
				nodeOf[n.NodeClaim] = n
			}
		}
		var unresolved []Claim
		active := 0
		for _, c := range p.s.Claims {
			if c.Pool != pool.Name || c.Deleting || inLedger[c.Name] {
				continue
			}
			if n := nodeOf[c.Name]; n != nil && p.taken[n.Name] {
				continue
			}
			active++
			if !c.Resolved {
				unresolved = append(unresolved, c)
			}
		}
		over := active - int(*pool.Replicas)
		if over <= 0 {
			continue
		}
		msg := fmt.Sprintf("static NodePool %s has %d active NodeClaims for %d replicas", pool.Name, active, *pool.Replicas)
		sort.Slice(unresolved, func(i, j int) bool { return unresolved[i].Name < unresolved[j].Name })
		for _, c := range unresolved {
			if over == 0 {
				break
			}
			p.plan.DeleteClaims = append(p.plan.DeleteClaims, ClaimDeletion{NodeClaim: c.Name, Pool: pool.Name, Message: msg + "; not launched yet, deleted"})
			over--
		}
		for _, n := range p.staticCandidates(pool) {
			if over == 0 {
				break
			}
			p.decide(Decision{
				Reason: ReasonOverprovisioned, Pool: pool.Name, Nodes: []string{n.Name}, NodeClaims: []string{n.NodeClaim},
				Budget: "static scale-down (counted, not blocked)", DrainUntil: drainUntil(pool, p.now), Message: msg,
			})
			over--
		}
	}
}

// staticCandidates orders a static pool's launched nodes for scale-down.
func (p *planner) staticCandidates(pool *Pool) []*Node {
	type cand struct {
		n          *Node
		empty, dnd bool
		cost       float64
	}
	var cs []cand
	for _, n := range p.byPool[pool.Name] {
		if n.NodeClaim == "" || p.taken[n.Name] {
			continue
		}
		c := cand{n: n, empty: true}
		for i := range n.Pods {
			pod := &n.Pods[i]
			if pod.DoNotDisrupt {
				c.dnd = true
			}
			if !pod.Stays {
				c.empty = false
			}
			c.cost += pod.EvictionCost
		}
		if c.dnd {
			c.empty = false
		}
		c.cost *= p.lifetimeRemaining(pool, n)
		cs = append(cs, c)
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		if a.empty != b.empty {
			if a.empty {
				return -1
			}
			return 1
		}
		if !a.empty {
			if a.dnd != b.dnd {
				if a.dnd {
					return 1
				}
				return -1
			}
			if c := cmp.Compare(a.cost, b.cost); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.n.Name, b.n.Name)
	})
	out := make([]*Node, len(cs))
	for i := range cs {
		out[i] = cs[i].n
	}
	return out
}

// lifetimeRemaining is the fraction of the node's expireAfter still ahead
// of it, in [0, 1]; 1 when it never expires (Karpenter's LifetimeRemaining).
func (p *planner) lifetimeRemaining(pool *Pool, n *Node) float64 {
	if pool.ExpireAfter == nil || *pool.ExpireAfter <= 0 {
		return 1
	}
	total := pool.ExpireAfter.Seconds()
	left := total - p.now.Sub(n.Created).Seconds()
	return min(max(left/total, 0), 1)
}
