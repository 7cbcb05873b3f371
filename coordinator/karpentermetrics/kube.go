package karpentermetrics

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/podreq"
)

// NodePoolsGVR and NodeClaimsGVR are what the collector lists NodePools
// and NodeClaims by.
var (
	NodePoolsGVR  = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}
	NodeClaimsGVR = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}
)

// Karpenter's buckets and objectives (pkg/metrics/constants.go).
var (
	durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
		1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60, 120, 150, 300, 450, 600}
	summaryObjectives = map[float64]float64{0: 0.01, 0.5: 0.01, 0.9: 0.01, 0.99: 0.01, 1: 0.01}
	lifetimeBuckets   = func() []float64 {
		var b []float64
		for _, m := range []float64{15, 30, 45} {
			b = append(b, m*60)
		}
		for _, h := range []float64{1, 2, 4, 6, 8, 10, 12, 16, 20} {
			b = append(b, h*3600)
		}
		for _, d := range []float64{1, 2, 3, 5, 10, 15, 20, 25, 30} {
			b = append(b, d*86400)
		}
		return b
	}()
)

var (
	nodeResLabels   = append(append([]string(nil), nodeLabelNames...), "resource_type")
	podStateLabels  = []string{"name", "namespace", "owner", "node", "scheduled", lNodePool, lZone, "arch", lCapacityType, lInstanceType, "phase", "ready", "managed"}
	descAllocatable = prometheus.NewDesc("karpenter_nodes_allocatable",
		"Node allocatable are the resources allocatable by nodes.", nodeResLabels, nil)
	descPodRequests = prometheus.NewDesc("karpenter_nodes_total_pod_requests",
		"Node total pod requests are the resources requested by pods bound to nodes, including the DaemonSet pods.", nodeResLabels, nil)
	descPodLimits = prometheus.NewDesc("karpenter_nodes_total_pod_limits",
		"Node total pod limits are the resources specified by pod limits, including the DaemonSet pods.", nodeResLabels, nil)
	descDaemonRequests = prometheus.NewDesc("karpenter_nodes_total_daemon_requests",
		"Node total daemon requests are the resource requested by DaemonSet pods bound to nodes.", nodeResLabels, nil)
	descDaemonLimits = prometheus.NewDesc("karpenter_nodes_total_daemon_limits",
		"Node total daemon limits are the resources specified by DaemonSet pod limits.", nodeResLabels, nil)
	descOverhead = prometheus.NewDesc("karpenter_nodes_system_overhead",
		"Node system daemon overhead are the resources reserved for system overhead, the difference between the node's capacity and allocatable values are reported by the status.", nodeResLabels, nil)
	descLifetime = prometheus.NewDesc("karpenter_nodes_current_lifetime_seconds",
		"Node age in seconds", nodeLabelNames, nil)
	descUtilization = prometheus.NewDesc("karpenter_cluster_utilization_percent",
		"Utilization of allocatable resources by pod requests", []string{"resource_type"}, nil)
	descPodState = prometheus.NewDesc("karpenter_pods_state",
		"Pod state is the current state of pods. This metric can be used several ways as it is labeled by the pod name, namespace, owner, node, nodepool name, zone, architecture, capacity type, instance type, pod phase, and pod readiness.", podStateLabels, nil)
	descUnbound = prometheus.NewDesc("karpenter_pods_unbound_time_seconds",
		"The time from pod creation until the pod is bound.", []string{"name", "namespace"}, nil)
	descUnstarted = prometheus.NewDesc("karpenter_pods_unstarted_time_seconds",
		"The time from pod creation until the pod is running.", []string{"name", "namespace"}, nil)
	descPoolUsage = prometheus.NewDesc("karpenter_nodepools_usage",
		"The amount of resources that have been provisioned for a nodepool. Labeled by nodepool name and resource type.", []string{"resource_type", lNodePool}, nil)
	descPoolLimit = prometheus.NewDesc("karpenter_nodepools_limit",
		"Limits specified on the nodepool that restrict the quantity of resources provisioned. Labeled by nodepool name and resource type.", []string{"resource_type", lNodePool}, nil)
	descPoolCost = prometheus.NewDesc("karpenter_nodepools_cost_total",
		"Total cost of the nodepool from Karpenter's perspective. Units are determined by the cloud provider. Not an authoritative source for billing. Includes modifications due to NodeOverlays", []string{lNodePool}, nil)
	descOfferingAvailable = prometheus.NewDesc("karpenter_cloudprovider_instance_type_offering_available",
		"Instance type offering availability, based on instance type, capacity type, and zone", []string{lInstanceType, lCapacityType, lZone}, nil)
	descOfferingPrice = prometheus.NewDesc("karpenter_cloudprovider_instance_type_offering_price_estimate",
		"Instance type offering estimated hourly price used when making informed decisions on node cost calculation, based on instance type, capacity type, and zone.", []string{lInstanceType, lCapacityType, lZone}, nil)
	descTypeCPU = prometheus.NewDesc("karpenter_cloudprovider_instance_type_cpu_cores",
		"VCPUs cores for a given instance type.", []string{lInstanceType}, nil)
	descTypeMemory = prometheus.NewDesc("karpenter_cloudprovider_instance_type_memory_bytes",
		"Memory, in bytes, for a given instance type.", []string{lInstanceType}, nil)
)

