// Package launcher executes launch intents exactly once across leader
// failures. The protocol: create the NodeClaim, commit the intent (client
// token derived from the NodeClaim UID), verify leadership with a quorum,
// call the cloud with the token and the leader's term on a tag, commit the
// result, then set the NodeClaim status. A new leader reconciles every open
// intent (the cloud's token idempotency adopts what was launched and launches
// what was not), garbage-collects instances no intent owns after a grace
// period, follows NodeClaims through Registered and Initialized, and
// terminates instances whose NodeClaim is deleted.
package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/cloudmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/eventdedupe"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
)

// CloudProvider is the cloud as the launcher uses it (cloud/ec2.Provider).
type CloudProvider interface {
	Create(ctx context.Context, nodeClass *awsv1.EC2NodeClass, req *cloud.LaunchRequest) (*cloud.Instance, error)
	Delete(ctx context.Context, instanceID string) error                 // idempotent
	Get(ctx context.Context, instanceID string) (*cloud.Instance, error) // cloud.ErrNotFound when gone
	List(ctx context.Context) ([]*cloud.Instance, error)                 // this cluster's non-terminated instances
}

// Store is the replicated state (raftnode.Node).
type Store interface {
	ApplyInTerm(ctx context.Context, term uint64, c fsm.Command) error
	VerifyLeader(ctx context.Context, term uint64) error
	// State is a deep copy (for whole-state passes); View reads in place.
	State() *fsm.State
	View(func(*fsm.State))
}

// NodeClasses resolves an EC2NodeClass by name.
type NodeClasses interface {
	NodeClass(ctx context.Context, name string) (*awsv1.EC2NodeClass, error)
}

// Claims is the Kubernetes side of a launch. Optional: without it the
// launcher runs the protocol on intents alone (tests of the protocol, dry runs).
type Claims interface {
	NodeClasses
	// Ensure creates the NodeClaim with the termination finalizer, or returns
	// the existing one of that name (with its UID).
	Ensure(ctx context.Context, nc *karpv1.NodeClaim) (*karpv1.NodeClaim, error)
	// List returns every NodeClaim.
	List(ctx context.Context) ([]karpv1.NodeClaim, error)
	MarkLaunched(ctx context.Context, name string, inst *cloud.Instance, it *cloud.InstanceType) error
	MarkRegistered(ctx context.Context, name, nodeName string, initialized bool) error
	MarkLaunchFailed(ctx context.Context, name, reason, message string) error
	// MarkLaunchRetrying sets Launched=Unknown with a reason: the launch
	// failed in a way that is retried (Karpenter's SetUnknownWithReason).
	MarkLaunchRetrying(ctx context.Context, name, reason, message string) error
	// Delete deletes the NodeClaim (its finalizer keeps it until RemoveFinalizer).
	Delete(ctx context.Context, name string) error
	RemoveFinalizer(ctx context.Context, name string) error
	// NodeByProviderID returns the node with that providerID, or nil.
	NodeByProviderID(ctx context.Context, providerID string) (*corev1.Node, error)
}

// InstanceTypes, when the cloud provider implements it, supplies capacity and
// allocatable for NodeClaim status.
type InstanceTypes interface {
	InstanceTypes(ctx context.Context) ([]*cloud.InstanceType, error)
}

// Step names the points of the protocol where tests inject faults.
type Step string

const (
	StepBeforeIntent Step = "before-intent" // NodeClaim exists, intent not committed
	StepBeforeCreate Step = "before-create" // intent committed, cloud not called
	StepAfterCreate  Step = "after-create"  // cloud launched, result not committed
	StepAfterResult  Step = "after-result"  // result committed, NodeClaim status not set
)

// ErrNotLeader is returned when the launcher is asked to act on a replica
// that is not leading.
var ErrNotLeader = errors.New("launcher: not the leader")

