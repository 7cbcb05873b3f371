// Package drain takes pods off a node before it goes away: it taints and
// cordons the node, then evicts pods through the eviction API so that
// PodDisruptionBudgets and grace periods are honoured, ordinary pods before
// critical ones, all before a deadline. The node agent uses it for spot
// interruptions and maintenance; the coordinator for voluntary disruption.
//
// It never deletes a pod that the deadline would not force: a pod whose PDB
// refuses eviction is retried until the deadline and then reported, unless
// the caller says the node dies at the deadline anyway (ForceDeleteBefore),
// in which case the pod is deleted just early enough to stop cleanly.
package drain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/podreq"
)

// Options configures a Drainer. The zero value is usable.
type Options struct {
	// DryRun makes every write a server-side dry run: the result says what
	// would be evicted and which PDBs would block, and nothing changes.
	DryRun bool
	// ReasonTaintKey is the key of the taint naming the reason.
	// Default InterruptionTaintKey.
	ReasonTaintKey string
	// Component names the actor in Events and the cordon annotation.
	// Default "dovetail".
	Component string
	// RetryInterval is the pause between eviction attempts a PDB refused
	// (jittered ±20 %). Default 1 s.
	RetryInterval time.Duration
	// PollInterval is how often the node's pods are listed to see which are
	// gone while a watch on them cannot be had (the watch is the normal
	// path: one request for the whole drain). Default 250 ms.
	PollInterval time.Duration
	// ResyncInterval is how often the pods are listed anyway while the watch
	// runs, in case it missed something. Default 10 s.
	ResyncInterval time.Duration
	// ProgressInterval is the least time between two Progress calls (the
	// final one always comes). Default 250 ms: a 250-pod drain reports a
	// few times a second, not once per pod.
	ProgressInterval time.Duration
	// ForceDeleteBefore, when positive, deletes pods still refused at
	// deadline-ForceDeleteBefore, with that much grace. Set it only when the
	// node is lost at the deadline regardless (spot interruption): the pod
	// dies then anyway, and a delete lets it stop cleanly. Zero (default):
	// blocked pods are reported, never deleted.
	ForceDeleteBefore time.Duration
	// CriticalLead bounds how long ordinary pods may hold up critical ones:
	// critical pods are evicted when the ordinary ones are gone or at
	// deadline - (their longest grace period + CriticalLead), but not before
	// half the time to the deadline has passed. Default 5 s.
	CriticalLead time.Duration
	// Concurrency bounds evictions in flight. Default 64: at 16 a 250-pod
	// drain waited on eviction round trips (2.2 s to the last accepted one
	// on the local control plane); at 64 the API server and kwok are the
	// limit (BenchmarkLargeDrain).
	Concurrency int
	// Progress, when set, is called from the drain's own goroutine after
	// each step with a copy of the result so far; it must not block.
	Progress func(Result)
	// Events receives Kubernetes Events; default writes them to the API.
	Events EventSink
	// EventClient, when set (and Events is not), sends Events from a
	// bounded queue in their own goroutine through this client, paced at
	// EventQPS/EventBurst (default 20/50): Events then cost the drain no
	// time and none of the main client's budget. Call Close at shutdown.
	EventClient kubernetes.Interface
	EventQPS    float32
	EventBurst  int
	Logger      *slog.Logger
	// Registry, when set, receives the drain metrics.
	Registry prometheus.Registerer
	// Observer, when set, is told the answer to every eviction request and
	// every pod whose eviction was accepted (the coordinator's Karpenter
	// metrics); it must not block.
	Observer Observer
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Observer is told what the drain's eviction requests got.
type Observer interface {
	// EvictionRequest is the HTTP status code of one eviction request's
	// answer: 200 accepted, 429 refused (a PodDisruptionBudget), 404 the pod
	// is gone, 409 replaced, 500 ... Answers without a status (a transport
	// error) are not told.
	EvictionRequest(code int)
	// PodEvicted is a pod whose eviction was accepted, with the drain's
	// reason (Drain's reason argument).
	PodEvicted(reason string)
}

// PodRef names a pod.
type PodRef struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid,omitempty"`
}

func (p PodRef) String() string { return p.Namespace + "/" + p.Name }