// InstanceTypes is where offering metrics come from (the cloud provider's
// catalogue, whose availability reads the replicated ICE cache).
type InstanceTypes interface {
	InstanceTypes(ctx context.Context) ([]*cloud.InstanceType, error)
}

// KubeConfig configures the Kubernetes side of the karpenter_* metrics.
type KubeConfig struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface // NodePools; nil: no nodepool metrics
	// InstanceTypes, when set, is read every OfferingsInterval for the
	// cloudprovider offering and instance-type metrics.
	InstanceTypes     InstanceTypes
	OfferingsInterval time.Duration // default 1 minute
	Registerer        prometheus.Registerer
	Log               *slog.Logger
	Now               func() time.Time
}

// Kube serves the karpenter_* metrics that are facts about Kubernetes
// objects (nodes, pods, NodePools) and the instance-type catalogue: gauges
// computed from informer caches at scrape time, counters and durations
// observed from informer events. It runs on the leader only (a leader.
// Component per term), like Karpenter's metrics controllers.
type Kube struct {
	cfg   KubeConfig
	nodes corelisters.NodeLister
	pods  corelisters.PodLister
	pools cache.GenericLister // nil without Dynamic

	synced func() bool
	start  func(stop <-chan struct{})

	nodesCreated    *prometheus.CounterVec
	nodesTerminated *prometheus.CounterVec
	termDuration    *prometheus.SummaryVec
	lifetimeHist    *prometheus.HistogramVec
	drained         *prometheus.CounterVec
	claimTermDur    *prometheus.HistogramVec
	podStartup      prometheus.Summary
	podBound        prometheus.Histogram

	mu         sync.Mutex
	unbound    map[string]bool // pods seen unscheduled, by namespace/name
	unstarted  map[string]bool // pods seen pending, by namespace/name
	offerings  []*cloud.InstanceType
	collectors []prometheus.Collector
}

