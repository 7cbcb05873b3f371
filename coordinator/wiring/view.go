package wiring

import (
	"context"
	"fmt"
	"log/slog"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/coordinator/provisioning"
)

// clusterView is one term's informer caches of what disruption looks at.
type clusterView struct {
	kubeInf informers.SharedInformerFactory
	dynInf  dynamicinformer.DynamicSharedInformerFactory
	log     *slog.Logger

	pods, nodes, pdbs, daemonSets      cache.GenericLister
	nodePools, nodeClaims, nodeClasses cache.GenericLister
	// namespaces: the labels a namespaceSelector of pod (anti-)affinity
	// is evaluated against; without them the simulation treats any
	// selector but {} as every namespace and mis-judges consolidations.
	namespaces cache.GenericLister
}

func newClusterView(kube kubernetes.Interface, dyn dynamic.Interface, log *slog.Logger) *clusterView {
	v := &clusterView{
		kubeInf: informers.NewSharedInformerFactory(kube, 0),
		dynInf:  dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0),
		log:     log,
	}
	core := v.kubeInf.Core().V1()
	v.pods = cache.NewGenericLister(core.Pods().Informer().GetIndexer(), corev1.Resource("pods"))
	v.nodes = cache.NewGenericLister(core.Nodes().Informer().GetIndexer(), corev1.Resource("nodes"))
	v.pdbs = cache.NewGenericLister(v.kubeInf.Policy().V1().PodDisruptionBudgets().Informer().GetIndexer(), policyv1.Resource("poddisruptionbudgets"))
	v.daemonSets = cache.NewGenericLister(v.kubeInf.Apps().V1().DaemonSets().Informer().GetIndexer(), appsv1.Resource("daemonsets"))
	v.namespaces = cache.NewGenericLister(core.Namespaces().Informer().GetIndexer(), corev1.Resource("namespaces"))
	v.nodePools = v.dynInf.ForResource(provisioning.NodePoolsGVR).Lister()
	v.nodeClaims = v.dynInf.ForResource(provisioning.NodeClaimsGVR).Lister()
	v.nodeClasses = v.dynInf.ForResource(provisioning.EC2NodeClassesGVR).Lister()
	return v
}

// start starts the informers and waits until their caches are filled.
func (v *clusterView) start(ctx context.Context) error {
	v.kubeInf.Start(ctx.Done())
	v.dynInf.Start(ctx.Done())
	for t, ok := range v.kubeInf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync", t)
		}
	}
	for r, ok := range v.dynInf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync (are the CRDs installed?)", r)
		}
	}
	return nil
}

func (v *clusterView) stop() {
	v.kubeInf.Shutdown()
	v.dynInf.Shutdown()
}

// objects is a consistent-enough listing of the caches.
type objects struct {
	pods        []*corev1.Pod
	nodes       []*corev1.Node
	pdbs        []*policyv1.PodDisruptionBudget
	daemonSets  []*appsv1.DaemonSet
	namespaces  []*corev1.Namespace
	nodePools   []*karpv1.NodePool
	nodeClaims  []*karpv1.NodeClaim
	nodeClasses []*awsv1.EC2NodeClass
}

func (v *clusterView) list() (objects, error) {
	var o objects
	var err error
	if o.pods, err = typed[*corev1.Pod](v.pods); err != nil {
		return o, err
	}
	if o.nodes, err = typed[*corev1.Node](v.nodes); err != nil {
		return o, err
	}
	if o.pdbs, err = typed[*policyv1.PodDisruptionBudget](v.pdbs); err != nil {
		return o, err
	}
	if o.daemonSets, err = typed[*appsv1.DaemonSet](v.daemonSets); err != nil {
		return o, err
	}
	if o.namespaces, err = typed[*corev1.Namespace](v.namespaces); err != nil {
		return o, err
	}
	if o.nodePools, err = converted[karpv1.NodePool](v.nodePools, v.log); err != nil {
		return o, err
	}
	if o.nodeClaims, err = converted[karpv1.NodeClaim](v.nodeClaims, v.log); err != nil {
		return o, err
	}
	if o.nodeClasses, err = converted[awsv1.EC2NodeClass](v.nodeClasses, v.log); err != nil {
		return o, err
	}
	return o, nil
}

// namespaceLabels is each namespace's labels by name, as
// scheduling.Snapshot.Namespaces wants them (never nil: an empty cache
// means no namespace has labels, not "unknown").
func namespaceLabels(nss []*corev1.Namespace) map[string]map[string]string {
	out := make(map[string]map[string]string, len(nss))
	for _, ns := range nss {
		out[ns.Name] = ns.Labels
	}
	return out
}

// node returns a cached Node, or nil.
func (v *clusterView) node(name string) *corev1.Node {
	obj, err := v.nodes.Get(name)
	if err != nil {
		return nil
	}
	n, _ := obj.(*corev1.Node)
	return n
}

// nodeClaim returns a cached NodeClaim, or nil.
func (v *clusterView) nodeClaim(name string) *karpv1.NodeClaim {
	return getConverted[karpv1.NodeClaim](v.nodeClaims, name)
}

func (v *clusterView) nodePool(name string) *karpv1.NodePool {
	return getConverted[karpv1.NodePool](v.nodePools, name)
}

func typed[T runtime.Object](l cache.GenericLister) ([]T, error) {
	objs, err := l.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// converted turns the dynamic informer's objects into typed ones; an
// object that does not convert is logged and left out.
func converted[T any](l cache.GenericLister, log *slog.Logger) ([]*T, error) {
	objs, err := l.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		t := new(T)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, t); err != nil {
			log.Warn("skipping object that does not convert", "kind", u.GetKind(), "name", u.GetName(), "err", err)
			continue
		}
		out = append(out, t)
	}
	return out, nil
}

func getConverted[T any](l cache.GenericLister, name string) *T {
	o, err := l.Get(name)
	if err != nil {
		return nil
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	t := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, t); err != nil {
		return nil
	}
	return t
}