// Outcome of one pod.
const (
	OutcomeEvicted = "evicted" // eviction accepted (and, unless dry-run, the pod went away)
	OutcomeDeleted = "deleted" // deleted because the deadline forced it
	OutcomeBlocked = "blocked" // refused until the deadline (a PDB, usually)
	OutcomeFailed  = "failed"  // the API kept failing
	OutcomeGone    = "gone"    // went away by itself
	OutcomeStuck   = "stuck"   // eviction accepted, but the pod was still there at the deadline
	// OutcomePending: the drain was stopped (its context cancelled, e.g.
	// the agent was shut down) before this pod's eviction was accepted.
	OutcomePending = "pending"
)

// PodResult is what happened to one pod.
type PodResult struct {
	Pod      PodRef `json:"pod"`
	Critical bool   `json:"critical,omitempty"`
	Outcome  string `json:"outcome"`
	Attempts int    `json:"attempts"`
	Message  string `json:"message,omitempty"` // why blocked / failed
	// AcceptedAt is when the eviction (or forced delete) was accepted.
	AcceptedAt time.Time `json:"acceptedAt,omitempty"`
	GoneAt     time.Time `json:"goneAt,omitempty"`
}

// SkippedPod is a pod the drain leaves in place, with why.
type SkippedPod struct {
	Pod    PodRef `json:"pod"`
	Reason string `json:"reason"` // daemonset, mirror, terminal
}

// Result describes a drain.
type Result struct {
	Node       string    `json:"node"`
	Reason     string    `json:"reason"`
	DryRun     bool      `json:"dryRun,omitempty"`
	Deadline   time.Time `json:"deadline"`
	Started    time.Time `json:"started"`
	CordonedAt time.Time `json:"cordonedAt,omitempty"` // tainted and cordoned
	// TaintRefused is the API server's refusal of the disruption taints
	// when the drainer's identity may not taint (a node identity under
	// NodeRestriction); the drain then goes on with the cordon alone.
	TaintRefused string       `json:"taintRefused,omitempty"`
	Finished     time.Time    `json:"finished,omitempty"`
	LastGoneAt   time.Time    `json:"lastGoneAt,omitempty"` // the last evictable pod went away
	Pods         []PodResult  `json:"pods"`
	Skipped      []SkippedPod `json:"skipped,omitempty"`
	// Complete is true when every evictable pod is gone (dry run: would be
	// evicted without refusal).
	Complete bool `json:"complete"`
	// Stopped says why the drain ended before the deadline without being
	// complete: the caller's context was cancelled (agent shutdown). Its
	// pods then say what had happened so far: evicted (accepted; GoneAt
	// zero if still terminating), pending (not yet evicted), blocked.
	Stopped string `json:"stopped,omitempty"`
}

// Accepted is the number of pods whose eviction (or forced delete) the API
// accepted, gone yet or not.
func (r Result) Accepted() int {
	n := 0
	for _, p := range r.Pods {
		if !p.AcceptedAt.IsZero() {
			n++
		}
	}
	return n
}

// Terminating is the number of pods whose eviction was accepted but that
// were not yet seen gone.
func (r Result) Terminating() int {
	n := 0
	for _, p := range r.Pods {
		if !p.AcceptedAt.IsZero() && p.GoneAt.IsZero() {
			n++
		}
	}
	return n
}

// TookToEmpty is the time from the drain's start to the last pod gone, and
// false when the node never emptied (or had no pod to drain), so that a
// caller never prints a duration computed from a zero time.
func (r Result) TookToEmpty() (time.Duration, bool) {
	if !r.Complete || r.DryRun {
		return 0, false
	}
	if r.LastGoneAt.IsZero() {
		return 0, len(r.Pods) == 0
	}
	return r.LastGoneAt.Sub(r.Started), true
}

// TookToCordon is the time from the start to the node tainted and cordoned,
// false when it never was.
func (r Result) TookToCordon() (time.Duration, bool) {
	if r.CordonedAt.IsZero() {
		return 0, false
	}
	return r.CordonedAt.Sub(r.Started), true
}

// Count returns how many pods ended with outcome.
func (r Result) Count(outcome string) int {
	n := 0
	for _, p := range r.Pods {
		if p.Outcome == outcome {
			n++
		}
	}
	return n
}

// Remaining is the number of evictable pods not known to be gone.
func (r Result) Remaining() int {
	n := 0
	for _, p := range r.Pods {
		if p.GoneAt.IsZero() {
			n++
		}
	}
	return n
}

// Blocked lists pods refused at the end, with the reason.
func (r Result) Blocked() []PodResult {
	var out []PodResult
	for _, p := range r.Pods {
		if p.Outcome == OutcomeBlocked {
			out = append(out, p)
		}
	}
	return out
}

