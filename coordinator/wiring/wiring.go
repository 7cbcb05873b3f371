// Package wiring joins a coordinator replica's leader-only controllers —
// provisioning, disruption and the built-in NodePools — to its Raft store,
// launcher, cloud provider and Kubernetes. It holds the adapters between the
// packages' consumer-declared interfaces, so that cmd/dovetail-coordinator
// and the end-to-end tests build exactly the same components:
//
//	cfg.Setup = func(rt *coordinator.Runtime) ([]leader.Named, error) {
//		return wiring.Components(rt, wiring.Options{RESTConfig: rest, Region: "us-east-1"})
//	}
//
// Every component is built afresh for each leadership term (informers,
// controllers, their metrics), because informer factories cannot be
// restarted once shut down and a controller's in-memory state (pending
// validations, launches in flight) belongs to the term that made it.
package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dovetail-dev/dovetail/coordinator"
	"github.com/dovetail-dev/dovetail/coordinator/builtin"
	"github.com/dovetail-dev/dovetail/coordinator/capacitytype"
	"github.com/dovetail-dev/dovetail/coordinator/cloudmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/consistency"
	"github.com/dovetail-dev/dovetail/coordinator/ctrlmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/karpentermetrics"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
	"github.com/dovetail-dev/dovetail/coordinator/nodeclass"
	"github.com/dovetail-dev/dovetail/coordinator/nodepoolstatus"
	"github.com/dovetail-dev/dovetail/coordinator/provisioning"
	"github.com/dovetail-dev/dovetail/drain"
	"github.com/dovetail-dev/dovetail/kubeclient"
)

// Options configures Components. The zero value of each tuning field takes
// the controller's own default.
type Options struct {
	// RESTConfig reaches the cluster; nil means no Kubernetes, hence no
	// leader-only controllers at all.
	RESTConfig *rest.Config
	// Region is put on new NodeClaims as topology.kubernetes.io/region.
	Region string

	// Builtin turns the built-in NodePools on (both off: no reconciler).
	// Builtin.Registry and Builtin.Log are filled in.
	Builtin builtin.Config

	// Provisioning tuning.
	Provisioning ProvisioningOptions
	// Disruption tuning: Interval, ValidationDelay, ReplacementTimeout,
	// PollInterval, MaxDrain, Planner. Registry, Log and Now are filled in.
	Disruption disruption.Config
	// Drain tunes the drainer the disruption controller uses (Registry and
	// Logger are filled in).
	Drain drain.Options

	// Explain, when set, is bound to the disruption controller so its
	// Handlers serve `dovetail explain` on this replica.
	Explain *Explain

	// NoProvisioning and NoDisruption leave a controller out.
	NoProvisioning, NoDisruption bool

	// NodeClass tunes the EC2NodeClass status controller: Interval (default
	// 1 minute), Timeout. Client, Kube, Resolver, Registry and Log are filled in.
	NodeClass nodeclass.Config
	// NoNodeClass leaves the EC2NodeClass status controller out.
	NoNodeClass bool
	// CapacityTypeInterval is how often reserved NodeClaims whose
	// reservation ended are relabelled on-demand (default 1 min).
	CapacityTypeInterval time.Duration
	// NoKarpenterMetrics leaves out the karpenter_* node, pod, NodePool and
	// offering metrics (their pod and node watches).
	NoKarpenterMetrics bool
	// NodePoolStatus tunes the NodePool status controller (Interval);
	// Client and Log are filled in.
	NodePoolStatus nodepoolstatus.Config
}

// ProvisioningOptions tune the provisioner (see provisioning.Config).
type ProvisioningOptions struct {
	IdleGap, MaxWindow, Resync time.Duration
	Parallelism                int
	// Nominated is told every nomination before the Nominated Events'
	// dedupe and rate limit (provisioning.Config.Nominated): the end-to-end
	// benchmark learns every pod's nomination from it.
	Nominated func(provisioning.Nomination)
}