// Config configures a Launcher.
type Config struct {
	Cloud       CloudProvider
	Store       Store
	Claims      Claims      // optional
	NodeClasses NodeClasses // used when Claims is nil
	// ReplicaID names this replica in the LeaderEpoch and logs.
	ReplicaID string
	// Interval between reconcile passes (default 10s).
	Interval time.Duration
	// LeakGrace is how long an instance no intent owns is left alone
	// (counted from when this leader first saw it) before it is terminated
	// (default 5m).
	LeakGrace time.Duration
	// OrphanClaimGrace is how long a NodeClaim with no intent and no
	// providerID may exist before it is deleted (default 2m).
	OrphanClaimGrace time.Duration
	// NodeGrace is the grace period after a leader change during which no
	// instance is judged gone (default 2m).
	NodeGrace time.Duration
	// ICETTL is how long an offering refused for capacity stays in the
	// replicated cache (3m).
	ICETTL time.Duration
	// ICE is the replicated cache as the cloud provider reads it: pass the
	// same store as the provider's Offerings (ec2.Config.Offerings). New
	// binds it to Store; nil makes one the provider does not see.
	ICE  *ICEStore
	Now  func() time.Time
	Hook func(ctx context.Context, step Step, token string) error
	Log  *slog.Logger
	// Registry registers the launcher's metrics (optional).
	Registry prometheus.Registerer
	// CloudMetrics, when set, measures every cloud call as Karpenter's
	// karpenter_cloudprovider_* metrics.
	CloudMetrics *cloudmetrics.Metrics
	// Events, when set, records Karpenter's InsufficientCapacityError and
	// NodeClassNotReady Events on NodeClaims that cannot launch.
	Events EventPublisher
}

// EventPublisher publishes deduplicated Events (eventdedupe.Recorder).
type EventPublisher interface {
	Publish(evts ...eventdedupe.Event) int
}

// Launcher runs the protocol. It is leader-only work: Run binds it to a term.
type Launcher struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	mu        sync.Mutex
	term      uint64
	leadCtx   context.Context
	firstSeen map[string]time.Time // unowned instance ID → first seen by this leadership

	inflight sync.Map // token → *sync.Mutex
	lastICE  sync.Map // token → *cloud.InsufficientCapacityError, for Launch to return

	typesMu sync.Mutex
	types   map[string]*cloud.InstanceType
}