// NewKube builds the collector and its informers; Run starts them.
func NewKube(cfg KubeConfig) (*Kube, error) {
	if cfg.Kube == nil {
		return nil, fmt.Errorf("karpentermetrics: a Kubernetes client is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.OfferingsInterval <= 0 {
		cfg.OfferingsInterval = time.Minute
	}
	k := &Kube{cfg: cfg, unbound: map[string]bool{}, unstarted: map[string]bool{},
		nodesCreated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_nodes_created_total",
			Help: "Number of nodes created in total by Karpenter. Labeled by owning nodepool and zone."}, []string{lNodePool, lZone}),
		nodesTerminated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_nodes_terminated_total",
			Help: "Number of nodes terminated in total by Karpenter. Labeled by owning nodepool and zone."}, []string{lNodePool, lZone}),
		termDuration: prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: "karpenter_nodes_termination_duration_seconds",
			Help: "The time taken between a node's deletion request and the removal of its finalizer", Objectives: summaryObjectives}, []string{lNodePool}),
		lifetimeHist: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "karpenter_nodes_lifetime_duration_seconds",
			Help: "The lifetime duration of the nodes since creation.", Buckets: lifetimeBuckets}, []string{lNodePool}),
		drained: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_nodes_drained_total",
			Help: "The total number of nodes drained by Karpenter"}, []string{lNodePool}),
		// Karpenter's buckets: 1, 2, 4 ... 2048 s (nodeclaim/lifecycle).
		claimTermDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "karpenter_nodeclaims_termination_duration_seconds",
			Help: "Duration of NodeClaim termination in seconds.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}, []string{lNodePool}),
		podStartup: prometheus.NewSummary(prometheus.SummaryOpts{Name: "karpenter_pods_startup_duration_seconds",
			Help: "The time from pod creation until the pod is running.", Objectives: summaryObjectives}),
		podBound: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "karpenter_pods_bound_duration_seconds",
			Help: "The time from pod creation until the pod is bound.", Buckets: durationBuckets}),
	}
	f := informers.NewSharedInformerFactory(cfg.Kube, 0)
	ni, pi := f.Core().V1().Nodes(), f.Core().V1().Pods()
	k.nodes, k.pods = ni.Lister(), pi.Lister()
	syncs := []cache.InformerSynced{ni.Informer().HasSynced, pi.Informer().HasSynced}
	if _, err := ni.Informer().AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(obj any, initial bool) { k.nodeAdded(obj, initial) },
		UpdateFunc: k.nodeUpdated,
		DeleteFunc: k.nodeDeleted,
	}); err != nil {
		return nil, fmt.Errorf("karpentermetrics: node handler: %w", err)
	}
	if _, err := pi.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.podSeen(obj) },
		UpdateFunc: func(_, obj any) { k.podSeen(obj) },
		DeleteFunc: k.podDeleted,
	}); err != nil {
		return nil, fmt.Errorf("karpentermetrics: pod handler: %w", err)
	}
	starts := []func(<-chan struct{}){f.Start}
	if cfg.Dynamic != nil {
		df := dynamicinformer.NewDynamicSharedInformerFactory(cfg.Dynamic, 0)
		gi := df.ForResource(NodePoolsGVR)
		k.pools = gi.Lister()
		ci := df.ForResource(NodeClaimsGVR).Informer()
		if _, err := ci.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: k.claimDeleted}); err != nil {
			return nil, fmt.Errorf("karpentermetrics: nodeclaim handler: %w", err)
		}
		syncs = append(syncs, gi.Informer().HasSynced, ci.HasSynced)
		starts = append(starts, df.Start)
	}
	k.synced = func() bool {
		for _, s := range syncs {
			if !s() {
				return false
			}
		}
		return true
	}
	k.start = func(stop <-chan struct{}) {
		for _, s := range starts {
			s(stop)
		}
	}
	k.collectors = []prometheus.Collector{k, k.nodesCreated, k.nodesTerminated, k.termDuration, k.lifetimeHist,
		k.drained, k.claimTermDur, k.podStartup, k.podBound}
	return k, nil
}

