package disruption

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/coordinator/karpentermetrics"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
	"github.com/dovetail-dev/dovetail/drain"
	"github.com/dovetail-dev/dovetail/report"
)

// The controller is the thin applier: it takes the planner's decisions and
// carries each out on one path — commit the intent to the ledger, launch
// the replacement first, wait for it to be Ready, drain (taint + evict
// within the deadline), delete the NodeClaim (the launcher's finalizer
// terminates the instance), close the ledger entry. Voluntary decisions are
// planned again after ValidationDelay and only those still chosen go ahead.
// A new leader resumes every ledger entry from its recorded phase.

// Ledger phases recorded in fsm.Disruption.Phase.
const (
	PhaseReplacing           = "Replacing"
	PhaseDraining            = "Draining"
	PhaseTerminating         = "Terminating"
	PhaseReplacementNotReady = "ReplacementNotReady"
)

// SnapshotSource builds a fresh snapshot from the informers and the Raft
// state (ledger, rollouts, agent reports). The coordinator implements it.
type SnapshotSource interface {
	Snapshot(ctx context.Context) (*Snapshot, error)
}

// Ledger commits commands through Raft (leader only).
type Ledger interface {
	Apply(ctx context.Context, cmd fsm.Command) error
}

// Launcher is what the coordinator's launcher offers the disruption path.
type Launcher interface {
	// Launch creates (idempotently, by key) a NodeClaim for r, commits the
	// launch intent and starts the instance; it returns the NodeClaim name.
	Launch(ctx context.Context, key string, r Replacement) (nodeClaim string, err error)
	// Ready reports whether the NodeClaim's node is Ready and initialized.
	Ready(ctx context.Context, nodeClaim string) (bool, error)
	// Delete deletes the NodeClaim; its finalizer terminates the instance.
	Delete(ctx context.Context, nodeClaim string) error
}

// Drainer drains a node (package drain's *Drainer satisfies it).
type Drainer interface {
	Drain(ctx context.Context, node string, deadline time.Time, reason string) (drain.Result, error)
	// MarkDisrupted taints a node another party drains (its agent) as a
	// drain would.
	MarkDisrupted(ctx context.Context, node, reason string) error
}

// Events records Kubernetes Events (eventType Normal or Warning) on the
// objects Karpenter records them on: Nodes, NodeClaims and NodePools.
type Events interface {
	NodeEvent(ctx context.Context, node, eventType, reason, message string)
	NodeClaimEvent(ctx context.Context, nodeClaim, eventType, reason, message string)
	NodePoolEvent(ctx context.Context, nodePool, eventType, reason, message string)
}

// Verifier optionally double-checks a decision with the full scheduling
// simulation (affinity, topology spread, volumes) before it is executed;
// a non-nil error drops the decision and becomes its skip reason.
type Verifier interface {
	Verify(ctx context.Context, s *Snapshot, d Decision) error
}

// Config configures the controller.
type Config struct {
	Interval time.Duration // between planning passes (10s)
	// ValidationDelay is how long the planner must keep choosing a voluntary
	// decision before it is executed (15s, Karpenter's consolidation
	// validation); negative means none.
	ValidationDelay time.Duration
	// ReplacementTimeout bounds the wait for a replacement to be Ready (15m).
	ReplacementTimeout time.Duration
	// PollInterval is how often replacement readiness is polled (2s).
	PollInterval time.Duration
	// MaxDrain bounds a drain when the NodePool has no
	// terminationGracePeriod (1h); a drain that does not complete in it is
	// given up and the node restored (uncordoned by the next pass's drain).
	MaxDrain time.Duration
	// AgentDrainDone reports whether the node's agent has reported the end
	// of its drain for the node's current spot notice (Decision.DrainBy
	// DrainByAgent). nil: never, the executor waits for the deadline.
	AgentDrainDone func(node string) bool
	// Wake, when set, makes Run plan at once rather than at the next
	// interval (a committed agent report changed a node's state: a spot
	// notice gets its replacement without waiting up to Interval).
	Wake <-chan struct{}
	// ObservePass, when set, is called as each pass of Run begins; the
	// function it returns gets the pass's error (reconcile metrics).
	ObservePass func() (end func(error))
	Planner     Options
	Registry    prometheus.Registerer
	Log         *slog.Logger
	Now         func() time.Time
}

// Controller runs disruption while this replica leads.
type Controller struct {
	cfg      Config
	src      SnapshotSource
	ledger   Ledger
	launcher Launcher
	drainer  Drainer
	events   Events
	verifier Verifier
	log      *slog.Logger
	m        *metrics

	mu       sync.Mutex
	latest   *Plan
	snap     *Snapshot
	inflight map[string]bool // node names being executed here
	// announced: node|since of disruptions whose start Events were sent.
	announced map[string]bool
	lastSkip  map[string]string // node+method -> code, to emit Events on change only
	// lastNotice is, by node, the agent notice last announced with an
	// Event, so each notice is announced once per term.
	lastNotice map[string]string
	pending    []pendingDecision // voluntary decisions waiting out ValidationDelay
	wg         sync.WaitGroup
}

