package disruption

import (
	"fmt"
	"sort"
	"time"

	"github.com/dovetail-dev/dovetail/report"
)

// interruptions: a spot interruption or scheduled maintenance gets a
// replacement at once so the pods have somewhere to go before the deadline.
// Budgets never block this; the node is counted. Rebalance recommendations
// are voluntary and planned by rebalances().
func (p *planner) interruptions() {
	for i := range p.s.Nodes {
		n := &p.s.Nodes[i]
		if n.Pool == "" || n.Interruption == nil || n.Interruption.Kind == string(report.KindRebalance) || p.taken[n.Name] {
			continue
		}
		pool := p.pools[n.Pool]
		msg := fmt.Sprintf("%s notice seen %s", n.Interruption.Kind, n.Interruption.Seen.UTC().Format(time.RFC3339))
		if !n.Interruption.Deadline.IsZero() {
			msg += fmt.Sprintf(", deadline %s", n.Interruption.Deadline.UTC().Format(time.RFC3339))
		}
		until, by := interruptionDrain(n, pool, p.now)
		p.decide(Decision{
			Reason: ReasonInterrupted, Pool: n.Pool, Nodes: []string{n.Name}, NodeClaims: []string{n.NodeClaim},
			Replacement: sameAs(n, pool), Forceful: true, Budget: "forceful (counted, not blocked)",
			DrainUntil: until, DrainBy: by, Message: msg,
		})
	}
}

// SpotNoticeLead is how long a spot notice gives (EC2's two minutes); the
// deadline of a notice that names none, as the agent assumes too.
const SpotNoticeLead = 2 * time.Minute

// interruptionDrain is who drains an interrupted node and until when. A
// spot interruption is drained by the node's agent: it read the notice from
// IMDS itself, reports it only once it has cordoned the node, and drains
// toward the notice's deadline without needing a leader, so a coordinator
// drain would only repeat its evictions and Events; the instance is gone at
// that deadline whatever anyone does. Scheduled maintenance leaves the agent
// idle until shortly before the event, so the executor drains it, after the
// replacement is Ready, within the pool's terminationGracePeriod but never
// past the event itself (the instance stops, reboots or retires then).
func interruptionDrain(n *Node, pool *Pool, now time.Time) (time.Time, string) {
	dl := n.Interruption.Deadline
	if n.Interruption.Kind == string(report.KindInterruption) {
		if dl.IsZero() {
			dl = n.Interruption.Seen.Add(SpotNoticeLead)
		}
		return dl, DrainByAgent
	}
	until := drainUntil(pool, now)
	if !dl.IsZero() && (until.IsZero() || dl.Before(until)) {
		until = dl
	}
	return until, ""
}

