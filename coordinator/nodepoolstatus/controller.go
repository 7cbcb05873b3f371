package nodepoolstatus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
)

// Config configures a Controller.
type Config struct {
	// Client lists NodePools, NodeClaims and EC2NodeClasses and patches
	// NodePool status; its scheme must know karpv1 and awsv1. Required.
	Client client.Client
	// Interval between passes; default 10 s (status.nodes feeds `kubectl
	// scale` and the NODES column, so it should follow launches closely).
	Interval time.Duration
	// Events, when set, receives a Warning Event (reason InvalidBudget) on
	// a NodePool whose disruption budgets cannot be evaluated, next to the
	// ValidationSucceeded=False condition: `kubectl describe nodepool`
	// shows which budget and why. client-go's record.EventRecorder is one.
	Events EventRecorder
	Log    *slog.Logger
}

// EventRecorder records Events (client-go's record.EventRecorder is one).
type EventRecorder interface {
	Event(object runtime.Object, eventtype, reason, message string)
}

// Controller keeps NodePool status up to date. Run it on the leader only.
type Controller struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil {
		return nil, errors.New("nodepoolstatus: a Kubernetes client is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Controller{cfg: cfg, log: log.With("component", "nodepool-status")}, nil
}

// Run passes over every NodePool each Interval until ctx ends; a failed
// pass is logged and retried at the next tick.
func (c *Controller) Run(ctx context.Context) error {
	c.log.Info("nodepool status controller started", "interval", c.cfg.Interval)
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if err := c.Pass(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("nodepool status pass failed; retrying at the next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass computes and writes every NodePool's status once from one listing.
func (c *Controller) Pass(ctx context.Context) error {
	var pools karpv1.NodePoolList
	if err := c.cfg.Client.List(ctx, &pools); err != nil {
		return fmt.Errorf("list NodePools: %w", err)
	}
	var claims karpv1.NodeClaimList
	if err := c.cfg.Client.List(ctx, &claims); err != nil {
		return fmt.Errorf("list NodeClaims: %w", err)
	}
	var classes awsv1.EC2NodeClassList
	if err := c.cfg.Client.List(ctx, &classes); err != nil {
		return fmt.Errorf("list EC2NodeClasses: %w", err)
	}
	byPool := map[string][]karpv1.NodeClaim{}
	for _, nc := range claims.Items {
		if p := nc.Labels[karpv1.NodePoolLabelKey]; p != "" {
			byPool[p] = append(byPool[p], nc)
		}
	}
	byName := map[string]*awsv1.EC2NodeClass{}
	for i := range classes.Items {
		byName[classes.Items[i].Name] = &classes.Items[i]
	}
	var errs []error
	for i := range pools.Items {
		np := &pools.Items[i]
		if !np.DeletionTimestamp.IsZero() {
			continue
		}
		var class *awsv1.EC2NodeClass
		if ref := np.Spec.Template.Spec.NodeClassRef; ref != nil {
			class = byName[ref.Name]
		}
		_, done := leader.WorkingOn(ctx, leader.Object{Kind: "NodePool", Name: np.Name})
		next := Compute(np, byPool[np.Name], class)
		done()
		c.budgetEvent(np, next)
		if !Changed(np, next) {
			continue
		}
		base := np.DeepCopy()
		np.Status = next
		if err := c.cfg.Client.Status().Patch(ctx, np, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("patch NodePool %s status: %w", np.Name, err))
			continue
		}
		c.log.Debug("nodepool status written", "nodepool", np.Name, "nodes", *next.Nodes,
			"ready", np.IsTrue(karpv1.ConditionTypeReady))
	}
	return errors.Join(errs...)
}

// budgetEvent records InvalidBudget when the pool's budgets newly fail
// validation (or fail differently): once per problem, not once per pass.
func (c *Controller) budgetEvent(np *karpv1.NodePool, next karpv1.NodePoolStatus) {
	if c.cfg.Events == nil {
		return
	}
	err := validateBudgets(np)
	if err == nil {
		return
	}
	msg := truncate(err.Error())
	if old := np.GetCondition(karpv1.ConditionTypeValidationSucceeded); old != nil &&
		old.Status == metav1.ConditionFalse && old.Message == conditionMessage(next) {
		return // already reported when the condition turned False
	}
	ref := &corev1.ObjectReference{APIVersion: karpv1.GroupVersion.String(), Kind: "NodePool", Name: np.Name, UID: np.UID}
	c.cfg.Events.Event(ref, corev1.EventTypeWarning, karpenterevents.InvalidBudget, msg+"; the pool's voluntary disruption is blocked until it is fixed")
	c.log.Warn("nodepool has an invalid disruption budget", "nodepool", np.Name, "err", err)
}

func conditionMessage(st karpv1.NodePoolStatus) string {
	for _, c := range st.Conditions {
		if c.Type == karpv1.ConditionTypeValidationSucceeded {
			return c.Message
		}
	}
	return ""
}
