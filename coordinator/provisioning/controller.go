package provisioning

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/ctrlmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/eventdedupe"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

// Launcher creates a NodeClaim and launches its instance. The coordinator
// implements it: create the NodeClaim in Kubernetes, commit the intent to
// Raft, then call EC2 with the options (cheapest first, spot first).
type Launcher interface {
	Launch(ctx context.Context, nc *karpv1.NodeClaim, options []cloud.LaunchOption) error
}

// InstanceTypeProvider lists the instance types with their offerings; the
// EC2 provider implements it (offerings in its insufficient-capacity cache
// come back with Available false).
type InstanceTypeProvider interface {
	InstanceTypes(ctx context.Context) ([]*cloud.InstanceType, error)
}

// GroupVersionResources of the custom resources the controller watches.
var (
	NodePoolsGVR      = schema.GroupVersionResource{Group: karpv1.Group, Version: "v1", Resource: "nodepools"}
	NodeClaimsGVR     = schema.GroupVersionResource{Group: karpv1.Group, Version: "v1", Resource: "nodeclaims"}
	EC2NodeClassesGVR = schema.GroupVersionResource{Group: awsv1.Group, Version: "v1", Resource: "ec2nodeclasses"}
)

// Config wires a Controller.
type Config struct {
	Kube          kubernetes.Interface
	Dynamic       dynamic.Interface
	InstanceTypes InstanceTypeProvider
	Launcher      Launcher
	// Recorder emits events on pods; nil creates one writing to the API server.
	Recorder record.EventRecorder
	Region   string
	// IdleGap and MaxWindow shape batches (defaults 1 s and 10 s).
	IdleGap, MaxWindow time.Duration
	// Resync re-plans this often while pods stay pending (default 30 s), so
	// capacity that was unavailable is retried.
	Resync time.Duration
	// Parallelism bounds concurrent launches (default 16).
	Parallelism int
	Clock       clock.Clock
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
	Scheduling  scheduling.Options
	// Names overrides NodeClaim naming (tests); nil means RandomName.
	Names NameFunc
	// Nominated, when set, is told every nomination of every pass as the
	// pass plans it (a pod onto an existing node, an in-flight NodeClaim or
	// a NodeClaim the pass is about to launch), whatever Karpenter's dedupe
	// (one Nominated Event per pod per 2 minutes) and rate limit (5/s,
	// burst 10) let through as Events, and before the launches: the Event
	// for a new claim's pods waits for its launch (tens of seconds into a
	// big scale-up, when kube-scheduler has bound many of them already).
	// Called from the pass's goroutine only.
	Nominated func(Nomination)
	// Reconciles, when set, counts and times every pass as a reconcile of
	// the "provisioner" controller and serves its queue (the pods waiting
	// for a pass) as workqueue_depth, for Karpenter's controller dashboards.
	Reconciles *ctrlmetrics.Controller
}

// Controller is the provisioning loop. Run it only on the leader, under a
// context cancelled when leadership is lost.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	batcher *Batcher
	metrics *metrics

	kubeInformers informers.SharedInformerFactory
	dynInformers  dynamicinformer.DynamicSharedInformerFactory
	podInf        cache.SharedIndexInformer
	listers       listers

	mu sync.Mutex
	// launched remembers claims launched by this controller that its
	// informer has not shown yet, so the next batch does not launch again
	// for the same pods.
	launched map[string]launchedClaim
	// events publishes with Karpenter's dedupe (one FailedScheduling per
	// pod per 5 minutes, whatever the provisioning passes in between).
	events *eventdedupe.Recorder
	// nominations is Karpenter's Nominated rate limit (5/s, burst 10),
	// shared by every pass so a big scale-up does not flood the API server.
	nominations flowcontrol.RateLimiter
}

// Nomination is where one provisioning pass expects one pod to run.
type Nomination struct {
	Pod *corev1.Pod
	// NodeClaim or Node: an in-flight or just-launched claim, or an
	// existing node.
	NodeClaim, Node string
	// New: NodeClaim is one this pass launches (for this pod among
	// others); its launch may still fail.
	New bool
	// Pass is when the pass planned (the controller's clock): equal for
	// all nominations of one pass, increasing from pass to pass.
	Pass time.Time
}

type launchedClaim struct {
	nc *karpv1.NodeClaim
	at time.Time
}

// launchedGrace is how long a launched claim the informer has not shown
// yet still counts as in flight; after that the launcher is assumed to
// have given it up (e.g. deleted it after an insufficient-capacity error).
const launchedGrace = 2 * time.Minute