// Drainer drains nodes through one Kubernetes client.
type Drainer struct {
	client  kubernetes.Interface
	opts    Options
	log     *slog.Logger
	events  eventWriter
	metrics *metrics
}

// New returns a Drainer. It fails only when metrics cannot be registered.
func New(client kubernetes.Interface, opts Options) (*Drainer, error) {
	if client == nil {
		return nil, errors.New("drain: nil Kubernetes client")
	}
	if opts.ReasonTaintKey == "" {
		opts.ReasonTaintKey = InterruptionTaintKey
	}
	if opts.Component == "" {
		opts.Component = "dovetail"
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = 10 * time.Second
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = 250 * time.Millisecond
	}
	if opts.CriticalLead <= 0 {
		opts.CriticalLead = 5 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	d := &Drainer{client: client, opts: opts, log: opts.Logger.With("component", "drain"), metrics: m}
	d.events = eventWriter{sink: opts.Events, client: client, component: opts.Component, log: d.log, now: opts.Now}
	if opts.Events == nil && opts.EventClient != nil {
		d.events.queue = newEventQueue(opts.EventClient, opts.EventQPS, opts.EventBurst, d.log, m)
	}
	return d, nil
}

// Well-known priority classes whose pods go last.
const (
	SystemClusterCritical = "system-cluster-critical"
	SystemNodeCritical    = "system-node-critical"
	// criticalPriority is the lowest priority value of the system classes.
	criticalPriority = 2000000000
)

// Classify says whether the drain evicts pod, and if so whether it is
// critical; skip is the reason a pod stays (daemonset, mirror, terminal).
func Classify(pod *corev1.Pod) (evict, critical bool, skip string) {
	// The same rule as podreq.MovesOnDrain, with the reason kept.
	if podreq.IsMirror(pod) {
		return false, false, "mirror"
	}
	if podreq.IsDaemonSetPod(pod) {
		return false, false, "daemonset"
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false, false, "terminal"
	}
	critical = pod.Spec.PriorityClassName == SystemClusterCritical ||
		pod.Spec.PriorityClassName == SystemNodeCritical ||
		(pod.Spec.Priority != nil && *pod.Spec.Priority >= criticalPriority)
	return true, critical, ""
}

// podState is the drain's working record of one pod.
type podState struct {
	pod      *corev1.Pod
	res      PodResult
	accepted bool
	reported bool // blocked event sent
}

// run is one drain in progress.
type run struct {
	d        *Drainer
	node     string
	reason   string
	deadline time.Time

	mu     sync.Mutex
	result Result
	pods   map[types.UID]*podState
	order  []types.UID

	// changed is signalled (never blocking) when a pod is seen gone.
	changed      chan struct{}
	lastProgress time.Time
}

// Drain taints and cordons node, then evicts its pods before deadline. The
// error is for failures to act at all (node missing, API down, ctx
// cancelled); pods refused until the deadline are reported in the Result,
// which is returned (as far as it got) in every case.
func (d *Drainer) Drain(ctx context.Context, node string, deadline time.Time, reason string) (Result, error) {
	started := d.opts.Now()
	r := &run{d: d, node: node, reason: reason, deadline: deadline, pods: map[types.UID]*podState{}, changed: make(chan struct{}, 1)}
	r.result = Result{Node: node, Reason: reason, DryRun: d.opts.DryRun, Deadline: deadline, Started: started}
	log := d.log.With("node", node, "reason", reason, "dryRun", d.opts.DryRun)

	if _, err := d.Taint(ctx, node, DisruptionTaints(d.opts.ReasonTaintKey, reason)...); err != nil {
		if !apierrors.IsForbidden(err) {
			return r.snapshot(), err
		}
		// The node agent acts with its node's own identity, which the API
		// server never lets change taints (NodeRestriction: a node must not
		// steer workloads to itself). The cordon keeps new pods away just
		// the same (the scheduler filters unschedulable nodes); the
		// coordinator puts Karpenter's disrupted taint on when it acts on
		// the report.
		r.result.TaintRefused = err.Error()
		log.Warn("identity may not taint the node; draining with the cordon alone", "err", err)
	}
	if _, err := d.Cordon(ctx, node); err != nil {
		return r.snapshot(), err
	}
	r.mu.Lock()
	r.result.CordonedAt = d.opts.Now()
	r.mu.Unlock()
	d.metrics.cordonLatency.Observe(r.result.CordonedAt.Sub(started).Seconds())
	log.Info("node tainted and cordoned", "deadline", deadline)
	r.progress()

	pods, rv, err := d.podsOn(ctx, node)
	if err != nil {
		return r.snapshot(), err
	}
	var ordinary, critical []*podState
	for i := range pods {
		p := &pods[i]
		evict, crit, skip := Classify(p)
		ref := PodRef{Namespace: p.Namespace, Name: p.Name, UID: p.UID}
		if !evict {
			r.result.Skipped = append(r.result.Skipped, SkippedPod{Pod: ref, Reason: skip})
			continue
		}
		st := &podState{pod: p, res: PodResult{Pod: ref, Critical: crit}}
		r.pods[p.UID] = st
		r.order = append(r.order, p.UID)
		if crit {
			critical = append(critical, st)
		} else {
			ordinary = append(ordinary, st)
		}
	}
	if !d.opts.DryRun {
		did := fmt.Sprintf("Tainted %s and %s=%s, cordoned", DisruptedTaintKey, d.opts.ReasonTaintKey, sanitizeLabelValue(reason))
		if r.result.TaintRefused != "" {
			did = "Cordoned (taints refused to this identity)"
		}
		d.events.nodeEvent(ctx, node, corev1.EventTypeNormal, "Draining", fmt.Sprintf(
			"%s; draining %d pods (%d critical, %d left in place) before %s",
			did, len(r.order), len(critical), len(r.result.Skipped), deadline.UTC().Format(time.RFC3339)))
	}

	if d.opts.DryRun {
		r.dryRun(ctx, append(ordinary, critical...))
		res := r.snapshot()
		res.Finished = d.opts.Now()
		res.Complete = res.Count(OutcomeBlocked)+res.Count(OutcomeFailed) == 0
		return res, ctx.Err()
	}

	err = r.evictAndWait(ctx, rv, ordinary, critical)
	res := r.finish(ctx, err)
	d.metrics.drains.WithLabelValues(fmt.Sprint(res.Complete)).Inc()
	d.metrics.duration.Observe(res.Finished.Sub(started).Seconds())
	attrs := []any{"complete", res.Complete, "accepted", res.Accepted(), "gone", len(res.Pods) - res.Remaining(),
		"remaining", res.Remaining(), "terminating", res.Terminating(), "pending", res.Count(OutcomePending),
		"blocked", res.Count(OutcomeBlocked), "deleted", res.Count(OutcomeDeleted)}
	if took, ok := res.TookToEmpty(); ok {
		attrs = append(attrs, "tookToEmpty", took)
	}
	if res.Stopped != "" {
		attrs = append(attrs, "stopped", res.Stopped)
	}
	log.Info("drain finished", attrs...)
	return res, err
}

// podsOn lists the pods bound to node, with the list's resourceVersion (to
// watch from). The field selector is filtered again locally: some clients
// (fakes, caches) ignore it.
func (d *Drainer) podsOn(ctx context.Context, node string) ([]corev1.Pod, string, error) {
	list, err := d.client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: nodeSelector(node),
	})
	if err != nil {
		return nil, "", fmt.Errorf("list pods on %s: %w", node, err)
	}
	out := list.Items[:0]
	for _, p := range list.Items {
		if p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, list.ResourceVersion, nil
}