// New returns a Launcher.
func New(cfg Config) (*Launcher, error) {
	if cfg.Cloud == nil || cfg.Store == nil {
		return nil, errors.New("launcher: cloud and store are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.LeakGrace <= 0 {
		cfg.LeakGrace = 5 * time.Minute
	}
	if cfg.OrphanClaimGrace <= 0 {
		cfg.OrphanClaimGrace = 2 * time.Minute
	}
	if cfg.NodeGrace <= 0 {
		cfg.NodeGrace = 2 * time.Minute
	}
	if cfg.ICETTL <= 0 {
		cfg.ICETTL = 3 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.NodeClasses == nil && cfg.Claims != nil {
		cfg.NodeClasses = cfg.Claims
	}
	if cfg.ICE == nil {
		cfg.ICE = NewICEStore()
	}
	cfg.ICE.bind(cfg.Store.View, cfg.Now, cfg.ICETTL)
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	return &Launcher{cfg: cfg, log: cfg.Log.With("component", "launcher"), m: m, firstSeen: map[string]time.Time{}}, nil
}

// TokenFor derives the EC2 client token of a NodeClaim from its UID. EC2
// allows 64 ASCII characters; a UID is 36.
func TokenFor(uid string) string {
	t := "dt-" + uid
	if len(t) > 64 {
		t = t[:64]
	}
	return t
}

// Term returns the term the launcher is leading in (0 when not leading).
func (l *Launcher) Term() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term
}

func (l *Launcher) lead() (uint64, context.Context, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term, l.leadCtx, l.term != 0
}

// Run is the leader-only reconcile loop (leader.Component). It binds
// Launch calls to term until ctx is cancelled.
func (l *Launcher) Run(ctx context.Context, term uint64) error {
	l.mu.Lock()
	l.term, l.leadCtx = term, ctx
	l.firstSeen = map[string]time.Time{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		if l.term == term {
			l.term, l.leadCtx = 0, nil
		}
		l.mu.Unlock()
	}()
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		if err := l.Reconcile(ctx, term); err != nil && ctx.Err() == nil {
			l.log.Warn("reconcile pass failed", "term", term, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Launch runs the protocol for one NodeClaim with its launch options
// (cheapest first). It is idempotent by NodeClaim name: calling it again
// after a failure or a failover resumes the same intent. It returns once the
// result is committed; an ICE failure returns a *cloud.InsufficientCapacityError.
func (l *Launcher) Launch(ctx context.Context, nc *karpv1.NodeClaim, options []cloud.LaunchOption) error {
	term, leadCtx, ok := l.lead()
	if !ok {
		return ErrNotLeader
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(leadCtx, cancel)
	defer stop()
	if nc == nil || nc.Name == "" {
		return errors.New("launch: NodeClaim with a name is required")
	}
	if len(options) == 0 {
		return fmt.Errorf("launch %s: no launch options", nc.Name)
	}
	if l.cfg.Claims != nil {
		created, err := l.cfg.Claims.Ensure(ctx, nc)
		if err != nil {
			return fmt.Errorf("launch %s: create NodeClaim: %w", nc.Name, err)
		}
		nc = created
	}
	if nc.UID == "" {
		return fmt.Errorf("launch %s: NodeClaim has no UID", nc.Name)
	}
	token := TokenFor(string(nc.UID))
	if err := l.hook(ctx, StepBeforeIntent, token); err != nil {
		return err
	}
	nodeClass := ""
	if nc.Spec.NodeClassRef != nil {
		nodeClass = nc.Spec.NodeClassRef.Name
	}
	now := l.cfg.Now()
	in := fsm.Intent{
		Token: token, NodeClaim: nc.Name, NodeClaimUID: string(nc.UID),
		NodePool: nc.Labels[karpv1.NodePoolLabelKey], NodeClass: nodeClass,
		Options: options, Labels: nc.Labels, State: fsm.IntentPending, Term: term,
		Taints: nc.Spec.Taints, StartupTaints: nc.Spec.StartupTaints,
		CreatedAt: now, UpdatedAt: now,
	}
	if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentCreate{Intent: in}); err != nil {
		return fmt.Errorf("launch %s: commit intent: %w", nc.Name, err)
	}
	l.m.intents.Inc()
	res, err := l.execute(ctx, term, token)
	if err != nil {
		return fmt.Errorf("launch %s: %w", nc.Name, err)
	}
	if res != nil && res.State == fsm.IntentFailed {
		if res.ICE {
			if v, ok := l.lastICE.LoadAndDelete(token); ok {
				return v.(*cloud.InsufficientCapacityError)
			}
			// Resolved earlier (another replica or pass): rebuild from the intent.
			ice := &cloud.InsufficientCapacityError{}
			for _, o := range res.Options {
				ice.Unavailable = append(ice.Unavailable, cloud.UnavailableOffering{InstanceType: o.InstanceType,
					Zone: o.Zone, CapacityType: o.CapacityType, Code: "InsufficientInstanceCapacity"})
			}
			return ice
		}
		return fmt.Errorf("launch %s failed: %s", nc.Name, res.Error)
	}
	return nil
}

// Intent returns the committed intent of a NodeClaim, or nil.
func (l *Launcher) Intent(nodeClaim string) *fsm.Intent {
	var out *fsm.Intent
	l.cfg.Store.View(func(s *fsm.State) { out = copyIntent(s.IntentByNodeClaim(nodeClaim)) })
	return out
}

// intent returns a copy of one intent without copying the whole state
// (State() deep-copies everything, which per launch would cost O(intents)).
func (l *Launcher) intent(token string) *fsm.Intent {
	var out *fsm.Intent
	l.cfg.Store.View(func(s *fsm.State) { out = copyIntent(s.Intents[token]) })
	return out
}

func copyIntent(in *fsm.Intent) *fsm.Intent {
	if in == nil {
		return nil
	}
	c := *in
	c.Options = append([]cloud.LaunchOption(nil), in.Options...)
	if in.Labels != nil {
		c.Labels = make(map[string]string, len(in.Labels))
		for k, v := range in.Labels {
			c.Labels[k] = v
		}
	}
	if in.Instance != nil {
		inst := *in.Instance
		if in.Instance.Tags != nil {
			inst.Tags = make(map[string]string, len(in.Instance.Tags))
			for k, v := range in.Instance.Tags {
				inst.Tags[k] = v
			}
		}
		c.Instance = &inst
	}
	return &c
}

func (l *Launcher) hook(ctx context.Context, s Step, token string) error {
	if l.cfg.Hook == nil {
		return nil
	}
	return l.cfg.Hook(ctx, s, token)
}

func (l *Launcher) lockToken(token string) func() {
	v, _ := l.inflight.LoadOrStore(token, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// execute brings one Pending intent to a result. Safe to call concurrently
// and repeatedly: the per-token lock serialises this replica, the client
// token makes a repeated Create return the same instance, and IntentResult
// ignores a second result.
func (l *Launcher) execute(ctx context.Context, term uint64, token string) (*fsm.Intent, error) {
	unlock := l.lockToken(token)
	defer unlock()
	in := l.intent(token)
	if in == nil {
		return nil, fmt.Errorf("intent %s not found", token)
	}
	if in.State != fsm.IntentPending {
		l.afterResult(ctx, term, in)
		return in, nil
	}
	if err := l.hook(ctx, StepBeforeCreate, token); err != nil {
		return nil, err
	}
	nodeClass, err := l.nodeClass(ctx, in.NodeClass)
	if err != nil {
		// Karpenter's provider fails Create with NodeClassNotReadyError here.
		l.cfg.CloudMetrics.Observe(cloudmetrics.ControllerLifecycle, cloudmetrics.MethodCreate, 0, fmt.Errorf("%w: %w", cloudmetrics.ErrNodeClassNotReady, err))
		l.markRetrying(ctx, in.NodeClaim, ReasonNodeClassNotReady, err)
		l.claimEvent(in, karpenterevents.NodeClassNotReady, err)
		return nil, err
	}
	// Fence: only a leader a quorum still follows may touch the cloud.
	if err := l.cfg.Store.VerifyLeader(ctx, term); err != nil {
		return nil, fmt.Errorf("before cloud create: %w", err)
	}
	req := &cloud.LaunchRequest{
		ClientToken: token, NodeClaimName: in.NodeClaim, NodePoolName: in.NodePool,
		NodeClassName: in.NodeClass, LeaderTerm: term, Options: in.Options, Labels: in.Labels,
		Taints: in.Taints, StartupTaints: in.StartupTaints,
	}
	l.m.cloudCalls.WithLabelValues("create").Inc()
	inst, cerr := l.cloudCreate(ctx, nodeClass, req)
	if err := l.hook(ctx, StepAfterCreate, token); err != nil {
		return nil, err
	}
	now := l.cfg.Now()
	if cerr != nil {
		var ice *cloud.InsufficientCapacityError
		if errors.As(cerr, &ice) {
			l.lastICE.Store(token, ice)
			if err := l.commitRefusals(ctx, term, now, ice); err != nil {
				return nil, fmt.Errorf("commit ICE: %w", err)
			}
			if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentResult{Token: token, State: fsm.IntentFailed,
				Error: cerr.Error(), ICE: true, Term: term, At: now}); err != nil {
				return nil, fmt.Errorf("commit ICE failure: %w", err)
			}
			l.m.results.WithLabelValues("ice").Inc()
			l.claimEvent(in, karpenterevents.InsufficientCapacityError, cerr)
			res := l.intent(token)
			l.afterResult(ctx, term, res)
			return res, nil
		}
		l.m.results.WithLabelValues("error").Inc()
		l.commitRefusalsOrLog(ctx, term, now, token)
		_ = l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentUpdate{Token: token, Attempt: true, Error: cerr.Error(), At: now})
		l.markRetrying(ctx, in.NodeClaim, "", cerr)
		return nil, fmt.Errorf("cloud create: %w", cerr)
	}
	// Options refused before the one that launched are out of capacity too.
	l.commitRefusalsOrLog(ctx, term, now, token)
	if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentResult{Token: token, State: fsm.IntentLaunched,
		Instance: inst, Term: term, At: now}); err != nil {
		return nil, fmt.Errorf("commit launch result: %w", err)
	}
	l.m.results.WithLabelValues("launched").Inc()
	if err := l.hook(ctx, StepAfterResult, token); err != nil {
		return nil, err
	}
	res := l.intent(token)
	l.afterResult(ctx, term, res)
	return res, nil
}

// afterResult mirrors a resolved intent into Kubernetes (best effort; the
// reconcile loop retries).
func (l *Launcher) afterResult(ctx context.Context, term uint64, in *fsm.Intent) {
	if l.cfg.Claims == nil || in == nil {
		return
	}
	switch in.State {
	case fsm.IntentLaunched:
		if err := l.cfg.Claims.MarkLaunched(ctx, in.NodeClaim, in.Instance, l.instanceType(ctx, in.Instance.InstanceType)); err != nil {
			l.log.Warn("set NodeClaim launched", "nodeClaim", in.NodeClaim, "err", err)
		}
	case fsm.IntentFailed:
		// Karpenter's contract: a NodeClaim that cannot launch is deleted, and
		// provisioning plans again around the cached capacity errors.
		reason := ReasonLaunchFailed
		if in.ICE {
			reason = ReasonInsufficientCapacity
		}
		if err := l.cfg.Claims.MarkLaunchFailed(ctx, in.NodeClaim, reason, in.Error); err != nil {
			l.log.Warn("set NodeClaim launch failed", "nodeClaim", in.NodeClaim, "err", err)
		}
		if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentUpdate{Token: in.Token, Deleting: true, At: l.cfg.Now()}); err != nil {
			l.log.Warn("mark failed intent deleting", "nodeClaim", in.NodeClaim, "err", err)
		}
	}
}

// Launched condition reasons, as Karpenter writes them.
const (
	// ReasonLaunchFailed is Karpenter's reason for a create error that
	// carries none of its own (Launched=Unknown, retried).
	ReasonLaunchFailed = "LaunchFailed"
	// ReasonInsufficientCapacity: no option could be filled (the claim is
	// then deleted and provisioning plans again around the ICE cache).
	ReasonInsufficientCapacity = "InsufficientCapacity"
	// ReasonNodeClassNotReady: the claim's EC2NodeClass cannot be read.
	ReasonNodeClassNotReady = "NodeClassNotReady"
)

// LaunchFailure returns the Launched=Unknown reason and message Karpenter
// writes for a failed create: a cloud.CreateError's own, otherwise
// LaunchFailed with the error text cut to 300 characters (Karpenter's
// truncateMessage). reason overrides the classification when not empty.
func LaunchFailure(reason string, err error) (string, string) {
	msg := err.Error()
	var ce *cloud.CreateError
	if errors.As(err, &ce) {
		if reason == "" {
			reason = ce.Reason
		}
		if ce.Message != "" {
			msg = ce.Message
		}
	}
	if reason == "" {
		reason = ReasonLaunchFailed
	}
	if len(msg) >= 300 {
		msg = msg[:300] + "..."
	}
	return reason, msg
}

// claimEvent records a Warning on the intent's NodeClaim with Karpenter's
// wording ("NodeClaim NAME event: ERROR", cut to 300 characters), deduped
// per NodeClaim for Karpenter's default 2 minutes.
func (l *Launcher) claimEvent(in *fsm.Intent, reason string, err error) {
	if l.cfg.Events == nil || in == nil || in.NodeClaim == "" {
		return
	}
	_, msg := LaunchFailure(reason, err)
	ref := &corev1.ObjectReference{APIVersion: karpv1.Group + "/v1", Kind: "NodeClaim", Name: in.NodeClaim, UID: types.UID(in.NodeClaimUID)}
	l.cfg.Events.Publish(eventdedupe.Event{Object: ref, Type: corev1.EventTypeWarning, Reason: reason,
		Message: fmt.Sprintf("NodeClaim %s event: %s", in.NodeClaim, msg), DedupeValues: []string{in.NodeClaimUID}})
}

// markRetrying mirrors a retried launch failure onto the NodeClaim (best
// effort: the next attempt writes it again).
func (l *Launcher) markRetrying(ctx context.Context, claim, reason string, err error) {
	if l.cfg.Claims == nil || claim == "" {
		return
	}
	r, msg := LaunchFailure(reason, err)
	if merr := l.cfg.Claims.MarkLaunchRetrying(ctx, claim, r, msg); merr != nil {
		l.log.Debug("set NodeClaim Launched=Unknown", "nodeClaim", claim, "err", merr)
	}
}

func (l *Launcher) nodeClass(ctx context.Context, name string) (*awsv1.EC2NodeClass, error) {
	if l.cfg.NodeClasses == nil {
		return nil, errors.New("launcher: no NodeClass source configured")
	}
	nc, err := l.cfg.NodeClasses.NodeClass(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("get EC2NodeClass %q: %w", name, err)
	}
	return nc, nil
}

func (l *Launcher) instanceType(ctx context.Context, name string) *cloud.InstanceType {
	src, ok := l.cfg.Cloud.(InstanceTypes)
	if !ok {
		return nil
	}
	l.typesMu.Lock()
	defer l.typesMu.Unlock()
	if l.types == nil {
		its, err := src.InstanceTypes(ctx)
		if err != nil {
			l.log.Warn("list instance types", "err", err)
			return nil
		}
		l.types = map[string]*cloud.InstanceType{}
		for _, it := range its {
			l.types[it.Name] = it
		}
	}
	return l.types[name]
}

// Delete marks the intent of a NodeClaim for termination (for callers that
// delete NodeClaims themselves and want the instance gone without waiting
// for the next pass).
func (l *Launcher) Delete(ctx context.Context, nodeClaim string) error {
	term, _, ok := l.lead()
	if !ok {
		return ErrNotLeader
	}
	in := l.Intent(nodeClaim)
	if in == nil {
		if l.cfg.Claims != nil {
			return l.cfg.Claims.Delete(ctx, nodeClaim)
		}
		return nil
	}
	if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentUpdate{Token: in.Token, Deleting: true, At: l.cfg.Now()}); err != nil {
		return fmt.Errorf("mark %s deleting: %w", nodeClaim, err)
	}
	if l.cfg.Claims != nil {
		if err := l.cfg.Claims.Delete(ctx, nodeClaim); err != nil {
			return err
		}
	}
	return l.terminate(ctx, term, in.Token)
}

// terminate finishes a Deleting intent: terminate the instance, release the
// NodeClaim's finalizer, forget the intent.
func (l *Launcher) terminate(ctx context.Context, term uint64, token string) error {
	unlock := l.lockToken(token)
	defer unlock()
	in := l.intent(token)
	if in == nil {
		return nil
	}
	if in.Instance == nil && !in.ICE {
		// Deleted before a launch result was committed: a launch may still
		// have reached the cloud (a crashed leader's), so look it up by tag.
		insts, err := l.cloudList(ctx, cloudmetrics.ControllerLifecycle)
		if err != nil {
			return fmt.Errorf("list instances for %s: %w", in.NodeClaim, err)
		}
		for _, inst := range insts {
			if inst.Tags[cloud.TagNodeClaim] == in.NodeClaim && !isTerminal(inst.State) {
				in.Instance = inst
				break
			}
		}
	}
	if in.Instance != nil {
		if err := l.cfg.Store.VerifyLeader(ctx, term); err != nil {
			return fmt.Errorf("before cloud delete: %w", err)
		}
		l.m.cloudCalls.WithLabelValues("delete").Inc()
		if err := l.cloudDelete(ctx, cloudmetrics.ControllerLifecycle, in.Instance.ID); err != nil && !errors.Is(err, cloud.ErrNotFound) {
			return fmt.Errorf("terminate %s: %w", in.Instance.ID, err)
		}
		got, err := l.cloudGet(ctx, cloudmetrics.ControllerLifecycle, in.Instance.ID)
		if err == nil && got.State != cloud.StateTerminated && got.State != cloud.StateShuttingDown {
			return fmt.Errorf("instance %s still %s", in.Instance.ID, got.State)
		}
	}
	if l.cfg.Claims != nil {
		if err := l.cfg.Claims.RemoveFinalizer(ctx, in.NodeClaim); err != nil {
			return fmt.Errorf("release NodeClaim %s: %w", in.NodeClaim, err)
		}
	}
	if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentDelete{Token: token}); err != nil {
		return fmt.Errorf("forget intent %s: %w", token, err)
	}
	l.lastICE.Delete(token)
	l.inflight.Delete(token)
	return nil
}