// NewController wires a controller. verifier may be nil.
func NewController(cfg Config, src SnapshotSource, ledger Ledger, launcher Launcher, drainer Drainer, events Events, verifier Verifier) (*Controller, error) {
	if src == nil || ledger == nil || launcher == nil || drainer == nil || events == nil {
		return nil, errors.New("disruption controller: snapshot source, ledger, launcher, drainer and events are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.ValidationDelay < 0 {
		cfg.ValidationDelay = 0
	} else if cfg.ValidationDelay == 0 {
		cfg.ValidationDelay = 15 * time.Second
	}
	if cfg.ReplacementTimeout <= 0 {
		cfg.ReplacementTimeout = 15 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.MaxDrain <= 0 {
		cfg.MaxDrain = time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg, src: src, ledger: ledger, launcher: launcher, drainer: drainer, events: events, verifier: verifier,
		log: cfg.Log.With("component", "disruption"), m: m, inflight: map[string]bool{}, announced: map[string]bool{}, lastSkip: map[string]string{}, lastNotice: map[string]string{}}, nil
}

// LatestPlan implements ExplainSource.
func (c *Controller) LatestPlan() (*Plan, *Snapshot, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest, c.snap, c.latest != nil
}

// Run plans and executes until ctx ends (leadership lost); it implements
// the leader loop's Component. It waits for its executions to stop.
func (c *Controller) Run(ctx context.Context, term uint64) error {
	log := c.log.With("term", term)
	log.Info("disruption controller started")
	c.mu.Lock()
	c.pending = nil // decisions of an earlier term are planned afresh
	c.mu.Unlock()
	defer func() {
		c.wg.Wait()
		// A follower has no current plan: explain answers 503, not stale data.
		c.mu.Lock()
		c.latest, c.snap = nil, nil
		c.mu.Unlock()
	}()
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		end := func(error) {}
		if c.cfg.ObservePass != nil {
			end = c.cfg.ObservePass()
		}
		err := c.Pass(ctx)
		end(err)
		if err != nil && ctx.Err() == nil {
			log.Warn("disruption pass failed; retrying next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.cfg.Wake: // nil: never
			log.Debug("agent report changed a node's state: planning now")
		}
	}
}

// Pass runs one planning pass: resume orphaned ledger entries, commit
// rollout state, start forceful decisions at once and voluntary ones after
// validation. Executions run in the background; Wait waits for them.
func (c *Controller) Pass(ctx context.Context) error {
	snap, err := c.src.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	c.resumeLedger(ctx, snap)
	start := time.Now()
	plan := Decide(snap, c.cfg.Now(), c.cfg.Planner)
	c.m.planSeconds.Observe(time.Since(start).Seconds())
	c.m.observePlan(plan)
	c.mu.Lock()
	c.latest, c.snap = &plan, snap
	c.mu.Unlock()
	for _, cmd := range plan.Commands {
		if err := c.ledger.Apply(ctx, cmd); err != nil {
			return fmt.Errorf("commit rollout state: %w", err)
		}
	}
	c.emitNotices(ctx, snap, plan)
	c.emitSkips(ctx, snap, plan)
	c.observeRollouts(plan, snap.Pools)
	c.deleteClaims(ctx, plan.DeleteClaims)
	var voluntary []Decision
	for _, d := range plan.Decisions {
		if c.busy(d) {
			continue
		}
		// A static scale-down is the user's request (kubectl scale): no
		// validation wait, as Karpenter deletes the surplus at once. A
		// rebalance recommendation does not depend on how pods pack (the
		// validation's question) and its value is in the minutes it gains.
		if d.Forceful || d.Reason == ReasonOverprovisioned || d.Reason == ReasonRebalance {
			c.start(ctx, snap, d)
			continue
		}
		voluntary = append(voluntary, d)
	}
	c.validate(ctx, snap, plan, voluntary)
	return nil
}

// deleteClaims removes static pools' surplus NodeClaims that have no
// instance yet; the launcher's finalizer cancels or terminates the launch.
func (c *Controller) deleteClaims(ctx context.Context, ds []ClaimDeletion) {
	for _, d := range ds {
		if err := c.launcher.Delete(ctx, d.NodeClaim); err != nil {
			c.log.Warn("static scale-down: delete NodeClaim", "nodeClaim", d.NodeClaim, "err", err)
			continue
		}
		c.m.decisions.WithLabelValues(string(ReasonOverprovisioned)).Inc()
		c.log.Info("static scale-down: deleted NodeClaim", "nodeClaim", d.NodeClaim, "nodePool", d.Pool, "why", d.Message)
	}
}

// pendingDecision is a voluntary decision waiting out the validation delay.
type pendingDecision struct {
	d         Decision
	firstSeen time.Time
}

// validate runs voluntary decisions that the planner has kept choosing for
// at least ValidationDelay (the cluster may have changed in between), and
// forgets those it no longer chooses. It never blocks the pass, so forceful
// work (a 2-minute spot notice) is never held up behind a validation wait.
func (c *Controller) validate(ctx context.Context, snap *Snapshot, plan Plan, voluntary []Decision) {
	now := c.cfg.Now()
	var kept []pendingDecision
	var ready []Decision
	for _, pd := range c.pending {
		if !stillChosen(pd.d, plan) {
			c.m.invalidate(pd.d)
			c.log.Info("decision dropped at validation: no longer chosen", "reason", pd.d.Reason, "nodes", pd.d.Nodes)
			c.consolidationEvent(ctx, pd.d, karpenterevents.ConsolidationRejected,
				fmt.Sprintf("the plan %s later no longer chose it (the cluster changed)", c.cfg.ValidationDelay))
			continue
		}
		if now.Sub(pd.firstSeen) >= c.cfg.ValidationDelay {
			ready = append(ready, pd.d)
			continue
		}
		kept = append(kept, pd)
	}
	for _, d := range voluntary {
		known := false
		for _, pd := range c.pending {
			if stillChosen(pd.d, Plan{Decisions: []Decision{d}}) {
				known = true
				break
			}
		}
		if known {
			continue
		}
		c.consolidationEvent(ctx, d, karpenterevents.ConsolidationCandidate, "")
		c.approvedEvent(ctx, d)
		if c.cfg.ValidationDelay <= 0 {
			ready = append(ready, d)
			continue
		}
		kept = append(kept, pendingDecision{d: d, firstSeen: now})
	}
	c.pending = kept
	for _, d := range ready {
		if c.busy(d) {
			continue
		}
		if c.verifier != nil {
			if err := c.verifier.Verify(ctx, snap, d); err != nil {
				c.m.invalidate(d)
				if isConsolidation(d.Reason) {
					c.consolidationEvent(ctx, d, karpenterevents.ConsolidationRejected, "scheduling simulation refused: "+err.Error())
					continue
				}
				for _, n := range d.Nodes {
					c.events.NodeEvent(ctx, n, "Normal", karpenterevents.DisruptionBlocked, fmt.Sprintf("%s: scheduling simulation refused: %v", d.Reason, err))
				}
				continue
			}
		}
		// Take the latest plan's version of the decision (fresh launch
		// options) when it is the same set of nodes.
		for _, e := range plan.Decisions {
			if e.Reason == d.Reason && sameNodes(e.Nodes, d.Nodes) {
				d = e
				break
			}
		}
		c.start(ctx, snap, d)
	}
}

func isConsolidation(r Reason) bool { return r == ReasonEmpty || r == ReasonUnderutilized }

// consolidationEvent records Karpenter's ConsolidationCandidate (why == "")
// or ConsolidationRejected Event on each candidate's Node and NodeClaim,
// with Karpenter's message layout: the command, the rejection reason, the
// estimated saving.
func (c *Controller) consolidationEvent(ctx context.Context, d Decision, reason, why string) {
	if !isConsolidation(d.Reason) {
		return
	}
	for i, n := range d.Nodes {
		cmd := consolidationCommand(d, n)
		var msg string
		if why == "" {
			msg = fmt.Sprintf("Consolidation candidate: %s (savings: $%.2f); executed once the plan still chooses it after %s", cmd, d.Savings, c.cfg.ValidationDelay)
		} else {
			msg = fmt.Sprintf("Consolidation rejected: %s, reason: %s (savings: $%.2f)", cmd, why, d.Savings)
		}
		c.events.NodeEvent(ctx, n, "Normal", reason, msg)
		if i < len(d.NodeClaims) && d.NodeClaims[i] != "" {
			c.events.NodeClaimEvent(ctx, d.NodeClaims[i], "Normal", reason, msg)
		}
	}
}

// approvedEvent records Karpenter's ConsolidationApproved for a move a
// Balanced pool scored and took: on the node and its NodeClaim for a
// single-node move, on the NodePool for a multi-node one.
func (c *Controller) approvedEvent(ctx context.Context, d Decision) {
	if d.Approved == "" {
		return
	}
	if len(d.Nodes) > 1 {
		c.events.NodePoolEvent(ctx, d.Pool, "Normal", karpenterevents.ConsolidationApproved, d.Approved)
		return
	}
	for i, n := range d.Nodes {
		c.events.NodeEvent(ctx, n, "Normal", karpenterevents.ConsolidationApproved, d.Approved)
		if i < len(d.NodeClaims) && d.NodeClaims[i] != "" {
			c.events.NodeClaimEvent(ctx, d.NodeClaims[i], "Normal", karpenterevents.ConsolidationApproved, d.Approved)
		}
	}
}

// consolidationCommand describes a consolidation as Karpenter's
// Command.StringForNode does: reason, delete or replace, the nodes, and for
// a multi-node command which part this node is.
func consolidationCommand(d Decision, node string) string {
	verb := "Delete"
	if d.Replacement != nil {
		verb = "Replace"
	}
	if len(d.Nodes) > 1 {
		return fmt.Sprintf("%s/%s: [%s] (part of %d-node consolidation)", d.Reason, verb, node, len(d.Nodes))
	}
	s := fmt.Sprintf("%s/%s: nodepools=[%s]: [%s]", d.Reason, verb, d.Pool, node)
	if d.Replacement != nil {
		s += " -> [1 replacement]"
		if len(d.Replacement.Options) > 0 {
			s = strings.TrimSuffix(s, "]") + ": " + d.Replacement.Options[0].InstanceType + "]"
		}
	}
	return s
}

// stillChosen reports whether the validation plan took the same nodes for
// the same reason and the same kind of action.
func stillChosen(d Decision, p Plan) bool {
	for _, e := range p.Decisions {
		if e.Reason != d.Reason || (e.Replacement == nil) != (d.Replacement == nil) {
			continue
		}
		if sameNodes(d.Nodes, e.Nodes) || (d.Reason == ReasonEmpty && subset(d.Nodes, e.Nodes)) {
			return true
		}
	}
	return false
}

func sameNodes(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	sort.Strings(x)
	sort.Strings(y)
	return slices.Equal(x, y)
}

func subset(a, b []string) bool {
	for _, n := range a {
		if !slices.Contains(b, n) {
			return false
		}
	}
	return true
}

// Wait waits for running executions (tests, shutdown).
func (c *Controller) Wait() { c.wg.Wait() }

// Queued is how many voluntary decisions wait out their validation delay:
// the work queued for the next passes.
func (c *Controller) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

func (c *Controller) busy(d Decision) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range d.Nodes {
		if c.inflight[n] {
			return true
		}
	}
	return false
}

const maxEventsPerPass = 100

func (c *Controller) emitSkips(ctx context.Context, snap *Snapshot, p Plan) {
	c.mu.Lock()
	var emit []Skip
	seen := make(map[string]bool, len(p.Skipped))
	for _, s := range p.Skipped {
		key := s.Node + "\x00" + string(s.Method)
		seen[key] = true
		// At most maxEventsPerPass new Events per pass, so a first pass over
		// thousands of nodes does not flood the API server; the rest follow
		// in later passes.
		if c.lastSkip[key] != s.Code && len(emit) < maxEventsPerPass {
			c.lastSkip[key] = s.Code
			emit = append(emit, s)
		}
	}
	for k := range c.lastSkip {
		if !seen[k] {
			delete(c.lastSkip, k)
		}
	}
	c.mu.Unlock()
	claims := claimsByNode(snap)
	poolBlocked := map[string]bool{}
	for _, s := range emit {
		c.m.skips.WithLabelValues(string(s.Method), s.Code).Inc()
		reason := skipEventReason(s)
		msg := fmt.Sprintf("%s: %s: %s", s.Method, s.Code, s.Message)
		if reason == karpenterevents.NodeRepairBlocked {
			// Karpenter's node health controller records it (Warning) on
			// the Node only.
			c.events.NodeEvent(ctx, s.Node, "Warning", reason, "Node repair blocked: "+s.Message+"; the node is replaced when a repair slot frees up")
			continue
		}
		c.events.NodeEvent(ctx, s.Node, "Normal", reason, msg)
		if claim := claims[s.Node]; claim != "" {
			c.events.NodeClaimEvent(ctx, claim, "Normal", reason, msg)
		}
		// Karpenter also tells the NodePool when a budget allows nothing
		// for a reason: once per pool and method in a pass.
		if s.Code == SkipBudget && s.Pool != "" && !poolBlocked[s.Pool+"\x00"+string(s.Method)] {
			poolBlocked[s.Pool+"\x00"+string(s.Method)] = true
			br := s.Method
			if br == ReasonRebalance {
				br = rebalanceBudgetReason
			}
			c.events.NodePoolEvent(ctx, s.Pool, "Normal", karpenterevents.DisruptionBlocked,
				fmt.Sprintf("No allowed disruptions for disruption reason %s due to blocking budget (node %s: %s)", br, s.Node, s.Message))
		}
	}
}

// skipEventReason is Karpenter's Event reason for a skip: Unconsolidatable
// when consolidation found nothing worth doing with the node (its policy,
// the pool's settings, prices), DisruptionBlocked when something protects
// the node (do-not-disrupt, a PDB, a budget, a halted rollout...).
func skipEventReason(s Skip) string {
	switch s.Code {
	case SkipPolicy, SkipDisabled, SkipNoCheaperFit, SkipMinSavings, SkipSpotFlexibility, SkipBalanced,
		SkipStatic, SkipConsolidateAfter, SkipReceivingPods:
		return karpenterevents.Unconsolidatable
	case SkipRepairLimit:
		return karpenterevents.NodeRepairBlocked
	}
	return karpenterevents.DisruptionBlocked
}

func claimsByNode(snap *Snapshot) map[string]string {
	out := map[string]string{}
	if snap == nil {
		return out
	}
	for i := range snap.Nodes {
		if snap.Nodes[i].NodeClaim != "" {
			out[snap.Nodes[i].Name] = snap.Nodes[i].NodeClaim
		}
	}
	return out
}

// emitNotices announces each new agent notice (spot interruption,
// rebalance recommendation, scheduled maintenance) on its Node and
// NodeClaim with the AWS provider's reasons, saying what Dovetail does
// about it in this plan.
func (c *Controller) emitNotices(ctx context.Context, snap *Snapshot, plan Plan) {
	if snap == nil {
		return
	}
	type notice struct {
		n   *Node
		key string
	}
	var emit []notice
	c.mu.Lock()
	present := map[string]bool{}
	for i := range snap.Nodes {
		n := &snap.Nodes[i]
		if n.Interruption == nil {
			continue
		}
		present[n.Name] = true
		key := n.Interruption.Kind + "|" + n.Interruption.Action + "|" + n.Interruption.Seen.UTC().Format(time.RFC3339Nano)
		if c.lastNotice[n.Name] != key && len(emit) < maxEventsPerPass {
			c.lastNotice[n.Name] = key
			emit = append(emit, notice{n, key})
		}
	}
	for name := range c.lastNotice {
		if !present[name] {
			delete(c.lastNotice, name)
		}
	}
	c.mu.Unlock()
	for _, e := range emit {
		typ, reason, msg := NoticeEvent(e.n, snap, plan)
		c.events.NodeEvent(ctx, e.n.Name, typ, reason, msg)
		if e.n.NodeClaim != "" {
			c.events.NodeClaimEvent(ctx, e.n.NodeClaim, typ, reason, msg)
		}
	}
}

// NoticeEvent is the Event type, reason and message that announce a node's
// agent notice: Karpenter's AWS provider reasons (SpotInterrupted,
// SpotRebalanceRecommendation, InstanceStopping, InstanceTerminating,
// InstanceUnhealthy), its message first, then what Dovetail does about it.
func NoticeEvent(n *Node, snap *Snapshot, plan Plan) (eventType, reason, message string) {
	in := n.Interruption
	at := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	var action string
	switch {
	case snap != nil && snap.Ledger[n.Name].NodeName != "":
		action = "already being disrupted (" + snap.Ledger[n.Name].Reason + ")"
	case decisionFor(plan, n.Name) != nil:
		d := decisionFor(plan, n.Name)
		action = fmt.Sprintf("disrupting it (%s): a replacement starts first, then the node is drained", d.Reason)
	default:
		for _, sk := range plan.Skipped {
			if sk.Node == n.Name && (sk.Method == ReasonRebalance || sk.Method == ReasonInterrupted) {
				action = fmt.Sprintf("not acted on (%s): %s", sk.Code, sk.Message)
				break
			}
		}
		if action == "" {
			action = "no disruption planned for it"
		}
	}
	switch report.Kind(in.Kind) {
	case report.KindInterruption:
		return "Warning", karpenterevents.SpotInterrupted, fmt.Sprintf("Spot interruption warning was triggered: action %s at %s; %s", orDefault(in.Action, "terminate"), at(in.Deadline), action)
	case report.KindRebalance:
		return "Normal", karpenterevents.SpotRebalanceRecommendation, fmt.Sprintf("Spot rebalance recommendation was triggered for %s in %s at %s; %s", n.InstanceType, n.Zone, at(in.Seen), action)
	}
	what := fmt.Sprintf("scheduled event %s", orDefault(in.Action, "maintenance"))
	if !in.Deadline.IsZero() {
		what += " at " + at(in.Deadline)
	}
	if in.Message != "" {
		what += " (" + in.Message + ")"
	}
	switch in.Action {
	case "instance-stop":
		return "Warning", karpenterevents.InstanceStopping, "Instance is stopping: " + what + "; " + action
	case "instance-retirement":
		return "Warning", karpenterevents.InstanceTerminating, "Instance is terminating: " + what + "; " + action
	}
	return "Warning", karpenterevents.InstanceUnhealthy, "An unhealthy warning was triggered for the instance: " + what + "; " + action
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// key is the idempotency key of a decision's replacement launch.
func key(d Decision, since time.Time) string {
	nodes := slices.Clone(d.Nodes)
	sort.Strings(nodes)
	h := sha256.Sum256([]byte(string(d.Reason) + "|" + strings.Join(nodes, ",") + "|" + since.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(h[:8])
}

func (c *Controller) start(ctx context.Context, snap *Snapshot, d Decision) {
	since := c.cfg.Now()
	// Commit the intent first: a new leader finds it and carries on.
	for i, n := range d.Nodes {
		claim := ""
		if i < len(d.NodeClaims) {
			claim = d.NodeClaims[i]
		}
		if err := c.ledger.Apply(ctx, fsm.DisruptionBegin{Disruption: fsm.Disruption{
			NodeName: n, NodeClaim: claim, NodePool: d.Pool, Reason: string(d.Reason), Budget: d.Budget, Since: since, Phase: PhaseReplacing,
		}}); err != nil {
			c.log.Warn("cannot commit disruption; not starting it", "node", n, "err", err)
			return
		}
	}
	c.m.decisions.WithLabelValues(string(d.Reason)).Inc()
	c.announce(ctx, d, since)
	c.track(d.Nodes, true)
	c.wg.Add(1)
	go func() {
		// A panic here is the disruption component's (recovered, blamed on
		// the NodeClaim, component restarted), never a process crash.
		defer leader.Recover(nodeCtx(ctx, d))
		defer c.wg.Done()
		defer c.track(d.Nodes, false)
		if err := c.execute(ctx, d, since, ""); err != nil && ctx.Err() == nil {
			c.log.Warn("disruption failed", "reason", d.Reason, "nodes", d.Nodes, "err", err)
		}
	}()
}

// announce records the Events that say a disruption starts, on each Node
// and NodeClaim: DisruptionTerminating, and for an interruption the AWS
// provider's TerminatingOnInterruption. Once per node and disruption
// (since) on this replica, however often the disruption is resumed.
func (c *Controller) announce(ctx context.Context, d Decision, since time.Time) {
	for i, n := range d.Nodes {
		claim := ""
		if i < len(d.NodeClaims) {
			claim = d.NodeClaims[i]
		}
		k := n + "|" + since.UTC().Format(time.RFC3339Nano)
		c.mu.Lock()
		done := c.announced[k]
		if !done {
			if len(c.announced) > 10000 {
				clear(c.announced) // bounded: at worst an Event is repeated
			}
			c.announced[k] = true
		}
		c.mu.Unlock()
		if done {
			continue
		}
		c.events.NodeEvent(ctx, n, "Normal", karpenterevents.DisruptionTerminating, fmt.Sprintf("Disrupting Node: %s: %s", d.Reason, d.Message))
		if claim != "" {
			c.events.NodeClaimEvent(ctx, claim, "Normal", karpenterevents.DisruptionTerminating, fmt.Sprintf("Disrupting NodeClaim: %s: %s (node %s)", d.Reason, d.Message, n))
		}
		if d.Reason == ReasonInterrupted {
			// The AWS provider's Event for acting on a notice (the notice
			// itself was announced by emitNotices).
			c.events.NodeEvent(ctx, n, "Warning", karpenterevents.TerminatingOnInterruption, "Interruption triggered termination for the Node: "+d.Message)
			if claim != "" {
				c.events.NodeClaimEvent(ctx, claim, "Warning", karpenterevents.TerminatingOnInterruption, "Interruption triggered termination for the NodeClaim: "+d.Message)
			}
		}
	}
}

func (c *Controller) track(nodes []string, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range nodes {
		if on {
			c.inflight[n] = true
		} else {
			delete(c.inflight, n)
		}
	}
}

// execute carries a decision out from its phase. replacement is the
// already-launched NodeClaim when resuming.
func (c *Controller) execute(ctx context.Context, d Decision, since time.Time, replacement string) error {
	log := c.log.With("reason", d.Reason, "nodes", d.Nodes)
	setPhase := func(phase string, repl []string) error {
		for i, n := range d.Nodes {
			claim := ""
			if i < len(d.NodeClaims) {
				claim = d.NodeClaims[i]
			}
			if err := c.ledger.Apply(ctx, fsm.DisruptionBegin{Disruption: fsm.Disruption{
				NodeName: n, NodeClaim: claim, NodePool: d.Pool, Reason: string(d.Reason), Budget: d.Budget, Since: since, Phase: phase, Replacements: repl,
			}}); err != nil {
				return fmt.Errorf("ledger phase %s: %w", phase, err)
			}
		}
		return nil
	}
	end := func() error {
		for _, n := range d.Nodes {
			if err := c.ledger.Apply(ctx, fsm.DisruptionEnd{NodeName: n}); err != nil {
				return fmt.Errorf("ledger end: %w", err)
			}
		}
		return nil
	}
	if d.DrainBy == DrainByAgent {
		// The agent drains from the notice on (see interruptionDrain):
		// taint the node at once as Karpenter does (a node may not taint
		// itself), not only once the replacement is Ready.
		for _, n := range d.Nodes {
			if err := c.drainer.MarkDisrupted(ctx, n, string(d.Reason)); err != nil && !apierrors.IsNotFound(err) {
				log.Warn("could not taint the interrupted node; its agent's cordon keeps pods off it", "node", n, "err", err)
			}
		}
	}
	if d.Replacement != nil {
		if replacement == "" {
			claim, err := c.launcher.Launch(ctx, key(d, since), *d.Replacement)
			if err != nil {
				c.m.failures.WithLabelValues("launch").Inc()
				if !d.Forceful {
					c.m.queueFailure(d)
					_ = end()
				}
				return fmt.Errorf("launch replacement: %w", err)
			}
			replacement = claim
			c.events.NodeClaimEvent(ctx, claim, "Normal", karpenterevents.DisruptionLaunching,
				fmt.Sprintf("Launching NodeClaim: %s: replacing %s (%s)", d.Reason, strings.Join(d.Nodes, ", "), d.Message))
			if err := setPhase(PhaseReplacing, []string{claim}); err != nil {
				return err
			}
		}
		c.events.NodeClaimEvent(ctx, replacement, "Normal", karpenterevents.DisruptionWaitingReadiness,
			fmt.Sprintf("Waiting on readiness to continue disruption: %s of %s is drained once this NodeClaim is Ready (gives up after %s)",
				d.Reason, strings.Join(d.Nodes, ", "), c.cfg.ReplacementTimeout))
		// A forceful disruption with a deadline (a spot notice) waits for
		// readiness only until that deadline: the node goes then anyway.
		giveUp := since.Add(c.cfg.ReplacementTimeout)
		deadlineFirst := d.Forceful && !d.DrainUntil.IsZero() && d.DrainUntil.Before(giveUp)
		if deadlineFirst {
			giveUp = d.DrainUntil
		}
		ok, err := c.waitReady(ctx, replacement, giveUp)
		if err != nil {
			return err
		}
		if !ok && deadlineFirst {
			// Keep the replacement: it is still the pods' place to go.
			log.Warn("deadline reached before the replacement was Ready; the node goes now", "nodeClaim", replacement, "deadline", d.DrainUntil)
		} else if !ok {
			c.m.failures.WithLabelValues("replacement-not-ready").Inc()
			if !d.Forceful {
				c.m.queueFailure(d)
			}
			for _, n := range d.Nodes {
				c.events.NodeEvent(ctx, n, "Warning", karpenterevents.ReplacementNotReady,
					fmt.Sprintf("replacement %s not Ready after %s; node kept", replacement, c.cfg.ReplacementTimeout))
			}
			_ = c.launcher.Delete(ctx, replacement)
			if d.Reason == ReasonDrifted {
				// Kept in the ledger: the rollout planner sees it and halts.
				return setPhase(PhaseReplacementNotReady, []string{replacement})
			}
			if !d.Forceful {
				return end()
			}
			// Forceful: the node goes anyway (interruption, repair, TGP).
		}
		if ok {
			log.Info("replacement ready", "nodeClaim", replacement)
		}
	}
	var repl []string
	if replacement != "" {
		repl = []string{replacement}
	}
	if err := setPhase(PhaseDraining, repl); err != nil {
		return err
	}
	deadline := d.DrainUntil
	if deadline.IsZero() {
		deadline = since.Add(c.cfg.MaxDrain)
	}
	if deadline.Before(c.cfg.Now()) {
		deadline = c.cfg.Now().Add(10 * time.Second) // resumed past its deadline: a short final attempt
	}
	if !d.DrainUntil.IsZero() {
		// Karpenter's warning that the node goes at its termination time
		// whatever its pods' PDBs say (terminationGracePeriod, or the
		// interruption's own deadline).
		for i, n := range d.Nodes {
			msg := fmt.Sprintf("All pods will be deleted by %s: %s drains the node until then (%s), then terminates it with whatever is left",
				deadline.UTC().Format(time.RFC3339), d.Reason, drainLimitSource(d))
			c.events.NodeEvent(ctx, n, "Warning", karpenterevents.TerminationGracePeriodExpiring, msg)
			if i < len(d.NodeClaims) && d.NodeClaims[i] != "" {
				c.events.NodeClaimEvent(ctx, d.NodeClaims[i], "Warning", karpenterevents.TerminationGracePeriodExpiring, msg)
			}
		}
	}
	for _, n := range d.Nodes {
		if d.DrainBy == DrainByAgent {
			// The agent drains (see interruptionDrain): wait for it to
			// report the drain ended, or for the notice's own deadline
			// (past it the instance is gone: no final attempt to wait for).
			if err := c.awaitAgentDrain(ctx, n, d.DrainUntil); err != nil {
				return err
			}
			continue
		}
		res, err := c.drainer.Drain(ctx, n, deadline, string(d.Reason))
		if apierrors.IsNotFound(err) {
			// The Node is gone: nothing is left on it to drain. A leader
			// that resumes a disruption past its NodeClaim deletions (phase
			// Terminating, or Draining when the node went on its own) meets
			// this; failing here kept the entry in the ledger for good, its
			// nodes and budget taken, and retried every pass.
			log.Info("node already gone; nothing to drain", "node", n)
			continue
		}
		if err != nil {
			c.m.failures.WithLabelValues("drain").Inc()
			return fmt.Errorf("drain %s: %w", n, err)
		}
		if !res.Complete && !d.Forceful && d.DrainUntil.IsZero() {
			c.m.failures.WithLabelValues("drain-blocked").Inc()
			c.events.NodeEvent(ctx, n, "Warning", karpenterevents.FailedDraining, fmt.Sprintf("Failed to drain node, %d pod(s) could not be evicted by %s; disruption abandoned (check PodDisruptionBudgets and do-not-disrupt pods)", res.Remaining(), deadline.UTC().Format(time.RFC3339)))
			return end()
		}
	}
	if err := setPhase(PhaseTerminating, repl); err != nil {
		return err
	}
	for i, n := range d.Nodes {
		if i >= len(d.NodeClaims) || d.NodeClaims[i] == "" {
			continue
		}
		if err := c.launcher.Delete(ctx, d.NodeClaims[i]); err != nil {
			c.m.failures.WithLabelValues("delete").Inc()
			return fmt.Errorf("delete nodeclaim of %s: %w", n, err)
		}
	}
	c.m.done.WithLabelValues(string(d.Reason)).Inc()
	log.Info("disruption done", "replacement", replacement)
	return end()
}

// drainLimitSource says where a decision's drain deadline comes from.
func drainLimitSource(d Decision) string {
	if d.Reason == ReasonInterrupted {
		return "the interruption's deadline, else the NodePool's terminationGracePeriod"
	}
	return "the NodePool's terminationGracePeriod"
}

// awaitAgentDrain waits until the node's agent reports its drain ended, or
// the deadline: the instance is lost at the deadline, so past it there is
// nothing left to wait for (an agent that died mid-drain ends here too).
func (c *Controller) awaitAgentDrain(ctx context.Context, node string, deadline time.Time) error {
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	for {
		if c.cfg.AgentDrainDone != nil && c.cfg.AgentDrainDone(node) {
			c.log.Info("agent drained the interrupted node", "node", node)
			return nil
		}
		if !c.cfg.Now().Before(deadline) {
			c.log.Info("interruption deadline reached before the agent reported its drain done", "node", node, "deadline", deadline)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// waitReady polls the replacement until it is Ready or giveUp passes.
func (c *Controller) waitReady(ctx context.Context, claim string, giveUp time.Time) (bool, error) {
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	for {
		ok, err := c.launcher.Ready(ctx, claim)
		if err == nil && ok {
			return true, nil
		}
		if err != nil {
			c.log.Debug("replacement readiness check failed; retrying", "nodeClaim", claim, "err", err)
		}
		if !c.cfg.Now().Before(giveUp) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
}

// resumeLedger restarts the execution of ledger entries no goroutine here
// is working on (a new leader, or a crashed execution).
func (c *Controller) resumeLedger(ctx context.Context, snap *Snapshot) {
	byKey := map[string]*Decision{}
	var order []string
	names := make([]string, 0, len(snap.Ledger))
	for n := range snap.Ledger {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := snap.Ledger[n]
		c.mu.Lock()
		busy := c.inflight[n]
		c.mu.Unlock()
		if busy || e.Phase == PhaseReplacementNotReady {
			continue
		}
		k := e.Reason + "|" + e.Since.String() + "|" + strings.Join(e.Replacements, ",")
		d := byKey[k]
		if d == nil {
			d = &Decision{Reason: Reason(e.Reason), Pool: e.NodePool, Budget: e.Budget,
				Forceful: e.Reason == string(ReasonInterrupted) || e.Reason == string(ReasonUnhealthy)}
			if len(e.Replacements) > 0 || e.Phase == PhaseReplacing {
				d.Replacement = &Replacement{Pool: e.NodePool}
			}
			byKey[k] = d
			order = append(order, k)
		}
		d.Nodes = append(d.Nodes, e.NodeName)
		d.NodeClaims = append(d.NodeClaims, e.NodeClaim)
	}
	for _, k := range order {
		d := *byKey[k]
		e := snap.Ledger[d.Nodes[0]]
		// The same deadline the planner gave it, from the entry's start.
		d.DrainUntil = drainUntil(findPool(snap, d.Pool), e.Since)
		if d.Reason == ReasonInterrupted {
			if n := findNode(snap, d.Nodes[0]); n != nil && n.Interruption != nil {
				d.DrainUntil, d.DrainBy = interruptionDrain(n, findPool(snap, d.Pool), e.Since)
			}
		}
		repl := ""
		if len(e.Replacements) > 0 {
			repl = e.Replacements[0]
		}
		if e.Phase == PhaseReplacing && repl == "" {
			// Launch not recorded: relaunch with the same key (idempotent)
			// using the node as the template.
			d.Replacement = &Replacement{Pool: d.Pool, SameAs: d.Nodes[0]}
			// The start may not have been announced either: a leader whose
			// DisruptionBegin commit reported "leadership lost" (the entry
			// committed anyway) returned before its Events. Announce it now;
			// a repeat of an Event already sent is only counted again.
			d.Message = "resumed from the ledger"
			c.announce(ctx, d, e.Since)
			if d.Reason == ReasonRebalance {
				// Still away from the offering that got the recommendation:
				// a failover must not relaunch into the pool at risk.
				d.Replacement.Avoid = rebalanceAvoid(findNode(snap, d.Nodes[0]))
			}
		}
		if e.Phase == PhaseDraining || e.Phase == PhaseTerminating {
			d.Replacement = nil
		}
		c.log.Info("resuming disruption from the ledger", "nodes", d.Nodes, "phase", e.Phase)
		c.track(d.Nodes, true)
		c.wg.Add(1)
		go func(d Decision, since time.Time, repl string) {
			defer leader.Recover(nodeCtx(ctx, d))
			defer c.wg.Done()
			defer c.track(d.Nodes, false)
			if err := c.execute(ctx, d, since, repl); err != nil && ctx.Err() == nil {
				c.log.Warn("resumed disruption failed", "nodes", d.Nodes, "err", err)
			}
		}(d, e.Since, repl)
	}
}

// nodeCtx names the NodeClaim a decision acts on for panic reports.
func nodeCtx(ctx context.Context, d Decision) context.Context {
	if len(d.NodeClaims) > 0 && d.NodeClaims[0] != "" {
		ctx, _ = leader.WorkingOn(ctx, leader.Object{Kind: "NodeClaim", Name: d.NodeClaims[0]})
	}
	return ctx
}

func findNode(s *Snapshot, name string) *Node {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

func findPool(s *Snapshot, name string) *Pool {
	for i := range s.Pools {
		if s.Pools[i].Name == name {
			return &s.Pools[i]
		}
	}
	return nil
}

// ResumeRollout returns the commands that resume a halted rollout: clear
// the pause and forget the disruptions whose replacement never became Ready
// (their nodes were kept). The coordinator's API applies them for
// `dovetail rollout resume POOL`.
func ResumeRollout(r fsm.Rollout, ledger map[string]fsm.Disruption) []fsm.Command {
	var cmds []fsm.Command
	names := make([]string, 0, len(ledger))
	for n, d := range ledger {
		if d.NodePool == r.NodePool && d.Phase == PhaseReplacementNotReady {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		cmds = append(cmds, fsm.DisruptionEnd{NodeName: n})
	}
	r = cloneRollout(r)
	r.Paused = false
	r.BlockedReason = ""
	return append(cmds, fsm.RolloutSet{Rollout: r})
}

// observeRollouts exports each pool's rollout progress; a pool with no
// rollout has none in progress and is not halted.
func (c *Controller) observeRollouts(p Plan, pools []Pool) {
	for _, pool := range pools {
		if _, ok := p.Rollouts[pool.Name]; ok {
			continue
		}
		for _, state := range []string{"done", "in_progress", "remaining", "total"} {
			c.m.rolloutNodes.WithLabelValues(pool.Name, state).Set(0)
		}
		c.m.rolloutHalted.WithLabelValues(pool.Name).Set(0)
	}
	for pool, r := range p.Rollouts {
		done, total, state := RolloutProgress(r)
		c.m.rolloutNodes.WithLabelValues(pool, "done").Set(float64(done))
		c.m.rolloutNodes.WithLabelValues(pool, "in_progress").Set(float64(len(r.InProgress)))
		c.m.rolloutNodes.WithLabelValues(pool, "remaining").Set(float64(len(r.Remaining)))
		c.m.rolloutNodes.WithLabelValues(pool, "total").Set(float64(total))
		halted := 0.0
		if state == "Halted" {
			halted = 1
		}
		c.m.rolloutHalted.WithLabelValues(pool).Set(halted)
	}
}

type metrics struct {
	rolloutNodes  *prometheus.GaugeVec
	rolloutHalted *prometheus.GaugeVec
	planSeconds   prometheus.Histogram
	decisions     *prometheus.CounterVec
	done          *prometheus.CounterVec
	failures      *prometheus.CounterVec
	skips         *prometheus.CounterVec
	invalidated   prometheus.Counter
	// Karpenter v1.14's (pkg/controllers/disruption/metrics.go).
	eligible          *prometheus.GaugeVec
	allowed           *prometheus.GaugeVec
	consuming         *prometheus.GaugeVec
	failedValidations *prometheus.CounterVec
	queueFailures     *prometheus.CounterVec
}

// queueFailure counts a voluntary decision given up because its
// replacement did not launch or come up, as Karpenter's disruption queue
// counts a command's replacements that never initialized (Dovetail's
// decisions have one replacement at most). Karpenter puts the decision in
// the consolidation_type label too; so does this.
func (m *metrics) queueFailure(d Decision) {
	decision := "delete"
	if d.Replacement != nil {
		decision = "replace"
	}
	m.queueFailures.WithLabelValues(decision, karpentermetrics.SnakeCase(string(d.Reason)), decision).Inc()
}

// invalidate counts a decision dropped at validation: Dovetail's count of
// decisions, and Karpenter's of consolidation candidates (per node, by
// consolidation type; Karpenter validates consolidations only).
func (m *metrics) invalidate(d Decision) {
	m.invalidated.Inc()
	if ct := ConsolidationType(d); ct != "" {
		m.failedValidations.WithLabelValues(ct).Add(float64(len(d.Nodes)))
	}
}

// ConsolidationType is Karpenter's consolidation_type of a decision:
// "empty" for empty nodes, "single" or "multi" for an underutilized node or
// several replaced together, "" for anything that is not a consolidation.
func ConsolidationType(d Decision) string {
	switch d.Reason {
	case ReasonEmpty:
		return "empty"
	case ReasonUnderutilized:
		if len(d.Nodes) > 1 {
			return "multi"
		}
		return "single"
	}
	return ""
}

// observePlan sets Karpenter's per-pass gauges: eligible nodes by method
// (lowercase reason, as Karpenter labels it) and each NodePool's allowed
// disruptions by method (the API's spelling, as Karpenter labels that one).
func (m *metrics) observePlan(p Plan) {
	for _, r := range VoluntaryMethods {
		m.eligible.WithLabelValues(strings.ToLower(string(r))).Set(float64(p.Eligible[r]))
	}
	// A deleted NodePool's series go with it.
	m.allowed.Reset()
	m.consuming.Reset()
	for pool, byReason := range p.AllowedDisruptions {
		for r, n := range byReason {
			m.allowed.WithLabelValues(pool, string(r)).Set(float64(n))
			// Karpenter sets it beside allowed_disruptions, per method,
			// with the pool's one count of disrupting nodes.
			m.consuming.WithLabelValues(pool, string(r)).Set(float64(p.ConsumingBudgets[pool]))
		}
	}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rolloutNodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "dovetail_rollout_nodes",
			Help: "AMI rollout progress per NodePool: nodes done, in_progress, remaining, total."}, []string{"nodepool", "state"}),
		rolloutHalted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "dovetail_rollout_halted",
			Help: "1 when the NodePool's AMI rollout halted itself (replacements not Ready)."}, []string{"nodepool"}),
		planSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dovetail_disruption_plan_seconds",
			Help: "Time to compute one disruption plan.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dovetail_disruption_decisions_total",
			Help: "Disruptions started, by reason."}, []string{"reason"}),
		done: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dovetail_disruption_completed_total",
			Help: "Disruptions completed (NodeClaim deleted), by reason."}, []string{"reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dovetail_disruption_failures_total",
			Help: "Disruption steps that failed, by step."}, []string{"step"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dovetail_disruption_skips_total",
			Help: "Candidates newly skipped, by method and reason code."}, []string{"method", "code"}),
		invalidated: prometheus.NewCounter(prometheus.CounterOpts{Name: "dovetail_disruption_invalidated_total",
			Help: "Voluntary decisions dropped at validation."}),
		eligible: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_voluntary_disruption_eligible_nodes",
			Help: "Number of nodes eligible for disruption by Karpenter. Labeled by disruption reason."}, []string{"reason"}),
		allowed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_nodepools_allowed_disruptions",
			Help: "The number of nodes for a given NodePool that can be concurrently disrupting at a point in time. Labeled by NodePool. Note that allowed disruptions can change very rapidly, as new nodes may be created and others may be deleted at any point."},
			[]string{"nodepool", "reason"}),
		queueFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_voluntary_disruption_queue_failures_total",
			Help: "The number of times that an enqueued disruption decision failed. Labeled by disruption method."},
			[]string{"decision", "reason", "consolidation_type"}),
		failedValidations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_voluntary_disruption_failed_validations_total",
			Help: "Number of candidates that were selected for disruption but failed validation. Labeled by consolidation type."},
			[]string{"consolidation_type"}),
		consuming: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_nodepools_nodes_consuming_budgets",
			Help: "The number of nodes consuming the budget of a nodepool at a point in time. Labeled by NodePool."},
			[]string{"nodepool", "reason"}),
	}
	// Every step's failure count exists from the start at 0, so a dashboard
	// or alert reads "none failed" rather than no data.
	for _, step := range []string{"launch", "replacement-not-ready", "drain", "drain-blocked", "delete"} {
		m.failures.WithLabelValues(step).Add(0)
	}
	for _, ct := range []string{"empty", "single", "multi"} {
		m.failedValidations.WithLabelValues(ct).Add(0)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rolloutNodes, m.rolloutHalted, m.planSeconds, m.decisions, m.done, m.failures, m.skips, m.invalidated, m.eligible, m.allowed, m.consuming, m.failedValidations, m.queueFailures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register disruption metrics: %w", err)
			}
		}
	}
	return m, nil
}