func nodeSelector(node string) string {
	return fields.OneTermEqualSelector("spec.nodeName", node).String()
}

func (r *run) dryRun(ctx context.Context, pods []*podState) {
	for _, st := range pods {
		err := r.d.evict(ctx, st.pod, r.grace(st.pod))
		r.mu.Lock()
		st.res.Attempts = 1
		switch {
		case err == nil:
			st.res.Outcome = OutcomeEvicted
		case apierrors.IsTooManyRequests(err):
			st.res.Outcome, st.res.Message = OutcomeBlocked, err.Error()
		case apierrors.IsNotFound(err):
			st.res.Outcome = OutcomeGone
		default:
			st.res.Outcome, st.res.Message = OutcomeFailed, err.Error()
		}
		r.mu.Unlock()
	}
}

// evictAndWait evicts the ordinary pods at once and the critical ones when
// the ordinary ones are gone or time runs short, and watches the node's pods
// until every one is gone or the deadline passes. The watch is set up before
// the first eviction, so every deletion an eviction causes is seen, and it
// costs one request for the whole drain where listing every 250 ms took
// four a second from the evictions' budget.
func (r *run) evictAndWait(ctx context.Context, rv string, ordinary, critical []*podState) error {
	parent := ctx
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel below: workers stop at once
	// The deadline is on the injected clock: a context deadline is on the
	// wall clock, so give it the time left as the drain's clock counts it.
	ctx, cancel := context.WithTimeout(ctx, r.deadline.Sub(r.d.opts.Now()))
	defer cancel()
	watching := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.watchPods(ctx, rv, watching)
	}()
	select {
	case <-watching:
	case <-ctx.Done():
	}

	sem := make(chan struct{}, r.d.opts.Concurrency)
	start := func(pods []*podState) {
		for _, st := range pods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.evictUntilDeadline(ctx, sem, st)
			}()
		}
	}
	start(ordinary)

	var maxCriticalGrace time.Duration
	for _, st := range critical {
		maxCriticalGrace = max(maxCriticalGrace, podGrace(st.pod))
	}
	// Ordinary pods get at least half the window even when the critical
	// pods' grace periods would ask for more: order matters more than a
	// critical pod's full grace when the deadline is that close.
	now := r.d.opts.Now()
	criticalAt := r.deadline.Add(-maxCriticalGrace - r.d.opts.CriticalLead)
	if half := now.Add(r.deadline.Sub(now) / 2); criticalAt.Before(half) {
		criticalAt = half
	}
	criticalStarted := len(critical) == 0
	var criticalC <-chan time.Time
	if !criticalStarted {
		t := time.NewTimer(max(criticalAt.Sub(now), 0))
		defer t.Stop()
		criticalC = t.C
	}
	var progressT *time.Timer
	var progressC <-chan time.Time
	defer func() {
		if progressT != nil {
			progressT.Stop()
		}
	}()

	for {
		if !criticalStarted && (r.allGone(ordinary) || !r.d.opts.Now().Before(criticalAt)) {
			criticalStarted = true
			start(critical)
		}
		if criticalStarted && r.allGone(nil) {
			return nil
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return parent.Err() // the caller's context, not the deadline
			}
			return nil
		case <-r.changed:
			// At most one Progress per ProgressInterval: the final one
			// comes from finish.
			wait := r.d.opts.ProgressInterval - r.d.opts.Now().Sub(r.lastProgress)
			if wait <= 0 {
				r.progress()
			} else if progressC == nil {
				progressT = time.NewTimer(wait)
				progressC = progressT.C
			}
		case <-progressC:
			progressC = nil
			r.progress()
		case <-criticalC:
			criticalC = nil
		}
	}
}

