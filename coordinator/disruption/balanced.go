package disruption

import "fmt"

// Balanced is Karpenter v1.14's consolidation policy that consolidates like
// WhenEmptyOrUnderutilized but only takes a move whose saving is worth its
// disruption. A move's score is
//
//	(savings / pool cost) / (move disruption / pool disruption)
//
// and it is taken when the score is at least 1/k, k = 2: a move may disrupt
// up to twice the pool's share of disruption that it saves in cost. A
// node's disruption cost is 1 plus 1 per pod that must move (Karpenter adds
// each pod's eviction cost, 1 for a pod without a deletion-cost annotation
// or priority; Dovetail does not read those, see the README). Empty nodes
// are not scored (Karpenter's emptiness path is not either); every node of
// the pool counts in the denominators, not only the candidates.
const (
	Balanced  = "Balanced"
	balancedK = 2
)

// nodeDisruptionCost is the node's share of its pool's disruption cost.
func nodeDisruptionCost(n *Node) float64 {
	return 1 + float64(movingRequests(n).Pods)
}

// balancedMove scores deleting or replacing the nodes of a pool (savings
// in USD/h); ok reports whether the move passes the threshold 1/k.
// For a scored move that passes, approved is Karpenter's
// ConsolidationApproved wording ("" when not scored).
func (p *planner) balancedMove(pool *Pool, nodes []*Node, savings float64) (score float64, ok bool, approved string) {
	var totalCost, totalDisruption, moveDisruption float64
	for _, n := range p.byPool[pool.Name] {
		totalCost += n.Price
		totalDisruption += nodeDisruptionCost(n)
	}
	for _, n := range nodes {
		moveDisruption += nodeDisruptionCost(n)
	}
	switch {
	case totalCost <= 0 || totalDisruption <= 0:
		return 0, true, "" // nothing to normalise against (Karpenter approves)
	case savings <= 0:
		return 0, false, ""
	case moveDisruption == 0:
		return 1e9, true, ""
	}
	score = (savings / totalCost) / (moveDisruption / totalDisruption)
	ok = score >= 1.0/balancedK
	if ok {
		approved = fmt.Sprintf("score %.2f >= threshold %.2f (k: %d, savings %.1f%%, disruption %.1f%%)",
			score, 1.0/balancedK, balancedK, 100*savings/totalCost, 100*moveDisruption/totalDisruption)
	}
	return score, ok, approved
}

// balancedVerdict reports why a Balanced pool refuses the move ("" when it
// takes it, or the pool is not Balanced) and, for a scored move it takes,
// the ConsolidationApproved message (Decision.Approved).
func (p *planner) balancedVerdict(pool *Pool, nodes []*Node, savings float64) (rejected, approved string) {
	if pool.ConsolidationPolicy != Balanced {
		return "", ""
	}
	score, ok, approved := p.balancedMove(pool, nodes, savings)
	if ok {
		return "", approved
	}
	return fmt.Sprintf("consolidationPolicy Balanced: saving $%.4f/h scores %.2f, below the threshold %.2f (saving share / disruption share, k=%d)",
		savings, score, 1.0/balancedK, balancedK), ""
}