// Karpenter's dedupe timeouts (pkg/controllers/provisioning/scheduling/events.go).
const (
	failedSchedulingDedupe  = 5 * time.Minute
	noCompatibleTypesDedupe = time.Minute
	nominationQPS, nomBurst = 5, 10
)

type listers struct {
	pods, nodes, daemonSets, pvcs, pvs, storageClasses cache.GenericLister
	nodePools, nodeClaims, nodeClasses                 cache.GenericLister
	// namespaces: their labels, for pod affinity terms' namespaceSelector.
	namespaces cache.GenericLister
}

// New builds a controller; call Run to start it.
func New(cfg Config) (*Controller, error) {
	if cfg.Kube == nil || cfg.Dynamic == nil || cfg.InstanceTypes == nil || cfg.Launcher == nil {
		return nil, errors.New("provisioning: Kube, Dynamic, InstanceTypes and Launcher are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = 16
	}
	if cfg.Names == nil {
		cfg.Names = RandomName
	}
	c := &Controller{
		cfg:         cfg,
		log:         cfg.Logger.With("controller", "provisioning"),
		batcher:     NewBatcher(cfg.IdleGap, cfg.MaxWindow, cfg.Clock),
		metrics:     newMetrics(cfg.Registerer),
		launched:    map[string]launchedClaim{},
		events:      eventdedupe.New(cfg.Recorder, cfg.Clock),
		nominations: flowcontrol.NewTokenBucketRateLimiterWithClock(nominationQPS, nomBurst, cfg.Clock),
	}
	c.kubeInformers = informers.NewSharedInformerFactory(cfg.Kube, 0)
	c.dynInformers = dynamicinformer.NewDynamicSharedInformerFactory(cfg.Dynamic, 0)
	core := c.kubeInformers.Core().V1()
	c.podInf = core.Pods().Informer()
	c.listers = listers{
		pods:           cache.NewGenericLister(c.podInf.GetIndexer(), corev1.Resource("pods")),
		nodes:          cache.NewGenericLister(core.Nodes().Informer().GetIndexer(), corev1.Resource("nodes")),
		daemonSets:     cache.NewGenericLister(c.kubeInformers.Apps().V1().DaemonSets().Informer().GetIndexer(), corev1.Resource("daemonsets")),
		pvcs:           cache.NewGenericLister(core.PersistentVolumeClaims().Informer().GetIndexer(), corev1.Resource("persistentvolumeclaims")),
		pvs:            cache.NewGenericLister(core.PersistentVolumes().Informer().GetIndexer(), corev1.Resource("persistentvolumes")),
		storageClasses: cache.NewGenericLister(c.kubeInformers.Storage().V1().StorageClasses().Informer().GetIndexer(), corev1.Resource("storageclasses")),
		nodePools:      c.dynInformers.ForResource(NodePoolsGVR).Lister(),
		nodeClaims:     c.dynInformers.ForResource(NodeClaimsGVR).Lister(),
		nodeClasses:    c.dynInformers.ForResource(EC2NodeClassesGVR).Lister(),
		namespaces:     cache.NewGenericLister(core.Namespaces().Informer().GetIndexer(), corev1.Resource("namespaces")),
	}
	_, err := c.podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onPod(obj) },
		UpdateFunc: func(_, obj any) { c.onPod(obj) },
	})
	if err != nil {
		return nil, fmt.Errorf("provisioning: watch pods: %w", err)
	}
	// A NodeClaim going away may leave a static pool short of replicas.
	if _, err := c.dynInformers.ForResource(NodeClaimsGVR).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok && u.GetDeletionTimestamp() != nil {
				c.batcher.Trigger()
			}
		},
		DeleteFunc: func(any) { c.batcher.Trigger() },
	}); err != nil {
		return nil, fmt.Errorf("provisioning: watch nodeclaims: %w", err)
	}
	// A new or changed NodePool may make pending pods schedulable.
	if _, err := c.dynInformers.ForResource(NodePoolsGVR).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.batcher.Trigger() }, UpdateFunc: func(any, any) { c.batcher.Trigger() },
	}); err != nil {
		return nil, fmt.Errorf("provisioning: watch nodepools: %w", err)
	}
	return c, nil
}

func (c *Controller) onPod(obj any) {
	if p, ok := obj.(*corev1.Pod); ok && Provisionable(p) {
		c.batcher.Trigger()
	}
}

