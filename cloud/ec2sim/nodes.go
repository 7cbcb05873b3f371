package ec2sim

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dovetail-dev/dovetail/cloud"
)

// KwokAnnotation marks Nodes that kwok manages (it fakes their kubelet).
const KwokAnnotation = "kwok.x-k8s.io/node"

// nodeSpec is everything needed to create the Node of a running instance,
// captured under the simulator's lock.
type nodeSpec struct {
	name, providerID, ip string
	labels               map[string]string
	taints               []corev1.Taint
	capacity, alloc      corev1.ResourceList
}

type nodeOp struct {
	create bool
	spec   nodeSpec
	name   string
}

// nodeRegistrar creates and deletes Nodes from its own goroutine so that
// a slow API server never blocks EC2 calls. Failed calls are retried.
type nodeRegistrar struct {
	client   kubernetes.Interface
	log      *slog.Logger
	mu       sync.Mutex
	queue    []nodeOp
	inflight int
	signal   chan struct{}
}

func newNodeRegistrar(cfg *rest.Config, log *slog.Logger) (*nodeRegistrar, error) {
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("ec2sim: kubernetes client: %w", err)
	}
	return &nodeRegistrar{client: c, log: log, signal: make(chan struct{}, 1)}, nil
}

func (r *nodeRegistrar) enqueue(op nodeOp) {
	r.mu.Lock()
	r.queue = append(r.queue, op)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// registrarWorkers bounds concurrent Kubernetes calls.
const registrarWorkers = 4

func (r *nodeRegistrar) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		retry := time.NewTimer(time.Hour)
		defer retry.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.signal:
			case <-retry.C:
			}
			r.mu.Lock()
			ops := r.queue
			r.queue = nil
			r.inflight += len(ops)
			r.mu.Unlock()
			failed := r.applyAll(ctx, ops)
			r.mu.Lock()
			r.queue = append(failed, r.queue...)
			r.inflight -= len(ops)
			r.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			if len(failed) > 0 {
				retry.Reset(time.Second)
			}
		}
	}()
}

func (op nodeOp) node() string {
	if op.create {
		return op.spec.name
	}
	return op.name
}

// applyAll runs ops with a few workers. Ops on the same Node run one after
// another in queue order, so a retried create never overtakes its delete;
// once one of them fails, the rest of that Node's ops wait for the retry.
func (r *nodeRegistrar) applyAll(ctx context.Context, ops []nodeOp) []nodeOp {
	var order []string
	groups := map[string][]nodeOp{}
	for _, op := range ops {
		if _, ok := groups[op.node()]; !ok {
			order = append(order, op.node())
		}
		groups[op.node()] = append(groups[op.node()], op)
	}
	var (
		mu     sync.Mutex
		failed []nodeOp
		wg     sync.WaitGroup
		sem    = make(chan struct{}, registrarWorkers)
	)
	for _, name := range order {
		group := groups[name]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			for i, op := range group {
				if err := r.apply(ctx, op); err != nil {
					if ctx.Err() == nil {
						r.log.Warn("node registration failed; will retry", "node", name, "err", err)
					}
					mu.Lock()
					failed = append(failed, group[i:]...)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return failed
}

// pending counts queued and in-flight Node operations.
func (r *nodeRegistrar) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue) + r.inflight
}

func (r *nodeRegistrar) apply(ctx context.Context, op nodeOp) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !op.create {
		err := r.client.CoreV1().Nodes().Delete(ctx, op.name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete node %s: %w", op.name, err)
		}
		r.log.Info("node deleted", "node", op.name)
		return nil
	}
	sp := op.spec
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        sp.name,
			Labels:      sp.labels,
			Annotations: map[string]string{KwokAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{ProviderID: sp.providerID, Taints: sp.taints},
		Status: corev1.NodeStatus{
			Capacity:    sp.capacity,
			Allocatable: sp.alloc,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: sp.ip},
				{Type: corev1.NodeInternalDNS, Address: sp.name},
				{Type: corev1.NodeHostName, Address: sp.name},
			},
			NodeInfo: corev1.NodeSystemInfo{Architecture: sp.labels[corev1.LabelArchStable], OperatingSystem: "linux", KubeletVersion: "fake", ContainerRuntimeVersion: "containerd://fake"},
		},
	}
	created, err := r.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create node %s: %w", sp.name, err)
	}
	// Some API servers drop status on create; make sure capacity is there.
	if len(created.Status.Capacity) == 0 {
		created.Status = node.Status
		if _, err := r.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("set status of node %s: %w", sp.name, err)
		}
	}
	r.log.Info("node registered", "node", sp.name, "providerID", sp.providerID)
	return nil
}

// nodeSpecLocked builds the Node a kubelet on this instance would register.
func (s *Sim) nodeSpecLocked(in *instance) nodeSpec {
	t, _ := s.catalogType(in.itype)
	labels := map[string]string{}
	for k, v := range t.Labels {
		labels[k] = v
	}
	kubeletLabels, taints := parseKubeletFlags(in.userData)
	for k, v := range kubeletLabels {
		labels[k] = v
	}
	capType := cloud.CapacityTypeOnDemand
	if in.capType == "spot" {
		capType = cloud.CapacityTypeSpot
	}
	if in.capResTargeted && in.capResID != "" {
		// Karpenter's label for instances launched into a reservation.
		capType = "reserved"
	}
	for k, v := range map[string]string{
		corev1.LabelInstanceTypeStable: in.itype,
		corev1.LabelArchStable:         t.Arch,
		corev1.LabelOSStable:           "linux",
		corev1.LabelTopologyZone:       in.zone,
		corev1.LabelTopologyRegion:     s.cfg.Region,
		corev1.LabelHostname:           in.privateDNS,
		"karpenter.sh/capacity-type":   capType,
		"topology.k8s.aws/zone-id":     s.zoneIDOf(in.zone),
	} {
		labels[k] = v
	}
	if np := in.tags[cloud.TagNodePool]; np != "" {
		if _, ok := labels["karpenter.sh/nodepool"]; !ok {
			labels["karpenter.sh/nodepool"] = np
		}
	}
	return nodeSpec{
		name: in.privateDNS, providerID: cloud.ProviderID(in.zone, in.id), ip: in.privateIP,
		labels: labels, taints: taints, capacity: t.Capacity(), alloc: t.Allocatable(),
	}
}

func (s *Sim) zoneIDOf(zone string) string {
	for i, z := range s.cfg.Zones {
		if z == zone {
			return zoneID(s.cfg.Region, i)
		}
	}
	return ""
}

// WaitNodesSynced blocks until queued Node creations and deletions are
// done or ctx ends. Without a RESTConfig it returns at once.
func (s *Sim) WaitNodesSynced(ctx context.Context) error {
	if s.nodes == nil {
		return nil
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for s.nodes.pending() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
