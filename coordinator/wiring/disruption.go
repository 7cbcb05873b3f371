package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/ctrlmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
	"github.com/dovetail-dev/dovetail/coordinator/provisioning"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

// replicaStore is what the disruption wiring needs of the Raft replica.
type replicaStore interface {
	ApplyInTerm(ctx context.Context, term uint64, c fsm.Command) error
	View(func(*fsm.State))
	State() *fsm.State
	FSM() *fsm.FSM
}

var _ replicaStore = (*raftnode.Node)(nil)

// disrupter runs a fresh disruption controller for each term. Besides its
// periodic pass it runs one as soon as a committed agent report changes a
// node's interruption, health or replace-me state, so a spot notice makes
// the leader launch the replacement at once rather than at the next tick.
type disrupter struct {
	kube     kubernetes.Interface
	dyn      dynamic.Interface
	c        client.Client
	store    replicaStore
	launcher replacementLauncher
	types    *cloudTypes
	drainer  disruption.Drainer
	cfg      disruption.Config
	region   string
	registry registerer
	log      *slog.Logger
	now      func() time.Time
	// reconciles is the "disruption" controller's reconcile metrics: one
	// planning pass is one reconcile, the decisions waiting out their
	// validation are its queue.
	reconciles *ctrlmetrics.Controller

	mu      sync.Mutex
	current *disruption.Controller
}

// Controller returns the controller of the current term, or nil when this
// replica does not lead (for explain handlers).
func (d *disrupter) Controller() *disruption.Controller {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current
}

// Run implements leader.Component.
func (d *disrupter) Run(ctx context.Context, term uint64) error {
	log := d.log.With("component", "disruption-wiring", "term", term)
	reg := newTermRegisterer(d.registry)
	defer reg.release()
	view := newClusterView(d.kube, d.dyn, log)
	if err := view.start(ctx); err != nil {
		view.stop()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("disruption informers: %w", err)
	}
	defer view.stop()

	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: d.kube.CoreV1().Events("")})
	defer bc.Shutdown()
	rec := bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "dovetail-disruption"})

	wake := make(chan struct{}, 1)
	cfg := d.cfg
	cfg.Registry, cfg.Log, cfg.Now = reg, d.log, d.now
	cfg.AgentDrainDone = agentDrainDone(d.store)
	cfg.Wake, cfg.ObservePass = wake, d.reconciles.Begin
	src := &snapshotSource{view: view, types: d.types, store: d.store, now: d.now}
	repl := &replacer{view: view, types: d.types, launcher: d.launcher, c: d.c, region: d.region, log: log, now: d.now}
	events := disruption.KubeEvents{Recorder: rec,
		NodeUID: func(n string) types.UID {
			if node := view.node(n); node != nil {
				return node.UID
			}
			return ""
		},
		NodeClaimUID: func(n string) types.UID {
			if nc := view.nodeClaim(n); nc != nil {
				return nc.UID
			}
			return ""
		},
		NodePoolUID: func(n string) types.UID {
			if np := view.nodePool(n); np != nil {
				return np.UID
			}
			return ""
		},
	}
	verifier := disruption.SchedulingVerifier{Cluster: src.scheduling}
	ctl, err := disruption.NewController(cfg, src, termLedger{store: d.store, term: term}, repl, d.drainer, events, verifier)
	if err != nil {
		return fmt.Errorf("disruption controller: %w", err)
	}
	d.mu.Lock()
	d.current = ctl
	d.mu.Unlock()
	defer func() {
		ctl.Wait() // executions stop with ctx
		d.mu.Lock()
		d.current = nil
		d.mu.Unlock()
	}()

	leader.Go(ctx, func() { watchReports(ctx, d.store, wake) })
	d.reconciles.SetDepth(ctl.Queued)
	defer d.reconciles.SetDepth(nil)
	return ctl.Run(ctx, term)
}

// watchReports signals wake whenever a committed command changes what the
// disruption planner reads from agent reports.
func watchReports(ctx context.Context, store replicaStore, wake chan<- struct{}) {
	last := reportDigest(store)
	for {
		ch := store.FSM().Changed()
		if d := reportDigest(store); d != last {
			last = d
			select {
			case wake <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// reportDigest summarises the report-driven node state: active
// interruption (by report ID), replace-me and health per node.
func reportDigest(store replicaStore) string {
	var parts []string
	store.View(func(s *fsm.State) {
		parts = make([]string, 0, len(s.Nodes))
		for name, n := range s.Nodes {
			id := ""
			if n.Interruption != nil {
				id = n.Interruption.ID
			}
			parts = append(parts, fmt.Sprintf("%s|%s|%t|%s", name, id, n.ReplaceRequested, n.Health))
		}
	})
	sort.Strings(parts)
	return strings.Join(parts, ";")
}

// snapshotSource builds disruption snapshots from the term's informers,
// the instance types and the replicated state.
type snapshotSource struct {
	view  *clusterView
	types *cloudTypes
	store replicaStore
	now   func() time.Time
}

// Snapshot implements disruption.SnapshotSource.
func (s *snapshotSource) Snapshot(ctx context.Context) (*disruption.Snapshot, error) {
	o, err := s.view.list()
	if err != nil {
		return nil, err
	}
	its, err := s.types.InstanceTypes(ctx)
	if err != nil {
		return nil, fmt.Errorf("instance types: %w", err)
	}
	classTypes, err := provisioning.ClassInstanceTypes(ctx, s.types, o.nodeClasses, its)
	if err != nil {
		return nil, err
	}
	var perClass map[string][]cloud.InstanceType
	if classTypes != nil {
		perClass = make(map[string][]cloud.InstanceType, len(classTypes))
		for name, l := range classTypes {
			perClass[name] = values(l)
		}
	}
	st := s.store.State()
	snap, errs := disruption.BuildSnapshot(disruption.ClusterState{
		NodePools: o.nodePools, NodeClasses: o.nodeClasses, NodeClaims: o.nodeClaims, Nodes: o.nodes,
		Pods: o.pods, PDBs: o.pdbs, InstanceTypes: values(its), ClassInstanceTypes: perClass, Raft: st,
		InstanceNetwork: instanceNetwork(st),
	})
	for _, e := range errs {
		s.view.log.Debug("disruption snapshot", "note", e)
	}
	return snap, nil
}

// scheduling is the exact scheduler view for disruption.SchedulingVerifier:
// every node with its pods, in-flight claims, pools and DaemonSets.
func (s *snapshotSource) scheduling(ctx context.Context) (scheduling.Snapshot, error) {
	o, err := s.view.list()
	if err != nil {
		return scheduling.Snapshot{}, err
	}
	its, err := s.types.InstanceTypes(ctx)
	if err != nil {
		return scheduling.Snapshot{}, fmt.Errorf("instance types: %w", err)
	}
	classTypes, err := provisioning.ClassInstanceTypes(ctx, s.types, o.nodeClasses, its)
	if err != nil {
		return scheduling.Snapshot{}, err
	}
	snap, _ := provisioning.Build(provisioning.Inputs{
		Now: s.now(), Pods: o.pods, Nodes: o.nodes, NodeClaims: o.nodeClaims, NodePools: o.nodePools,
		NodeClasses: o.nodeClasses, DaemonSets: o.daemonSets, Namespaces: o.namespaces, InstanceTypes: its,
		ClassTypes: classTypes, Reservations: s.types, RequireNodeClass: true,
	}, func(*corev1.Pod) bool { return false })
	return snap, nil
}