// Run starts the informers and provisions until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if c.cfg.Recorder == nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cfg.Kube.CoreV1().Events("")})
		defer b.Shutdown()
		c.cfg.Recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "dovetail-provisioner"})
		c.events = eventdedupe.New(c.cfg.Recorder, c.cfg.Clock)
	}
	c.kubeInformers.Start(ctx.Done())
	c.dynInformers.Start(ctx.Done())
	defer c.kubeInformers.Shutdown()
	defer c.dynInformers.Shutdown()
	for t, ok := range c.kubeInformers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("provisioning: informer for %v did not sync", t)
		}
	}
	for r, ok := range c.dynInformers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("provisioning: informer for %v did not sync (are the CRDs installed?)", r)
		}
	}
	c.log.InfoContext(ctx, "provisioner started")
	leader.Go(ctx, func() { c.resyncLoop(ctx) })
	c.batcher.Trigger() // pods may already be pending
	c.cfg.Reconciles.SetDepth(c.Pending)
	defer c.cfg.Reconciles.SetDepth(nil)
	for c.batcher.Wait(ctx) {
		end := c.cfg.Reconciles.Begin()
		_, err := c.Reconcile(ctx)
		end(err)
		if err != nil {
			c.log.ErrorContext(ctx, "provisioning pass failed; will retry", "err", err)
		}
	}
	return nil
}

func (c *Controller) resyncLoop(ctx context.Context) {
	t := c.cfg.Clock.NewTimer(c.cfg.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			if c.hasPending() || c.hasStatic() {
				c.batcher.Trigger()
			}
			t.Reset(c.cfg.Resync)
		}
	}
}

// hasStatic: static pools are compared with their claims every resync
// (Karpenter requeues them every minute), whatever is pending.
func (c *Controller) hasStatic() bool {
	objs, err := c.listers.nodePools.List(labels.Everything())
	if err != nil {
		return false
	}
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			if _, found, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); found {
				return true
			}
		}
	}
	return false
}

// Pending counts the provisionable pods in the informer cache: the pods
// waiting for a provisioning pass.
func (c *Controller) Pending() int {
	n := 0
	for _, o := range c.podInf.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok && Provisionable(p) {
			n++
		}
	}
	return n
}

func (c *Controller) hasPending() bool {
	for _, o := range c.podInf.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok && Provisionable(p) {
			return true
		}
	}
	return false
}

// Reconcile runs one provisioning pass now: snapshot, plan, events, launches.
func (c *Controller) Reconcile(ctx context.Context) (*Decision, error) {
	start := c.cfg.Clock.Now()
	in, pools, err := c.inputs(ctx)
	if err != nil {
		return nil, err
	}
	staticErr := c.reconcileStatic(ctx, &in)
	snap, notes := Build(in, Provisionable)
	for _, n := range notes {
		c.log.WarnContext(ctx, n)
	}
	if len(snap.Pods) == 0 {
		return &Decision{}, staticErr
	}
	planStart := c.cfg.Clock.Now()
	d := Plan(snap, PlanOptions{Scheduling: c.cfg.Scheduling, Names: c.cfg.Names, Pools: pools, NodeClasses: in.NodeClasses})
	d.Took = c.cfg.Clock.Since(planStart)
	c.metrics.planDuration.Observe(d.Took.Seconds())
	c.metrics.batches.Inc()
	c.metrics.pending.Set(float64(len(snap.Pods)))
	c.metrics.unschedulable.Set(float64(len(d.Unschedulable)))
	c.metrics.observeKarpenter(strconv.FormatInt(planStart.UnixNano(), 36), d.Took.Seconds(), len(snap.Pods), len(d.Unschedulable))
	c.log.InfoContext(ctx, "provisioning plan", "pending", len(snap.Pods), "newNodeClaims", len(d.Launches),
		"onExisting", len(d.Placements), "unschedulable", len(d.Unschedulable), "took", d.Took, "warnings", d.Result.Stats.Warnings)
	for _, f := range d.SpotFallbacks {
		c.log.WarnContext(ctx, "spot unavailable, falling back to on-demand", "detail", f)
		c.metrics.spotFallbacks.Inc()
	}
	c.emitUnschedulable(d.Unschedulable, notes)
	c.emitNoCompatibleTypes(d.Result.NoCompatibleInstanceTypes, pools)
	if c.cfg.Nominated != nil {
		for _, p := range d.Placements {
			if p.Pod != nil {
				c.cfg.Nominated(Nomination{Pod: p.Pod, NodeClaim: p.NodeClaim, Node: p.Node, Pass: planStart})
			}
		}
		for _, l := range d.Launches {
			for _, p := range l.Pods {
				c.cfg.Nominated(Nomination{Pod: p, NodeClaim: l.NodeClaim.Name, New: true, Pass: planStart})
			}
		}
	}
	c.emitNominatedExisting(d.Placements)
	err = c.launchAll(ctx, d.Launches)
	c.metrics.passDuration.Observe(c.cfg.Clock.Since(start).Seconds())
	return &d, errors.Join(staticErr, err)
}

