// Package nodeclass writes EC2NodeClass status: every Interval the leader
// resolves each node class's AMI, subnet and security-group selectors
// through the cloud provider and records what they match in status.amis,
// status.subnets, status.securityGroups and the AMIsReady, SubnetsReady,
// SecurityGroupsReady and Ready conditions.
//
// The disruption planner reads status.amis to tell which nodes run an image
// the class no longer resolves to (AMI drift, rolling updates), so this is
// what turns a new AMI release behind al2023@latest into a roll.
//
// Apply is the pure part (old status + resolution → new status); the
// Controller only lists, resolves, writes when something changed and
// emits Events.
package nodeclass

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
)

// Resolver resolves a node class's selectors; cloud/ec2.Provider is one.
type Resolver interface {
	ResolveNodeClass(ctx context.Context, nc *awsv1.EC2NodeClass) (*cloud.ResolvedNodeClass, error)
}

// EventRecorder records Events on node classes; client-go's
// record.EventRecorder is one.
type EventRecorder interface {
	Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...any)
}

// Event reasons.
const (
	EventAMIsChanged  = "AMIsChanged"
	EventAMIsResolved = "AMIsResolved"
	EventReady        = "Ready"
)

// Config configures a Controller.
type Config struct {
	// Client reads node classes and writes their status subresource; its
	// scheme must know awsv1 (awsv1.AddToScheme). Required.
	Client client.Client
	// Resolver resolves selectors. Required.
	Resolver Resolver
	// Kube, when set and Events is nil, is where Run sends Events (through
	// a broadcaster that lives as long as Run).
	Kube kubernetes.Interface
	// Events overrides Kube's recorder (tests).
	Events EventRecorder
	// Interval between passes; default 1 minute.
	Interval time.Duration
	// Timeout bounds one node class's resolution; default 30 s.
	Timeout time.Duration
	Log     *slog.Logger
	// Registry receives the controller's metrics (nil: not exported).
	Registry prometheus.Registerer
}

// Controller keeps EC2NodeClass status up to date. Run it on the leader only.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	events  EventRecorder
	metrics metrics
}