// Components builds the leader-only components of one replica. It is
// coordinator.Config.Setup's body; each returned component runs only while
// the replica leads, under a context cancelled the moment it stops leading.
func Components(rt *coordinator.Runtime, o Options) ([]leader.Named, error) {
	if rt == nil || rt.Store == nil {
		return nil, errors.New("wiring: runtime with a store is required")
	}
	log := rt.Log
	if log == nil {
		log = slog.Default()
	}
	now := rt.Now
	if now == nil {
		now = time.Now
	}
	if o.RESTConfig == nil {
		log.Warn("no Kubernetes configuration: provisioning, disruption and built-in NodePools are off")
		return nil, nil
	}
	kube, err := kubernetes.NewForConfig(o.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("wiring: kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(o.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("wiring: dynamic client: %w", err)
	}
	crc, err := kubeclient.New(o.RESTConfig)
	if err != nil {
		return nil, err
	}

	rt.OnComponentPanic(panicEvents(kube, crc, log, now))
	// controller-runtime's reconcile and workqueue metrics for the loops
	// below, which Karpenter's controller dashboards read.
	reconciles, err := ctrlmetrics.New(rt.Registry)
	if err != nil {
		return nil, fmt.Errorf("wiring: controller metrics: %w", err)
	}

	var comps []leader.Named
	if o.Builtin.GeneralPurpose || o.Builtin.System {
		bc := o.Builtin
		bc.Registry, bc.Log = rt.Registry, log
		r, err := builtin.NewReconciler(crc, bc)
		if err != nil {
			return nil, fmt.Errorf("wiring: built-in NodePools: %w", err)
		}
		comps = append(comps, leader.Named{Name: "builtin-nodepools", Component: r})
	}
	// EC2NodeClass status (resolved AMIs, subnets, security groups): the
	// disruption planner's AMI drift reads status.amis.
	if res, ok := rt.Cloud.(nodeclass.Resolver); ok && !o.NoNodeClass {
		comps = append(comps, leader.Named{Name: "nodeclass-status", Component: nodeClassStatus(o.NodeClass, crc, kube, res, rt.Registry, log)})
	}
	// Reserved NodeClaims and Nodes of an ended capacity reservation
	// become on-demand (Karpenter's capacitytype controller).
	if lister, ok := rt.Cloud.(capacitytype.Lister); ok {
		ct := &capacitytype.Controller{C: crc, Cloud: lister, Interval: o.CapacityTypeInterval, Log: log.With("component", "capacity-type")}
		comps = append(comps, leader.Named{Name: "capacity-type", Component: leader.Func(func(ctx context.Context, _ uint64) error { return ct.Run(ctx) })})
	}
	// NodePool status (nodes, resources, conditions): what `kubectl get
	// nodepools` and the scale subresource read.
	comps = append(comps, leader.Named{Name: "nodepool-status", Component: nodePoolStatus(o.NodePoolStatus, crc, kube, log)})
	// Karpenter's nodeclaim.consistency: a Node smaller than its NodeClaim's
	// instance type gets FailedConsistencyCheck and ConsistentStateFound=False.
	comps = append(comps, leader.Named{Name: "nodeclaim-consistency", Component: nodeClaimConsistency(crc, kube, log, now)})
	// karpenter_* metrics about nodes, pods, NodePools and offerings, so a
	// Karpenter operator's dashboards work (coordinator/karpentermetrics).
	if !o.NoKarpenterMetrics {
		var its karpentermetrics.InstanceTypes
		if src, ok := rt.Cloud.(provisioning.InstanceTypeProvider); ok {
			its = src
		}
		comps = append(comps, leader.Named{Name: "karpenter-metrics", Component: leader.Func(func(ctx context.Context, term uint64) error {
			k, err := karpentermetrics.NewKube(karpentermetrics.KubeConfig{Kube: kube, Dynamic: dyn, InstanceTypes: its,
				Registerer: rt.Registry, Log: log.With("term", term), Now: now})
			if err != nil {
				return err
			}
			return k.Run(ctx)
		})})
	}
	if rt.Launcher == nil || rt.Cloud == nil {
		log.Warn("no cloud: provisioning and disruption are off (replication and API only)")
		return comps, nil
	}
	src, ok := rt.Cloud.(provisioning.InstanceTypeProvider)
	if !ok {
		return nil, fmt.Errorf("wiring: cloud provider %T does not list instance types", rt.Cloud)
	}
	types := &cloudTypes{src: src}

	if !o.NoProvisioning {
		measured := &measuredTypes{cloudTypes: types,
			measured: &cloudmetrics.InstanceTypes{Src: types, Metrics: rt.CloudMetrics, Controller: cloudmetrics.ControllerProvisioner, Now: now}}
		p := &provisioner{kube: kube, dyn: dyn, types: measured, o: o.Provisioning, region: o.Region,
			launcher: rt.Launcher, registry: rt.Registry, log: log,
			reconciles: reconciles.Controller("provisioner")}
		comps = append(comps, leader.Named{Name: "provisioning", Component: p})
	}
	if !o.NoDisruption {
		dopts := o.Drain
		dopts.Registry, dopts.Logger = rt.Registry, log
		if rt.DrainMetrics != nil && dopts.Observer == nil {
			dopts.Observer = rt.DrainMetrics
		}
		if dopts.Component == "" {
			dopts.Component = "dovetail-disruption"
		}
		dr, err := drain.New(kube, dopts)
		if err != nil {
			return nil, fmt.Errorf("wiring: drainer: %w", err)
		}
		d := &disrupter{kube: kube, dyn: dyn, c: crc, store: rt.Store, launcher: rt.Launcher, types: types,
			drainer: dr, cfg: o.Disruption, region: o.Region, registry: rt.Registry, log: log, now: now,
			reconciles: reconciles.Controller("disruption")}
		if o.Explain != nil {
			o.Explain.bind(d)
		}
		comps = append(comps, leader.Named{Name: "disruption", Component: d})
	}
	return comps, nil
}

// provisioner runs a fresh provisioning controller for each term.
type provisioner struct {
	kube     kubernetes.Interface
	dyn      dynamic.Interface
	types    provisioning.InstanceTypeProvider
	launcher provisioning.Launcher
	o        ProvisioningOptions
	region   string
	registry registerer
	log      *slog.Logger
	// reconciles is the "provisioner" controller's reconcile metrics.
	reconciles *ctrlmetrics.Controller
}

// Run implements leader.Component.
func (p *provisioner) Run(ctx context.Context, term uint64) error {
	reg := newTermRegisterer(p.registry)
	defer reg.release()
	c, err := provisioning.New(provisioning.Config{
		Kube: p.kube, Dynamic: p.dyn, InstanceTypes: p.types, Launcher: p.launcher, Region: p.region,
		IdleGap: p.o.IdleGap, MaxWindow: p.o.MaxWindow, Resync: p.o.Resync, Parallelism: p.o.Parallelism,
		Nominated: p.o.Nominated, Logger: p.log.With("term", term), Registerer: reg, Reconciles: p.reconciles,
	})
	if err != nil {
		return fmt.Errorf("provisioning: %w", err)
	}
	return c.Run(ctx)
}

// nodeClaimConsistency runs the NodeClaim consistency check for each term,
// with the term's own Event recorder.
func nodeClaimConsistency(c client.Client, kube kubernetes.Interface, log *slog.Logger, now func() time.Time) leader.Component {
	return leader.Func(func(ctx context.Context, term uint64) error {
		bc := record.NewBroadcaster(record.WithContext(ctx))
		bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
		defer bc.Shutdown()
		ctl := &consistency.Controller{C: c, Now: now, Log: log.With("component", "nodeclaim-consistency", "term", term),
			Events: bc.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "dovetail-consistency"})}
		return ctl.Run(ctx)
	})
}