// reconcileStatic launches the NodeClaims static pools lack and adds them
// to in, so the pending-pod plan that follows counts them as in flight.
func (c *Controller) reconcileStatic(ctx context.Context, in *Inputs) error {
	launches, deficits, notes := StaticLaunches(*in, PlanOptions{Scheduling: c.cfg.Scheduling, Names: c.cfg.Names})
	for _, n := range notes {
		c.log.WarnContext(ctx, n)
	}
	for _, d := range deficits {
		if d.Blocked != "" {
			c.log.InfoContext(ctx, "static nodepool below replicas", "nodePool", d.Pool, "replicas", d.Replicas, "live", d.Live, "creating", d.Create, "blocked", d.Blocked)
			continue
		}
		c.log.InfoContext(ctx, "provisioning nodeclaims to satisfy replica count", "nodePool", d.Pool, "current", d.Live, "desired", d.Replicas, "provisionCount", d.Create)
	}
	if len(launches) == 0 {
		return nil
	}
	err := c.launchAll(ctx, launches)
	for _, l := range launches {
		in.NodeClaims = append(in.NodeClaims, l.NodeClaim)
	}
	return err
}

// emitUnschedulable records Karpenter's FailedScheduling on each pod no
// NodePool can serve, with why per pool (requirements, taints, limits,
// resources); deduped per pod for 5 minutes as Karpenter does.
func (c *Controller) emitUnschedulable(us []scheduling.Unschedulable, notes []string) {
	for _, u := range us {
		if u.Pod == nil {
			continue
		}
		msg := u.Message
		for _, n := range notes {
			msg += "; " + n
		}
		c.events.Publish(eventdedupe.Event{Object: u.Pod, Type: corev1.EventTypeWarning, Reason: karpenterevents.FailedScheduling,
			Message: truncate("Failed to schedule pod, "+msg, 1024), DedupeValues: []string{string(u.Pod.UID)}, DedupeTimeout: failedSchedulingDedupe})
	}
}

// emitNoCompatibleTypes records Karpenter's NoCompatibleInstanceTypes on
// each NodePool whose requirements leave no available instance type.
func (c *Controller) emitNoCompatibleTypes(names []string, pools map[string]*karpv1.NodePool) {
	for _, name := range names {
		np := pools[name]
		if np == nil {
			continue
		}
		if c.events.Publish(eventdedupe.Event{Object: nodePoolRef(np), Type: corev1.EventTypeWarning, Reason: karpenterevents.NoCompatibleInstanceTypes,
			Message: "NodePool requirements filtered out all compatible available instance types", DedupeValues: []string{string(np.UID)}, DedupeTimeout: noCompatibleTypesDedupe}) > 0 {
			// Logged with the Event, not every pass.
			c.log.Info("skipping, nodepool requirements filtered out all instance types", "nodePool", name)
		}
	}
}

// nodePoolRef is the Event's involved object: NodePool is a custom
// resource the client-go scheme does not know.
func nodePoolRef(np *karpv1.NodePool) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: karpv1.Group + "/v1", Kind: "NodePool", Name: np.Name, UID: np.UID, ResourceVersion: np.ResourceVersion}
}

// nominate records Karpenter's Nominated: where the pod should land.
func (c *Controller) nominate(p *corev1.Pod, nodeClaim, node string) {
	var on []string
	if nodeClaim != "" {
		on = append(on, "nodeclaim/"+nodeClaim)
	}
	if node != "" {
		on = append(on, "node/"+node)
	}
	c.events.Publish(eventdedupe.Event{Object: p, Type: corev1.EventTypeNormal, Reason: karpenterevents.Nominated,
		Message: "Pod should schedule on: " + strings.Join(on, ", "), DedupeValues: []string{string(p.UID)}, RateLimiter: c.nominations})
}