// watchPods follows the node's pods until ctx ends, marking tracked pods
// gone as they are deleted (or finish). It closes ready once the first
// watch is established, or has failed (the drain must not wait for it).
// A failed or expired watch is replaced after a re-list; while no watch can
// be had it lists every PollInterval; with one it re-lists every
// ResyncInterval in case an event was missed.
func (r *run) watchPods(ctx context.Context, rv string, ready chan struct{}) {
	markReady := sync.OnceFunc(func() { close(ready) })
	defer markReady()
	opts := r.d.opts
	failing := false
	for ctx.Err() == nil {
		if rv == "" {
			var err error
			if rv, err = r.observe(ctx); err != nil {
				if ctx.Err() == nil && !failing {
					r.d.log.Warn("listing pods while draining", "node", r.node, "err", err)
				}
				failing = true
				markReady()
				sleepCtx(ctx, opts.PollInterval)
				continue
			}
		}
		w, err := r.d.client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{
			FieldSelector: nodeSelector(r.node), ResourceVersion: rv, AllowWatchBookmarks: true,
		})
		if err != nil {
			if ctx.Err() == nil && !failing {
				r.d.log.Warn("watching pods while draining; listing instead", "node", r.node, "err", err)
			}
			failing = true
			rv = ""
			markReady()
			sleepCtx(ctx, opts.PollInterval)
			continue
		}
		if failing {
			r.d.log.Info("watching pods again", "node", r.node)
			failing = false
		}
		markReady()
		rv = r.consume(ctx, w, rv)
	}
}