// Run registers the metrics, starts the informers and refreshes the
// offerings until ctx ends; the metrics are unregistered on the way out so
// the next term's collector can take the names.
func (k *Kube) Run(ctx context.Context) error {
	if r := k.cfg.Registerer; r != nil {
		for _, c := range k.collectors {
			if err := r.Register(c); err != nil {
				return fmt.Errorf("karpentermetrics: register: %w", err)
			}
			defer r.Unregister(c)
		}
	}
	k.start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), k.synced) {
		return ctx.Err()
	}
	if k.cfg.InstanceTypes == nil {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(k.cfg.OfferingsInterval)
	defer t.Stop()
	for {
		its, err := k.cfg.InstanceTypes.InstanceTypes(ctx)
		if err != nil {
			k.cfg.Log.Warn("karpenter metrics: instance types", "err", err)
		} else {
			k.mu.Lock()
			k.offerings = its
			k.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func key(ns, name string) string { return ns + "/" + name }

func (k *Kube) nodeAdded(obj any, initial bool) {
	n, ok := obj.(*corev1.Node)
	// Nodes listed when the informer starts existed before this term: not
	// created now (a new leader must not recount the fleet).
	if !ok || initial || n.Labels["karpenter.sh/nodepool"] == "" {
		return
	}
	k.nodesCreated.WithLabelValues(n.Labels["karpenter.sh/nodepool"], n.Labels[corev1.LabelTopologyZone]).Inc()
}

func (k *Kube) nodeUpdated(oldObj, obj any) {
	o, ok1 := oldObj.(*corev1.Node)
	n, ok2 := obj.(*corev1.Node)
	if !ok1 || !ok2 || n.Labels["karpenter.sh/nodepool"] == "" {
		return
	}
	// Dovetail drains after tainting the node for disruption; the taint
	// appearing is the start of a drain by Dovetail.
	if !hasDisruptedTaint(o) && hasDisruptedTaint(n) {
		k.drained.WithLabelValues(n.Labels["karpenter.sh/nodepool"]).Inc()
	}
}

func hasDisruptedTaint(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == "karpenter.sh/disrupted" {
			return true
		}
	}
	return false
}

func (k *Kube) nodeDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	n, ok := obj.(*corev1.Node)
	if !ok || n.Labels["karpenter.sh/nodepool"] == "" {
		return
	}
	pool := n.Labels["karpenter.sh/nodepool"]
	now := k.cfg.Now()
	k.nodesTerminated.WithLabelValues(pool, n.Labels[corev1.LabelTopologyZone]).Inc()
	// Without a finalizer the deletion request is the removal: 0 s.
	d := 0.0
	if n.DeletionTimestamp != nil {
		d = now.Sub(n.DeletionTimestamp.Time).Seconds()
	}
	k.termDuration.WithLabelValues(pool).Observe(max(d, 0))
	k.lifetimeHist.WithLabelValues(pool).Observe(max(now.Sub(n.CreationTimestamp.Time).Seconds(), 0))
}

// claimDeleted observes, as Karpenter's NodeClaim lifecycle controller when
// it removes its termination finalizer, the time from the NodeClaim's
// deletion request until it is gone: the launcher's finalizer holds it until
// the instance is terminated, so this is the whole termination. A NodeClaim
// gone without a deletion timestamp (deleted with no finalizer left) took 0 s.
func (k *Kube) claimDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	d := 0.0
	if ts := u.GetDeletionTimestamp(); ts != nil {
		d = max(k.cfg.Now().Sub(ts.Time).Seconds(), 0)
	}
	k.claimTermDur.WithLabelValues(u.GetLabels()["karpenter.sh/nodepool"]).Observe(d)
}

func condition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// podSeen follows a pod from pending to bound and to ready, as Karpenter's
// pod metrics controller does: durations are observed only for pods this
// term saw unbound / not started.
func (k *Kube) podSeen(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	id := key(p.Namespace, p.Name)
	sched := condition(p, corev1.PodScheduled)
	ready := condition(p, corev1.PodReady)
	k.mu.Lock()
	defer k.mu.Unlock()
	if p.Status.Phase == corev1.PodPending {
		if sched == nil || sched.Status != corev1.ConditionTrue {
			k.unbound[id] = true
		}
		k.unstarted[id] = true
	}
	if k.unbound[id] && sched != nil && sched.Status == corev1.ConditionTrue {
		k.podBound.Observe(max(sched.LastTransitionTime.Sub(p.CreationTimestamp.Time).Seconds(), 0))
		delete(k.unbound, id)
	}
	if k.unstarted[id] && p.Status.Phase != corev1.PodPending {
		switch {
		case ready != nil && ready.Status == corev1.ConditionTrue:
			k.podStartup.Observe(max(ready.LastTransitionTime.Sub(p.CreationTimestamp.Time).Seconds(), 0))
			delete(k.unstarted, id)
		case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
			delete(k.unstarted, id)
		}
	}
}

func (k *Kube) podDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	delete(k.unbound, key(p.Namespace, p.Name))
	delete(k.unstarted, key(p.Namespace, p.Name))
	k.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (k *Kube) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAllocatable, descPodRequests, descPodLimits, descDaemonRequests,
		descDaemonLimits, descOverhead, descLifetime, descUtilization, descPodState, descUnbound, descUnstarted,
		descPoolUsage, descPoolLimit, descPoolCost, descOfferingAvailable, descOfferingPrice, descTypeCPU, descTypeMemory} {
		ch <- d
	}
}

type nodeSums struct{ req, lim, dreq, dlim corev1.ResourceList }

// newSums starts the pod counts at 0, as Karpenter's RequestsForPods of no
// pods has pods=0: a node without DaemonSet pods still has the series.
func newSums() *nodeSums {
	zero := func() corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(0, resource.DecimalSI)}
	}
	return &nodeSums{zero(), corev1.ResourceList{}, zero(), corev1.ResourceList{}}
}