// emitNominatedExisting nominates pods the plan puts on existing nodes or
// in-flight NodeClaims (new NodeClaims' pods are nominated once launched).
func (c *Controller) emitNominatedExisting(ps []scheduling.Placement) {
	for _, p := range ps {
		if p.Pod != nil {
			c.nominate(p.Pod, p.NodeClaim, p.Node)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// launchAll hands claims to the launcher with bounded parallelism.
func (c *Controller) launchAll(ctx context.Context, ls []Launch) error {
	sem := make(chan struct{}, c.cfg.Parallelism)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range ls {
		l := ls[i]
		select {
		case <-ctx.Done():
			return ctx.Err()
		case sem <- struct{}{}:
		}
		wg.Add(1)
		lctx, _ := leader.WorkingOn(ctx, leader.Object{Kind: "NodeClaim", Name: l.NodeClaim.Name})
		go func() {
			defer leader.Recover(lctx) // the provisioning component's panic, not the process's
			defer wg.Done()
			defer func() { <-sem }()
			err := c.cfg.Launcher.Launch(ctx, l.NodeClaim, l.Options)
			if err != nil {
				c.metrics.launchErrors.Inc()
				mu.Lock()
				errs = append(errs, fmt.Errorf("launch nodeclaim %s: %w", l.NodeClaim.Name, err))
				mu.Unlock()
				return
			}
			c.metrics.launched.WithLabelValues(l.NodeClaim.Labels[karpv1.NodePoolLabelKey]).Inc()
			c.mu.Lock()
			c.launched[l.NodeClaim.Name] = launchedClaim{nc: l.NodeClaim, at: c.cfg.Clock.Now()}
			c.mu.Unlock()
			for _, p := range l.Pods {
				c.nominate(p, l.NodeClaim.Name, "")
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		// Retry soon: the launcher's failure (e.g. capacity) changes the next plan.
		c.batcher.Trigger()
	}
	return errors.Join(errs...)
}

// inputs lists the informer caches.
func (c *Controller) inputs(ctx context.Context) (Inputs, map[string]*karpv1.NodePool, error) {
	its, err := c.cfg.InstanceTypes.InstanceTypes(ctx)
	if err != nil {
		return Inputs{}, nil, fmt.Errorf("list instance types: %w", err)
	}
	in := Inputs{Now: c.cfg.Clock.Now(), Region: c.cfg.Region, InstanceTypes: its, RequireNodeClass: true}
	if ra, ok := c.cfg.InstanceTypes.(ReservationAvailability); ok {
		in.Reservations = ra
	}
	if err := listTyped(c.listers.pods, &in.Pods); err != nil {
		return in, nil, err
	}
	if err := listTyped(c.listers.nodes, &in.Nodes); err != nil {
		return in, nil, err
	}
	if err := listTyped(c.listers.daemonSets, &in.DaemonSets); err != nil {
		return in, nil, err
	}
	if err := listTyped(c.listers.pvcs, &in.PVCs); err != nil {
		return in, nil, err
	}
	if err := listTyped(c.listers.pvs, &in.PVs); err != nil {
		return in, nil, err
	}
	if err := listTyped(c.listers.storageClasses, &in.StorageClasses); err != nil {
		return in, nil, err
	}
	if err := listTyped(c.listers.namespaces, &in.Namespaces); err != nil {
		return in, nil, err
	}
	if in.Namespaces == nil {
		// Listed, just none: known to be empty, not unknown.
		in.Namespaces = []*corev1.Namespace{}
	}
	if err := listUnstructured(c.listers.nodePools, &in.NodePools); err != nil {
		return in, nil, err
	}
	if err := listUnstructured(c.listers.nodeClaims, &in.NodeClaims); err != nil {
		return in, nil, err
	}
	if err := listUnstructured(c.listers.nodeClasses, &in.NodeClasses); err != nil {
		return in, nil, err
	}
	if in.ClassTypes, err = ClassInstanceTypes(ctx, c.cfg.InstanceTypes, in.NodeClasses, its); err != nil {
		return in, nil, err
	}
	// Claims launched by this controller but not yet in the cache count as in flight.
	c.mu.Lock()
	seen := map[string]bool{}
	for _, nc := range in.NodeClaims {
		seen[nc.Name] = true
	}
	for name, l := range c.launched {
		if seen[name] || in.Now.Sub(l.at) > launchedGrace {
			delete(c.launched, name)
			continue
		}
		in.NodeClaims = append(in.NodeClaims, l.nc)
	}
	c.mu.Unlock()
	pools := map[string]*karpv1.NodePool{}
	for _, np := range in.NodePools {
		pools[np.Name] = np
	}
	return in, pools, nil
}

func listTyped[T runtime.Object](l cache.GenericLister, out *[]T) error {
	objs, err := l.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	for _, o := range objs {
		if t, ok := o.(T); ok {
			*out = append(*out, t)
		}
	}
	return nil
}

// listUnstructured converts the dynamic informer's objects to typed ones,
// skipping (and not failing on) objects that do not convert.
func listUnstructured[T any](l cache.GenericLister, out *[]*T) error {
	objs, err := l.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		t := new(T)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, t); err != nil {
			slog.Default().Warn("provisioning: skipping object that does not convert", "kind", u.GetKind(), "name", u.GetName(), "err", err)
			continue
		}
		*out = append(*out, t)
	}
	return nil
}