func isTerminal(state string) bool {
	return state == cloud.StateTerminated || state == cloud.StateShuttingDown
}

// The cloud calls, each measured as Karpenter's cloud provider decorator
// measures them, under the Karpenter controller that makes the call.

// commitRefusals commits to the replicated ICE cache the offerings EC2
// refused during the cloud calls just made (those the provider recorded in
// the ICEStore, and an ICE error's, skipped ones included: they are still
// out of capacity), so every replica's provider and the next plans skip
// them.
func (l *Launcher) commitRefusals(ctx context.Context, term uint64, now time.Time, ice *cloud.InsufficientCapacityError) error {
	pending := l.cfg.ICE.uncommitted()
	defer l.cfg.ICE.settle(pending)
	byKey := make(map[string]fsm.ICEEntry, len(pending))
	for _, e := range pending {
		byKey[e.Key()] = e
	}
	if ice != nil {
		for _, u := range ice.Unavailable {
			e := fsm.ICEEntry{InstanceType: u.InstanceType, Zone: u.Zone, CapacityType: u.CapacityType, Code: u.Code, Until: now.Add(l.cfg.ICETTL)}
			byKey[e.Key()] = e
		}
	}
	if len(byKey) == 0 {
		return nil
	}
	entries := make([]fsm.ICEEntry, 0, len(byKey))
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		entries = append(entries, byKey[k])
	}
	return l.cfg.Store.ApplyInTerm(ctx, term, fsm.ICEMark{Entries: entries})
}

