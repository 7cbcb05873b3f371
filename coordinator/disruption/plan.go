package disruption

import (
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// Options tune the planners. Zero values take the defaults below.
type Options struct {
	// RepairToleration is how long a health condition may stay bad before the
	// node is replaced (30m; AcceleratorRepairToleration for GPU/Neuron nodes, 10m).
	RepairToleration            time.Duration
	AcceleratorRepairToleration time.Duration
	// RepairMaxPercent bounds concurrent repairs per NodePool (20); a pool
	// may always repair one node even when the percentage rounds to zero.
	RepairMaxPercent int
	// MinSpotFlexibility is how many cheaper spot types a spot-to-spot
	// replacement must be able to choose from (Karpenter: 15).
	MinSpotFlexibility int
	// MaxLaunchOptions caps the options handed to a replacement launch (60).
	MaxLaunchOptions int
	// MultiNodeMax bounds how many nodes one multi-node consolidation takes (100).
	MultiNodeMax int
	// RolloutReadyTimeout: a replacement not Ready by then halts the rollout (15m).
	RolloutReadyTimeout time.Duration
	// SurgeTimeout: a moved pod that is still not Ready after this long no
	// longer holds the next rollout step back (10m).
	SurgeTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.RepairToleration == 0 {
		o.RepairToleration = 30 * time.Minute
	}
	if o.AcceleratorRepairToleration == 0 {
		o.AcceleratorRepairToleration = 10 * time.Minute
	}
	if o.RepairMaxPercent == 0 {
		o.RepairMaxPercent = 20
	}
	if o.MinSpotFlexibility == 0 {
		o.MinSpotFlexibility = 15
	}
	if o.MaxLaunchOptions == 0 {
		o.MaxLaunchOptions = 60
	}
	if o.MultiNodeMax == 0 {
		o.MultiNodeMax = 100
	}
	if o.RolloutReadyTimeout == 0 {
		o.RolloutReadyTimeout = 15 * time.Minute
	}
	if o.SurgeTimeout == 0 {
		o.SurgeTimeout = 10 * time.Minute
	}
	return o
}

// Replacement describes the one new instance that takes over the pods of
// the disrupted node(s).
type Replacement struct {
	Pool      string               `json:"pool"`
	NodeClass string               `json:"nodeClass,omitempty"`
	Options   []cloud.LaunchOption `json:"options"` // cheapest first
	Price     float64              `json:"price"`   // of the cheapest option
	Requests  Resources            `json:"requests"`
	// SameAs asks for a node like this one (interruption, repair, drift,
	// expiry): the provisioner picks options with the pool's rules.
	SameAs string `json:"sameAs,omitempty"`
	// Avoid are offerings the replacement must not use (a rebalance
	// recommendation's instance type and zone: that capacity pool is the
	// one at risk).
	Avoid []cloud.UnavailableOffering `json:"avoid,omitempty"`
}

// Decision is one disruption the controller should carry out.
type Decision struct {
	Reason Reason   `json:"reason"`
	Pool   string   `json:"pool"`
	Nodes  []string `json:"nodes"`
	// NodeClaims are the NodeClaims of Nodes, in the same order.
	NodeClaims []string `json:"nodeClaims"`
	// Replacement is nil when the pods fit on the remaining nodes.
	Replacement *Replacement `json:"replacement,omitempty"`
	// Forceful decisions are not blocked by budgets (but counted).
	Forceful bool `json:"forceful,omitempty"`
	// Budget is the budget entry the decision counted against.
	Budget string `json:"budget,omitempty"`
	// DrainUntil is when the drain ends and the node goes with whatever is
	// left on it: the interruption's own deadline, or decision time plus the
	// NodePool's terminationGracePeriod. An absolute time, computed once by
	// the planner (a resumed disruption uses its ledger entry's start);
	// zero: no terminationGracePeriod, the drain gives up at the
	// controller's MaxDrain and the node stays.
	DrainUntil time.Time `json:"drainUntil,omitzero"`
	// DrainBy says who evicts the pods. DrainByAgent: the node's agent
	// already drains it (a spot notice: the agent read it from IMDS, cordoned
	// and reported it, and drains toward the same deadline), so the
	// executor only waits for that drain to end; empty: the executor drains.
	DrainBy string `json:"drainBy,omitempty"`
	// Savings is the $/hour saved (consolidation).
	Savings float64 `json:"savings,omitempty"`
	// Approved is, for a consolidation a Balanced pool scored and took,
	// the score against the threshold (Karpenter's ConsolidationApproved).
	Approved string `json:"approved,omitempty"`
	Message  string `json:"message"`
}

// Skip codes: why a candidate was not disrupted.
const (
	SkipInitializing     = "Initializing"
	SkipAlreadyDisrupted = "AlreadyDisrupting"
	SkipDoNotDisruptNode = "DoNotDisruptNode"
	SkipDoNotDisruptPod  = "DoNotDisruptPod"
	SkipPDB              = "PDB"
	SkipBudget           = "Budget"
	SkipConsolidateAfter = "ConsolidateAfter"
	SkipPolicy           = "ConsolidationPolicy"
	// SkipBalanced: a Balanced pool judged the saving not worth the disruption.
	SkipBalanced        = "BalancedScore"
	SkipDisabled        = "ConsolidationDisabled"
	SkipNoCheaperFit    = "NoCheaperFit"
	SkipMinSavings      = "MinSavings"
	SkipSpotFlexibility = "SpotFlexibility"
	SkipRepairLimit     = "RepairLimit"
	SkipRolloutHalted   = "RolloutHalted"
	SkipSurge           = "WaitingForMovedPods"
	SkipUnknownPool     = "UnknownNodePool"
	SkipReceivingPods   = "ReceivingPods"
	// SkipStatic: nodes of static pools (spec.replicas) are never consolidated.
	SkipStatic = "StaticNodePool"
)

// Skip records why a node was not disrupted by one method.
type Skip struct {
	Node    string `json:"node"`
	Pool    string `json:"pool,omitempty"`
	Method  Reason `json:"method"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Plan is the outcome of one planning pass.
type Plan struct {
	At        time.Time     `json:"at"`
	Decisions []Decision    `json:"decisions"`
	Skipped   []Skip        `json:"skipped,omitempty"`
	Commands  []fsm.Command `json:"-"`
	// Rollouts is the rollout state after this pass, by NodePool.
	Rollouts map[string]fsm.Rollout `json:"rollouts,omitempty"`
	// DeleteClaims are static pools' NodeClaims without an instance yet
	// that a scale-down removes at once (nothing to drain).
	DeleteClaims []ClaimDeletion `json:"deleteClaims,omitempty"`
	// Eligible counts, by voluntary method (Drifted, Empty, Underutilized),
	// the nodes that were candidates in this pass: decided, or passed over
	// only for a reason found after candidacy (budget, no cheaper fit,
	// savings ...), as Karpenter's karpenter_voluntary_disruption_eligible_nodes.
	Eligible map[Reason]int `json:"-"`
	// AllowedDisruptions is, by NodePool and voluntary method, how many
	// nodes the pool's budgets allow disrupting at once (budget.Unlimited
	// when none is active), as karpenter_nodepools_allowed_disruptions.
	AllowedDisruptions map[string]map[Reason]int `json:"-"`
	// ConsumingBudgets is, by NodePool, how many of its nodes were already
	// disrupting when the pass began (NotReady, deleting or in the ledger:
	// what the budgets count against), as
	// karpenter_nodepools_nodes_consuming_budgets.
	ConsumingBudgets map[string]int `json:"-"`
}

// VoluntaryMethods are the methods a budget can name, for which Karpenter
// reports eligible nodes and allowed disruptions.
var VoluntaryMethods = []Reason{ReasonDrifted, ReasonEmpty, ReasonUnderutilized}

// afterCandidacy are the skip codes given to a node that was a candidate
// for a method (Karpenter's GetCandidates would have returned it) and was
// then passed over; the other codes keep a node from being a candidate.
var afterCandidacy = map[string]bool{
	SkipBudget: true, SkipBalanced: true, SkipNoCheaperFit: true, SkipMinSavings: true,
	SkipSpotFlexibility: true, SkipReceivingPods: true, SkipRolloutHalted: true, SkipSurge: true,
}

// tally fills Eligible and AllowedDisruptions once the methods have run.
func (p *planner) tally() {
	cands := map[Reason]map[string]bool{}
	for _, r := range VoluntaryMethods {
		cands[r] = map[string]bool{}
	}
	for _, d := range p.plan.Decisions {
		if c, ok := cands[d.Reason]; ok {
			for _, n := range d.Nodes {
				c[n] = true
			}
		}
	}
	for _, sk := range p.plan.Skipped {
		if c, ok := cands[sk.Method]; ok && afterCandidacy[sk.Code] {
			c[sk.Node] = true
		}
	}
	p.plan.Eligible = make(map[Reason]int, len(cands))
	for r, c := range cands {
		p.plan.Eligible[r] = len(c)
	}
	p.plan.AllowedDisruptions = make(map[string]map[Reason]int, len(p.s.Pools))
	p.plan.ConsumingBudgets = make(map[string]int, len(p.s.Pools))
	for i := range p.s.Pools {
		pool := &p.s.Pools[i]
		m := make(map[Reason]int, len(VoluntaryMethods))
		for _, r := range VoluntaryMethods {
			// The budget's own count, before the nodes already disrupting
			// are taken off (Karpenter's MustGetAllowedDisruptions).
			m[r] = budget.Evaluate(pool.Budgets, r, p.poolTotal[pool.Name], 0, p.now).Max
		}
		p.plan.AllowedDisruptions[pool.Name] = m
		p.plan.ConsumingBudgets[pool.Name] = p.startDisrupting[pool.Name]
	}
}

// ClaimDeletion is one NodeClaim a static scale-down deletes directly.
type ClaimDeletion struct {
	NodeClaim string `json:"nodeClaim"`
	Pool      string `json:"pool"`
	Message   string `json:"message"`
}

// planner carries the per-pass indexes.
type planner struct {
	s       *Snapshot
	now     time.Time
	o       Options
	pools   map[string]*Pool
	classes map[string]*NodeClass
	byPool  map[string][]*Node
	// taken marks nodes already decided in this pass or in the ledger.
	taken map[string]bool
	// poolTotal and poolDisrupting feed the budgets; planned counts this pass.
	poolTotal      map[string]int
	poolDisrupting map[string]int
	// startDisrupting is poolDisrupting before this pass decided anything.
	startDisrupting map[string]int
	maxCache        map[string]budget.Limit
	plan            *Plan
	skipped         map[string]bool // node+method already has a skip
	offerCache      map[string][]offer
}

// Decide decides, for the snapshot at now, which nodes to disrupt and why
// every other candidate is left alone. It never performs I/O.
func Decide(s *Snapshot, now time.Time, o Options) Plan {
	p := newPlanner(s, now, o)
	p.interruptions()
	p.repairs()
	p.staticScaleDown()
	p.rebalances()
	p.expiry()
	p.drift()
	p.consolidate()
	p.tally()
	sort.SliceStable(p.plan.Skipped, func(i, j int) bool {
		a, b := p.plan.Skipped[i], p.plan.Skipped[j]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Method < b.Method
	})
	return *p.plan
}

func newPlanner(s *Snapshot, now time.Time, o Options) *planner {
	p := &planner{
		s: s, now: now, o: o.withDefaults(),
		pools:          map[string]*Pool{},
		classes:        map[string]*NodeClass{},
		byPool:         map[string][]*Node{},
		taken:          map[string]bool{},
		poolTotal:      map[string]int{},
		poolDisrupting: map[string]int{},
		maxCache:       map[string]budget.Limit{},
		plan:           &Plan{At: now, Rollouts: map[string]fsm.Rollout{}},
		skipped:        map[string]bool{},
	}
	for i := range s.Pools {
		p.pools[s.Pools[i].Name] = &s.Pools[i]
	}
	for i := range s.NodeClasses {
		p.classes[s.NodeClasses[i].Name] = &s.NodeClasses[i]
	}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if n.Pool == "" {
			continue // not ours
		}
		p.byPool[n.Pool] = append(p.byPool[n.Pool], n)
		_, inLedger := s.Ledger[n.Name]
		if n.Deleting || inLedger {
			p.taken[n.Name] = true
		}
		// Karpenter's budget arithmetic: initialized nodes count towards the
		// total; NotReady or deleting ones (and, here, ones in the ledger)
		// count as already disrupting.
		if n.Initialized {
			p.poolTotal[n.Pool]++
			if !n.Ready || n.Deleting || inLedger {
				p.poolDisrupting[n.Pool]++
			}
		}
	}
	p.startDisrupting = maps.Clone(p.poolDisrupting)
	return p
}

// allowance returns how many more nodes of pool may be disrupted for reason
// in this pass, and the budget that sets it.
func (p *planner) allowance(pool *Pool, reason Reason) (int, budget.Limit) {
	key := pool.Name + "\x00" + string(reason)
	lim, ok := p.maxCache[key]
	if !ok {
		lim = budget.Evaluate(pool.Budgets, reason, p.poolTotal[pool.Name], 0, p.now)
		p.maxCache[key] = lim
	}
	if lim.Max == budget.Unlimited {
		return budget.Unlimited, lim
	}
	return max(lim.Max-p.poolDisrupting[pool.Name], 0), lim
}

func (p *planner) skip(n *Node, method Reason, code, format string, args ...any) {
	key := n.Name + "\x00" + string(method)
	if p.skipped[key] {
		return
	}
	p.skipped[key] = true
	p.plan.Skipped = append(p.plan.Skipped, Skip{Node: n.Name, Pool: n.Pool, Method: method, Code: code, Message: fmt.Sprintf(format, args...)})
}

func (p *planner) decide(d Decision) {
	for _, name := range d.Nodes {
		p.taken[name] = true
	}
	p.poolDisrupting[d.Pool] += len(d.Nodes)
	p.plan.Decisions = append(p.plan.Decisions, d)
}

// blocked reports why a node may not be disrupted gracefully, or "".
func blocked(n *Node, taken bool) (code, msg string) {
	switch {
	case taken:
		return SkipAlreadyDisrupted, "node is already being disrupted"
	case !n.Initialized:
		return SkipInitializing, "node is still initializing"
	case n.Annotations[AnnotationDoNotDisrupt] == "true":
		return SkipDoNotDisruptNode, "node is annotated " + AnnotationDoNotDisrupt + "=true"
	}
	for i := range n.Pods {
		pod := &n.Pods[i]
		if pod.DoNotDisrupt {
			return SkipDoNotDisruptPod, "pod " + pod.Key() + " is annotated " + AnnotationDoNotDisrupt + "=true"
		}
	}
	for i := range n.Pods {
		pod := &n.Pods[i]
		if pod.BlockingPDB != "" && !pod.Stays {
			return SkipPDB, "PodDisruptionBudget " + pod.BlockingPDB + " allows no eviction of pod " + pod.Key()
		}
	}
	return "", ""
}

// DrainByAgent is Decision.DrainBy when the node's own agent drains it.
const DrainByAgent = "agent"

// drainUntil is from + the pool's terminationGracePeriod, or zero when the
// pool has none.
func drainUntil(pool *Pool, from time.Time) time.Time {
	if pool == nil || pool.TerminationGracePeriod == nil {
		return time.Time{}
	}
	return from.Add(*pool.TerminationGracePeriod)
}

func sameAs(n *Node, pool *Pool) *Replacement {
	r := &Replacement{Pool: n.Pool, SameAs: n.Name, Requests: movingRequests(n)}
	if pool != nil {
		r.NodeClass = pool.NodeClass
	}
	return r
}

// movingRequests sums the requests of the pods that must move elsewhere.
func movingRequests(n *Node) Resources {
	var r Resources
	for i := range n.Pods {
		if !n.Pods[i].Stays {
			r = r.Add(n.Pods[i].Requests)
		}
	}
	return r
}

// sortedNodes returns the pool's nodes ordered by name for stable output.
func (p *planner) sortedPools() []*Pool {
	out := make([]*Pool, 0, len(p.pools))
	for _, pl := range p.pools {
		out = append(out, pl)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