// consume reads one watch until it ends, ctx ends or a resync is due. It
// returns the resourceVersion to watch from next, "" to re-list first.
func (r *run) consume(ctx context.Context, w watch.Interface, rv string) string {
	defer w.Stop()
	resync := time.NewTimer(r.d.opts.ResyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return rv
		case <-resync.C:
			return ""
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv // the server closed it (timeout): resume from rv
			}
			switch ev.Type {
			case watch.Error:
				return "" // 410 Gone and the like: re-list
			case watch.Bookmark, watch.Added, watch.Modified, watch.Deleted:
			default:
				continue
			}
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if pod.ResourceVersion != "" {
				rv = pod.ResourceVersion
			}
			if ev.Type == watch.Deleted || (ev.Type != watch.Bookmark &&
				(pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed)) {
				r.markGone(pod.UID, r.d.opts.Now())
			}
		}
	}
}

// markGone records that a tracked pod went away.
func (r *run) markGone(uid types.UID, now time.Time) {
	r.mu.Lock()
	st := r.pods[uid]
	if st == nil || !st.res.GoneAt.IsZero() {
		r.mu.Unlock()
		return
	}
	st.res.GoneAt = now
	if st.res.Outcome == "" {
		st.res.Outcome = OutcomeGone
	}
	if now.After(r.result.LastGoneAt) {
		r.result.LastGoneAt = now
	}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// observe lists the node's pods and marks tracked pods that went away. It
// returns the list's resourceVersion.
func (r *run) observe(ctx context.Context) (string, error) {
	pods, rv, err := r.d.podsOn(ctx, r.node)
	if err != nil {
		return "", err
	}
	present := make(map[types.UID]bool, len(pods))
	for _, p := range pods {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			present[p.UID] = true
		}
	}
	now := r.d.opts.Now()
	r.mu.Lock()
	var gone []types.UID
	for uid, st := range r.pods {
		if st.res.GoneAt.IsZero() && !present[uid] {
			gone = append(gone, uid)
		}
	}
	r.mu.Unlock()
	for _, uid := range gone {
		r.markGone(uid, now)
	}
	return rv, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (r *run) allGone(pods []*podState) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if pods == nil {
		for _, st := range r.pods {
			if st.res.GoneAt.IsZero() {
				return false
			}
		}
		return true
	}
	for _, st := range pods {
		if st.res.GoneAt.IsZero() {
			return false
		}
	}
	return true
}