// repairs: nodes whose health stays bad past their toleration are
// replaced, at most RepairMaxPercent of a pool at once (rounded down), but
// always at least one. Budgets do not block repair; it is counted.
func (p *planner) repairs() {
	inFlight := map[string]int{}
	for _, d := range p.s.Ledger {
		if d.Reason == string(ReasonUnhealthy) {
			inFlight[d.NodePool]++
		}
	}
	type cand struct {
		n     *Node
		since time.Time
		why   string
	}
	byPool := map[string][]cand{}
	for i := range p.s.Nodes {
		n := &p.s.Nodes[i]
		if n.Pool == "" || p.taken[n.Name] {
			continue
		}
		switch {
		case n.ReplaceRequested:
			byPool[n.Pool] = append(byPool[n.Pool], cand{n, p.now, "agent self-repair gave up and asked for a replacement"})
		case n.Unhealthy != nil:
			tol := p.o.RepairToleration
			if n.Accelerated {
				tol = p.o.AcceleratorRepairToleration
			}
			bad := p.now.Sub(n.Unhealthy.Since)
			if bad < tol {
				p.skip(n, ReasonUnhealthy, "RepairToleration", "condition %s bad for %s, toleration %s", n.Unhealthy.Condition, bad.Round(time.Second), tol)
				continue
			}
			byPool[n.Pool] = append(byPool[n.Pool], cand{n, n.Unhealthy.Since,
				fmt.Sprintf("condition %s bad since %s (%s, toleration %s)", n.Unhealthy.Condition, n.Unhealthy.Since.UTC().Format(time.RFC3339), bad.Round(time.Second), tol)})
		}
	}
	for _, pool := range p.sortedPools() {
		cs := byPool[pool.Name]
		if len(cs) == 0 {
			continue
		}
		// Longest-broken first.
		sort.SliceStable(cs, func(i, j int) bool {
			if !cs[i].since.Equal(cs[j].since) {
				return cs[i].since.Before(cs[j].since)
			}
			return cs[i].n.Name < cs[j].n.Name
		})
		limit := RepairLimit(len(p.byPool[pool.Name]), p.o.RepairMaxPercent)
		left := limit - inFlight[pool.Name]
		for _, c := range cs {
			if left <= 0 {
				p.skip(c.n, ReasonUnhealthy, SkipRepairLimit, "%s; repair limit reached: %d of %d nodes may be repaired at once (%d%%, at least 1), %d in flight",
					c.why, limit, len(p.byPool[pool.Name]), p.o.RepairMaxPercent, inFlight[pool.Name])
				continue
			}
			left--
			inFlight[pool.Name]++
			p.decide(Decision{
				Reason: ReasonUnhealthy, Pool: pool.Name, Nodes: []string{c.n.Name}, NodeClaims: []string{c.n.NodeClaim},
				Replacement: sameAs(c.n, pool), Forceful: true, Budget: "repair limit",
				DrainUntil: drainUntil(pool, p.now), Message: c.why,
			})
		}
	}
}

// RepairLimit is how many nodes of a pool of total nodes may be under repair
// at once: percent of them rounded down, but never less than one so a small
// pool can always heal.
func RepairLimit(total, percent int) int {
	return max(total*percent/100, 1)
}

// expiry: nodes older than expireAfter are replaced. Until
// terminationGracePeriod has also passed, this is a voluntary disruption
// inside the budgets (under the reason-less budgets, as in Karpenter, where
// Expired cannot be named); past it, it is forceful.
func (p *planner) expiry() {
	for _, pool := range p.sortedPools() {
		if pool.ExpireAfter == nil {
			continue
		}
		nodes := append([]*Node(nil), p.byPool[pool.Name]...)
		sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Created.Before(nodes[j].Created) })
		for _, n := range nodes {
			age := p.now.Sub(n.Created)
			if age < *pool.ExpireAfter || p.taken[n.Name] {
				continue
			}
			msg := fmt.Sprintf("node is %s old, expireAfter %s", age.Round(time.Second), *pool.ExpireAfter)
			if tgp := pool.TerminationGracePeriod; tgp != nil && age >= *pool.ExpireAfter+*tgp {
				p.decide(Decision{Reason: ReasonExpired, Pool: pool.Name, Nodes: []string{n.Name}, NodeClaims: []string{n.NodeClaim},
					Replacement: sameAs(n, pool), Forceful: true, Budget: "forceful (expired past terminationGracePeriod)",
					DrainUntil: drainUntil(pool, p.now), Message: msg + fmt.Sprintf(" and terminationGracePeriod %s has passed", *tgp)})
				continue
			}
			if code, why := blocked(n, false); code != "" {
				p.skip(n, ReasonExpired, code, "expired (%s) but %s", msg, why)
				continue
			}
			allowed, lim := p.allowance(pool, ReasonExpired)
			if allowed <= 0 {
				p.skip(n, ReasonExpired, SkipBudget, "expired (%s) but blocked by %s (%d of %d nodes already disrupting)", msg, lim.Budget, p.poolDisrupting[pool.Name], lim.Max)
				continue
			}
			p.decide(Decision{Reason: ReasonExpired, Pool: pool.Name, Nodes: []string{n.Name}, NodeClaims: []string{n.NodeClaim},
				Replacement: sameAs(n, pool), Budget: lim.Budget, DrainUntil: drainUntil(pool, p.now), Message: msg})
		}
	}
}