func addInto(dst, src corev1.ResourceList) {
	for r, q := range src {
		cur := dst[r]
		cur.Add(q)
		dst[r] = cur
	}
}

func podLimits(p *corev1.Pod) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := range p.Spec.Containers {
		addInto(out, p.Spec.Containers[i].Resources.Limits)
	}
	return out
}

// Collect implements prometheus.Collector: the gauges, from the caches.
func (k *Kube) Collect(ch chan<- prometheus.Metric) {
	if !k.synced() {
		return
	}
	now := k.cfg.Now()
	nodes, _ := k.nodes.List(labels.Everything())
	pods, _ := k.pods.List(labels.Everything())
	byName := make(map[string]*corev1.Node, len(nodes))
	for _, n := range nodes {
		byName[n.Name] = n
	}
	sums := map[string]*nodeSums{}
	for _, p := range pods {
		if p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			s := sums[p.Spec.NodeName]
			if s == nil {
				s = newSums()
				sums[p.Spec.NodeName] = s
			}
			// Karpenter's resources.RequestsForPods counts the pods
			// themselves as resource "pods".
			req, lim := podreq.Requests(p), podLimits(p)
			req[corev1.ResourcePods] = *resource.NewQuantity(1, resource.DecimalSI)
			addInto(s.req, req)
			addInto(s.lim, lim)
			if podreq.IsDaemonSetPod(p) {
				addInto(s.dreq, req)
				addInto(s.dlim, lim)
			}
		}
		k.collectPod(ch, p, byName[p.Spec.NodeName], now)
	}
	allocTotal, reqTotal := corev1.ResourceList{}, corev1.ResourceList{}
	for _, n := range nodes {
		lv := nodeLabelValues(n)
		ch <- prometheus.MustNewConstMetric(descLifetime, prometheus.GaugeValue, now.Sub(n.CreationTimestamp.Time).Seconds(), lv...)
		emit := func(d *prometheus.Desc, rl corev1.ResourceList) {
			for r, q := range rl {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, quantity(r, q), append(lv[:len(lv):len(lv)], resourceType(r))...)
			}
		}
		emit(descAllocatable, n.Status.Allocatable)
		overhead := corev1.ResourceList{}
		for r, c := range n.Status.Capacity {
			if a, ok := n.Status.Allocatable[r]; ok {
				c = c.DeepCopy()
				c.Sub(a)
				overhead[r] = c
			}
		}
		emit(descOverhead, overhead)
		s := sums[n.Name]
		if s == nil {
			s = newSums()
		}
		emit(descPodRequests, s.req)
		emit(descPodLimits, s.lim)
		emit(descDaemonRequests, s.dreq)
		emit(descDaemonLimits, s.dlim)
		addInto(allocTotal, n.Status.Allocatable)
		addInto(reqTotal, s.req)
	}
	for r, a := range allocTotal {
		if a.IsZero() {
			continue
		}
		q := reqTotal[r]
		ch <- prometheus.MustNewConstMetric(descUtilization, prometheus.GaugeValue, 100*quantity(r, q)/quantity(r, a), resourceType(r))
	}
	k.collectPools(ch, byName)
	k.collectOfferings(ch)
}