// evictUntilDeadline evicts one pod, retrying refusals until the deadline.
func (r *run) evictUntilDeadline(ctx context.Context, sem chan struct{}, st *podState) {
	d := r.d
	log := d.log.With("node", r.node, "pod", st.res.Pod.String())
	for {
		if r.isGone(st) {
			return
		}
		now := d.opts.Now()
		if d.opts.ForceDeleteBefore > 0 && !now.Before(r.deadline.Add(-d.opts.ForceDeleteBefore)) {
			r.forceDelete(ctx, st)
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return // finish settles the outcome
		}
		err := d.evict(ctx, st.pod, r.grace(st.pod))
		<-sem
		d.observeEviction(err, r.reason)
		r.mu.Lock()
		st.res.Attempts++
		r.mu.Unlock()
		switch {
		case err == nil:
			d.metrics.evictions.WithLabelValues("accepted").Inc()
			r.mu.Lock()
			st.accepted = true
			st.res.Outcome = OutcomeEvicted
			st.res.Message = ""
			st.res.AcceptedAt = d.opts.Now()
			r.mu.Unlock()
			d.events.podEvent(ctx, st.pod, corev1.EventTypeNormal, "Evicted",
				fmt.Sprintf("Evicted by %s: node %s is draining (%s)", d.opts.Component, r.node, r.reason))
			log.Debug("eviction accepted")
			return
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			// Gone, or replaced by a pod with the same name (UID precondition).
			r.mu.Lock()
			if st.res.Outcome == "" {
				st.res.Outcome = OutcomeGone
			}
			r.mu.Unlock()
			return
		case apierrors.IsTooManyRequests(err):
			d.metrics.evictions.WithLabelValues("refused").Inc()
			r.mu.Lock()
			st.res.Outcome, st.res.Message = OutcomeBlocked, err.Error()
			first := !st.reported
			st.reported = true
			r.mu.Unlock()
			if first {
				log.Info("eviction refused, retrying until the deadline", "err", err)
				d.events.podEvent(ctx, st.pod, corev1.EventTypeWarning, "EvictionBlocked",
					fmt.Sprintf("Eviction refused, retrying until %s: %v", r.deadline.UTC().Format(time.RFC3339), err))
			}
		default:
			d.metrics.evictions.WithLabelValues("error").Inc()
			r.mu.Lock()
			if st.res.Outcome != OutcomeBlocked {
				st.res.Outcome = OutcomeFailed
			}
			repeated := st.res.Message == err.Error()
			st.res.Message = err.Error()
			r.mu.Unlock()
			if !repeated { // once per distinct error, not once a second
				log.Warn("eviction failed, retrying until the deadline", "err", err)
			}
		}
		wait := jitter(d.opts.RetryInterval)
		if d.opts.ForceDeleteBefore > 0 {
			// Wake up in time to force the delete.
			wait = min(wait, max(r.deadline.Add(-d.opts.ForceDeleteBefore).Sub(d.opts.Now()), time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// observeEviction tells the Observer about one eviction request's answer.
func (d *Drainer) observeEviction(err error, reason string) {
	o := d.opts.Observer
	if o == nil || d.opts.DryRun { // a dry run evicts nothing
		return
	}
	if err == nil {
		o.EvictionRequest(http.StatusOK)
		o.PodEvicted(reason)
		return
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		o.EvictionRequest(int(st.Status().Code))
	}
}

func (r *run) isGone(st *podState) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !st.res.GoneAt.IsZero()
}

// forceDelete deletes a pod the deadline is about to kill anyway, with the
// grace that is left, so it can still stop cleanly.
func (r *run) forceDelete(ctx context.Context, st *podState) {
	d := r.d
	grace := int64(max(r.deadline.Sub(d.opts.Now()), time.Second) / time.Second)
	if pg := int64(podGrace(st.pod) / time.Second); pg < grace {
		grace = pg
	}
	uid := st.pod.UID
	err := d.client.CoreV1().Pods(st.pod.Namespace).Delete(ctx, st.pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &grace,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil && !apierrors.IsNotFound(err) {
		d.metrics.evictions.WithLabelValues("error").Inc()
		st.res.Message = fmt.Sprintf("forced delete failed: %v", err)
		if st.res.Outcome == "" {
			st.res.Outcome = OutcomeFailed
		}
		return
	}
	d.metrics.evictions.WithLabelValues("deleted").Inc()
	prev := st.res.Message
	st.accepted = true
	st.res.AcceptedAt = d.opts.Now()
	st.res.Outcome = OutcomeDeleted
	st.res.Message = "deleted at the deadline (the node is lost then anyway); was: " + prev
	// Karpenter's reason and type for a pod deleted to meet its node's
	// termination time ("Disrupted", Normal), so Event-based alerts carry
	// over; the message says what was bypassed and why.
	go d.events.podEvent(context.WithoutCancel(ctx), st.pod, corev1.EventTypeNormal, "Disrupted",
		fmt.Sprintf("Deleting the pod with %ds of grace to meet the termination time %s of node %s (%s): eviction was refused (%s); this bypasses the pod's PodDisruptionBudget",
			grace, r.deadline.UTC().Format(time.RFC3339), r.node, r.reason, prev))
}

// grace is the pod's own grace period, shortened to what is left before
// the deadline (the node will not wait longer).
func (r *run) grace(pod *corev1.Pod) *int64 {
	g := podGrace(pod)
	if left := r.deadline.Sub(r.d.opts.Now()); left < g {
		g = max(left, 0)
	}
	s := int64(g / time.Second)
	return &s
}

func podGrace(pod *corev1.Pod) time.Duration {
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// evict posts an Eviction for pod, guarded by its UID.
func (d *Drainer) evict(ctx context.Context, pod *corev1.Pod, grace *int64) error {
	uid := pod.UID
	opts := &metav1.DeleteOptions{GracePeriodSeconds: grace, Preconditions: &metav1.Preconditions{UID: &uid}}
	if d.opts.DryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return d.client.PolicyV1().Evictions(pod.Namespace).Evict(ctx, &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
		DeleteOptions: opts,
	})
}

func (r *run) snapshot() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.result
	res.Pods = make([]PodResult, 0, len(r.order))
	for _, uid := range r.order {
		res.Pods = append(res.Pods, r.pods[uid].res)
	}
	res.Skipped = append([]SkippedPod(nil), r.result.Skipped...)
	return res
}

func (r *run) progress() {
	r.lastProgress = r.d.opts.Now()
	if r.d.opts.Progress != nil {
		r.d.opts.Progress(r.snapshot())
	}
}

// finish settles every pod's outcome, emits the closing node Event and
// returns the final result. stopped is the caller's context error when the
// drain was cancelled before the deadline (agent shutdown): the result then
// says what had happened so far rather than what a deadline would mean.
func (r *run) finish(ctx context.Context, stopped error) Result {
	r.mu.Lock()
	for _, st := range r.pods {
		if !st.res.GoneAt.IsZero() {
			continue
		}
		switch {
		case stopped != nil && st.accepted:
			st.res.Message = "eviction accepted; the pod was still terminating when the drain was stopped"
		case stopped != nil && st.res.Outcome == "":
			st.res.Outcome = OutcomePending
			st.res.Message = "the drain was stopped before this pod was evicted"
		case stopped != nil:
			// blocked or failed so far: that is what happened.
		case st.accepted && st.res.Outcome == OutcomeEvicted:
			st.res.Outcome = OutcomeStuck
			st.res.Message = "eviction accepted but the pod had not terminated by the deadline"
		case st.res.Outcome == "":
			st.res.Outcome = OutcomeBlocked
			st.res.Message = "deadline reached before the pod could be evicted"
		}
	}
	r.result.Finished = r.d.opts.Now()
	r.mu.Unlock()
	res := r.snapshot()
	res.Complete = res.Remaining() == 0
	cause := context.Cause(ctx)
	if stopped != nil && !res.Complete {
		if cause == nil {
			cause = stopped
		}
		res.Stopped = "stopped before the deadline: " + cause.Error()
	}
	ctx = context.WithoutCancel(ctx)
	switch {
	case res.Complete:
		r.d.events.nodeEvent(ctx, r.node, corev1.EventTypeNormal, "Drained",
			fmt.Sprintf("Drained %d pods for %s", len(res.Pods), r.reason))
	case stopped != nil:
		r.d.events.nodeEvent(ctx, r.node, corev1.EventTypeWarning, "DrainStopped",
			fmt.Sprintf("Drain for %s stopped (%s): %d evictions accepted, %d of %d pods gone, %d still terminating, %d not yet evicted, %d blocked",
				r.reason, cause, res.Accepted(), len(res.Pods)-res.Remaining(), len(res.Pods), res.Terminating(),
				res.Count(OutcomePending), res.Count(OutcomeBlocked)))
	default:
		var blocked []string
		for _, p := range res.Pods {
			if p.GoneAt.IsZero() {
				blocked = append(blocked, fmt.Sprintf("%s (%s: %s)", p.Pod, p.Outcome, p.Message))
			}
		}
		r.d.events.nodeEvent(ctx, r.node, corev1.EventTypeWarning, "DrainIncomplete",
			truncate(fmt.Sprintf("%d pods remain at the deadline: %v", len(blocked), blocked), 1000))
	}
	if r.d.opts.Progress != nil {
		r.d.opts.Progress(res)
	}
	return res
}

func jitter(d time.Duration) time.Duration {
	return d*8/10 + rand.N(d*4/10+1)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

type metrics struct {
	evictions     *prometheus.CounterVec
	drains        *prometheus.CounterVec
	duration      prometheus.Histogram
	cordonLatency prometheus.Histogram
	eventsSent    prometheus.Counter
	eventsDropped *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_drain_evictions_total", Help: "Eviction attempts by result (accepted, refused, error, deleted).",
		}, []string{"result"}),
		drains: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_drain_total", Help: "Drains finished, by whether every evictable pod was gone.",
		}, []string{"complete"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dovetail_drain_duration_seconds", Help: "Time from drain start to finish.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 12),
		}),
		cordonLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dovetail_drain_cordon_seconds", Help: "Time from drain start to the node tainted and cordoned.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		eventsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dovetail_drain_events_total", Help: "Kubernetes Events sent from the drain's event queue.",
		}),
		eventsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_drain_events_dropped_total", Help: "Events not sent, by reason (queue-full, error, shutdown).",
		}, []string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.evictions, m.drains, m.duration, m.cordonLatency, m.eventsSent, m.eventsDropped} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("drain: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Derive returns a Drainer that shares this one's client, metrics and
// event sink but with options changed by edit (a per-drain Progress or
// ForceDeleteBefore, say). Metrics cannot be registered twice, so callers
// make one Drainer with a Registry and derive the rest from it.
func (d *Drainer) Derive(edit func(*Options)) *Drainer {
	c := *d
	edit(&c.opts)
	c.log = c.opts.Logger.With("component", "drain")
	c.events.sink = c.opts.Events
	return &c
}