// commitRefusalsOrLog is commitRefusals after a launch that did not fail
// for capacity: a lost commit costs the next leader one refused CreateFleet,
// so it is logged, not allowed to fail the launch's result.
func (l *Launcher) commitRefusalsOrLog(ctx context.Context, term uint64, now time.Time, token string) {
	if err := l.commitRefusals(ctx, term, now, nil); err != nil {
		l.log.Warn("commit refused offerings", "token", token, "term", term, "err", err)
	}
}

func (l *Launcher) cloudCreate(ctx context.Context, nodeClass *awsv1.EC2NodeClass, req *cloud.LaunchRequest) (*cloud.Instance, error) {
	start := l.cfg.Now()
	inst, err := l.cfg.Cloud.Create(ctx, nodeClass, req)
	l.cfg.CloudMetrics.Observe(cloudmetrics.ControllerLifecycle, cloudmetrics.MethodCreate, l.cfg.Now().Sub(start), err)
	return inst, err
}

func (l *Launcher) cloudDelete(ctx context.Context, controller, id string) error {
	start := l.cfg.Now()
	err := l.cfg.Cloud.Delete(ctx, id)
	l.cfg.CloudMetrics.Observe(controller, cloudmetrics.MethodDelete, l.cfg.Now().Sub(start), err)
	return err
}

func (l *Launcher) cloudGet(ctx context.Context, controller, id string) (*cloud.Instance, error) {
	start := l.cfg.Now()
	inst, err := l.cfg.Cloud.Get(ctx, id)
	l.cfg.CloudMetrics.Observe(controller, cloudmetrics.MethodGet, l.cfg.Now().Sub(start), err)
	return inst, err
}

func (l *Launcher) cloudList(ctx context.Context, controller string) ([]*cloud.Instance, error) {
	start := l.cfg.Now()
	insts, err := l.cfg.Cloud.List(ctx)
	l.cfg.CloudMetrics.Observe(controller, cloudmetrics.MethodList, l.cfg.Now().Sub(start), err)
	return insts, err
}