func (k *Kube) collectPod(ch chan<- prometheus.Metric, p *corev1.Pod, n *corev1.Node, now time.Time) {
	owner := ""
	if len(p.OwnerReferences) > 0 {
		o := p.OwnerReferences[0]
		owner = fmt.Sprintf("/apis/%s/namespaces/%s/%ss/%s", o.APIVersion, p.Namespace, strings.ToLower(o.Kind), o.Name)
	}
	nl := map[string]string{}
	if n != nil {
		nl = n.Labels
	}
	ready := condition(p, corev1.PodReady)
	isReady := ready != nil && ready.Status == corev1.ConditionTrue
	ch <- prometheus.MustNewConstMetric(descPodState, prometheus.GaugeValue, 1,
		p.Name, p.Namespace, owner, p.Spec.NodeName, boolStr(p.Spec.NodeName != ""),
		nl["karpenter.sh/nodepool"], nl[corev1.LabelTopologyZone], nl[corev1.LabelArchStable],
		nl["karpenter.sh/capacity-type"], nl[corev1.LabelInstanceTypeStable], string(p.Status.Phase),
		boolStr(isReady), boolStr(nl["karpenter.sh/nodepool"] != ""))
	if p.Status.Phase == corev1.PodPending {
		age := now.Sub(p.CreationTimestamp.Time).Seconds()
		ch <- prometheus.MustNewConstMetric(descUnstarted, prometheus.GaugeValue, age, p.Name, p.Namespace)
		if s := condition(p, corev1.PodScheduled); s == nil || s.Status != corev1.ConditionTrue {
			ch <- prometheus.MustNewConstMetric(descUnbound, prometheus.GaugeValue, age, p.Name, p.Namespace)
		}
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// collectPools serves usage and limits from each NodePool (status.resources
// as the nodepoolstatus controller writes it, spec.limits) and the pool's
// cost: the catalogue price of each of its nodes' offerings.
func (k *Kube) collectPools(ch chan<- prometheus.Metric, nodes map[string]*corev1.Node) {
	if k.pools == nil {
		return
	}
	objs, _ := k.pools.List(labels.Everything())
	k.mu.Lock()
	price := offeringPrices(k.offerings)
	k.mu.Unlock()
	cost := map[string]float64{}
	for _, n := range nodes {
		pool := n.Labels["karpenter.sh/nodepool"]
		if pool == "" {
			continue
		}
		cost[pool] += price[[3]string{n.Labels[corev1.LabelInstanceTypeStable], n.Labels["karpenter.sh/capacity-type"], n.Labels[corev1.LabelTopologyZone]}]
	}
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		name := u.GetName()
		for _, f := range []struct {
			d    *prometheus.Desc
			path []string
		}{{descPoolUsage, []string{"status", "resources"}}, {descPoolLimit, []string{"spec", "limits"}}} {
			m, _, _ := unstructured.NestedStringMap(u.Object, f.path...)
			for r, s := range m {
				q, err := resource.ParseQuantity(s)
				if err != nil {
					continue
				}
				ch <- prometheus.MustNewConstMetric(f.d, prometheus.GaugeValue, quantity(corev1.ResourceName(r), q), resourceType(corev1.ResourceName(r)), name)
			}
		}
		ch <- prometheus.MustNewConstMetric(descPoolCost, prometheus.GaugeValue, cost[name], name)
	}
}

func offeringPrices(its []*cloud.InstanceType) map[[3]string]float64 {
	out := make(map[[3]string]float64)
	for _, it := range its {
		for _, o := range it.Offerings {
			out[[3]string{it.Name, o.CapacityType, o.Zone}] = o.Price
		}
	}
	return out
}

func (k *Kube) collectOfferings(ch chan<- prometheus.Metric) {
	k.mu.Lock()
	its := k.offerings
	k.mu.Unlock()
	seen := map[[3]string]bool{}
	for _, it := range its {
		if c, ok := it.Capacity[corev1.ResourceCPU]; ok {
			ch <- prometheus.MustNewConstMetric(descTypeCPU, prometheus.GaugeValue, float64(c.Value()), it.Name)
		}
		if m, ok := it.Capacity[corev1.ResourceMemory]; ok {
			ch <- prometheus.MustNewConstMetric(descTypeMemory, prometheus.GaugeValue, float64(m.Value()), it.Name)
		}
		for _, o := range it.Offerings {
			id := [3]string{it.Name, o.CapacityType, o.Zone}
			if seen[id] {
				continue
			}
			seen[id] = true
			avail := 0.0
			if o.Available {
				avail = 1
			}
			ch <- prometheus.MustNewConstMetric(descOfferingAvailable, prometheus.GaugeValue, avail, id[0], id[1], id[2])
			ch <- prometheus.MustNewConstMetric(descOfferingPrice, prometheus.GaugeValue, o.Price, id[0], id[1], id[2])
		}
	}
}

// MetricTypes says the type of each family (metricsdoc.Typed): all of the
// scrape-time metrics are gauges.
func (k *Kube) MetricTypes() map[string]string {
	ch := make(chan *prometheus.Desc, 32)
	go func() { k.Describe(ch); close(ch) }()
	out := map[string]string{}
	for d := range ch {
		s := d.String()
		if i := strings.Index(s, `fqName: "`); i >= 0 {
			rest := s[i+len(`fqName: "`):]
			if j := strings.IndexByte(rest, '"'); j >= 0 {
				out[rest[:j]] = "gauge"
			}
		}
	}
	return out
}