// New checks cfg and registers the metrics.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil {
		return nil, errors.New("nodeclass: a Kubernetes client is required")
	}
	if cfg.Resolver == nil {
		return nil, errors.New("nodeclass: a resolver (cloud provider) is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg, log: log.With("component", "nodeclass-status"), events: cfg.Events, metrics: m}, nil
}

// Run passes over every node class each Interval until ctx ends. A failed
// pass is logged and retried at the next tick.
func (c *Controller) Run(ctx context.Context) error {
	if c.events == nil && c.cfg.Kube != nil {
		rec, stop, err := newRecorder(ctx, c.cfg.Kube)
		if err != nil {
			return err
		}
		defer stop()
		c.events = rec
	}
	c.log.Info("node class status controller started", "interval", c.cfg.Interval)
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if err := c.Pass(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("node class status pass failed; retrying at the next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// newRecorder makes an Event recorder whose scheme knows EC2NodeClass (the
// object reference needs its kind).
func newRecorder(ctx context.Context, kube kubernetes.Interface) (EventRecorder, func(), error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, awsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, nil, fmt.Errorf("nodeclass: event scheme: %w", err)
		}
	}
	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	return bc.NewRecorder(scheme, corev1.EventSource{Component: "dovetail-nodeclass"}), bc.Shutdown, nil
}

// Pass resolves and updates every node class once. Errors of single node
// classes are joined; the others are still updated.
func (c *Controller) Pass(ctx context.Context) error {
	start := time.Now()
	defer func() { c.metrics.passSeconds.Observe(time.Since(start).Seconds()) }()
	var list awsv1.EC2NodeClassList
	if err := c.cfg.Client.List(ctx, &list); err != nil {
		return fmt.Errorf("list EC2NodeClasses: %w", err)
	}
	var errs []error
	for i := range list.Items {
		nc := &list.Items[i]
		if !nc.DeletionTimestamp.IsZero() {
			continue
		}
		if err := c.Reconcile(ctx, nc); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, fmt.Errorf("EC2NodeClass %s: %w", nc.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Reconcile resolves one node class and writes its status if it changed.
func (c *Controller) Reconcile(ctx context.Context, nc *awsv1.EC2NodeClass) error {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	resolved, resolveErr := c.cfg.Resolver.ResolveNodeClass(rctx, nc)
	cancel()
	out, err := Apply(nc, resolved, resolveErr)
	if err != nil {
		c.metrics.failures.WithLabelValues("Error").Inc()
		return err
	}
	if out.Failed != "" {
		c.metrics.failures.WithLabelValues(failureReason(out.Failed)).Inc()
	}
	if !out.Changed {
		return nil
	}
	written, err := c.write(ctx, nc, resolved, resolveErr, out)
	if err != nil || written == nil {
		return err
	}
	c.announce(written, out)
	return nil
}

// write updates the status subresource with optimistic locking; on a
// conflict (the object moved since it was listed) it applies the same
// resolution to the fresh object once. It returns the written object, or
// nil when nothing needed writing or the class is gone.
func (c *Controller) write(ctx context.Context, nc *awsv1.EC2NodeClass, resolved *cloud.ResolvedNodeClass, resolveErr error, out Outcome) (*awsv1.EC2NodeClass, error) {
	obj := nc.DeepCopy()
	obj.Status = out.Status
	err := c.cfg.Client.Status().Update(ctx, obj)
	if apierrors.IsConflict(err) {
		fresh := &awsv1.EC2NodeClass{}
		if err := c.cfg.Client.Get(ctx, client.ObjectKeyFromObject(nc), fresh); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("re-read after a conflict: %w", err)
		}
		again, aerr := Apply(fresh, resolved, resolveErr)
		if aerr != nil {
			return nil, aerr
		}
		if !again.Changed {
			return nil, nil
		}
		obj = fresh
		obj.Status = again.Status
		err = c.cfg.Client.Status().Update(ctx, obj)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("update status: %w", err)
	}
	c.metrics.writes.Inc()
	return obj, nil
}

// announce logs and records Events for what a write changed: the AMI set
// (the start of a roll) and the Ready condition.
func (c *Controller) announce(nc *awsv1.EC2NodeClass, out Outcome) {
	log := c.log.With("nodeclass", nc.Name)
	if out.AMIsChanged() && len(out.NewAMIs) > 0 {
		c.metrics.amiChanges.Inc()
		if len(out.OldAMIs) == 0 {
			msg := "AMIs resolved: " + strings.Join(out.NewAMIs, ", ")
			log.Info(msg, "amis", out.NewAMIs)
			c.event(nc, corev1.EventTypeNormal, EventAMIsResolved, msg)
		} else {
			msg := AMIChangeMessage(out.OldAMIs, out.NewAMIs)
			log.Info(msg, "old", out.OldAMIs, "new", out.NewAMIs)
			c.event(nc, corev1.EventTypeNormal, EventAMIsChanged, msg)
		}
	}
	if !out.ReadyChanged {
		return
	}
	ready := nc.GetCondition(awsv1.ConditionTypeReady)
	if out.Failed != "" {
		log.Warn("node class not ready", "reason", ready.Reason, "message", ready.Message)
		c.event(nc, corev1.EventTypeWarning, ready.Reason, ready.Message)
		return
	}
	log.Info("node class ready", "message", ready.Message)
	c.event(nc, corev1.EventTypeNormal, EventReady, ready.Message)
}

func (c *Controller) event(nc *awsv1.EC2NodeClass, typ, reason, msg string) {
	if c.events != nil {
		c.events.Eventf(nc, typ, reason, "%s", msg)
	}
}

func failureReason(condition string) string {
	switch condition {
	case awsv1.ConditionTypeAMIsReady:
		return ReasonAMINotFound
	case awsv1.ConditionTypeSubnetsReady:
		return ReasonSubnetsNotFound
	default:
		return ReasonSecurityGroupsNotFound
	}
}

type metrics struct {
	writes, amiChanges prometheus.Counter
	failures           *prometheus.CounterVec
	passSeconds        prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "dovetail_nodeclass_status_writes_total",
			Help: "EC2NodeClass status updates written (only when something changed)."}),
		amiChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "dovetail_nodeclass_ami_changes_total",
			Help: "Times a node class's resolved AMI set changed (the start of an AMI roll)."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dovetail_nodeclass_resolve_failures_total",
			Help: "Node class resolutions that failed, by reason (AMINotFound, SubnetsNotFound, SecurityGroupsNotFound, Error)."}, []string{"reason"}),
		passSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dovetail_nodeclass_pass_seconds",
			Help: "Duration of one pass over all node classes.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 7)}),
	}
	if reg == nil {
		return m, nil
	}
	for _, col := range []prometheus.Collector{m.writes, m.amiChanges, m.failures, m.passSeconds} {
		if err := reg.Register(col); err != nil {
			return m, fmt.Errorf("nodeclass: register metrics: %w", err)
		}
	}
	return m, nil
}