// nodePoolStatus runs a NodePool status controller for each term.
func nodePoolStatus(cfg nodepoolstatus.Config, c client.Client, kube kubernetes.Interface, log *slog.Logger) leader.Component {
	return leader.Func(func(ctx context.Context, term uint64) error {
		cfg := cfg
		cfg.Client, cfg.Log = c, log.With("term", term)
		if cfg.Events == nil {
			bc := record.NewBroadcaster(record.WithContext(ctx))
			bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
			defer bc.Shutdown()
			cfg.Events = bc.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "dovetail-nodepool-status"})
		}
		ctl, err := nodepoolstatus.New(cfg)
		if err != nil {
			return fmt.Errorf("nodepool status: %w", err)
		}
		return ctl.Run(ctx)
	})
}

// nodeClassStatus runs a fresh EC2NodeClass status controller for each term
// (its metrics are released when the term ends).
func nodeClassStatus(cfg nodeclass.Config, c client.Client, kube kubernetes.Interface, res nodeclass.Resolver, registry registerer, log *slog.Logger) leader.Component {
	return leader.Func(func(ctx context.Context, term uint64) error {
		reg := newTermRegisterer(registry)
		defer reg.release()
		cfg := cfg
		cfg.Client, cfg.Kube, cfg.Resolver, cfg.Registry, cfg.Log = c, kube, res, reg, log.With("term", term)
		ctl, err := nodeclass.New(cfg)
		if err != nil {
			return fmt.Errorf("nodeclass status: %w", err)
		}
		return ctl.Run(ctx)
	})
}
