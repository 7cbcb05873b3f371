package launcher

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/cloudmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// Reconcile runs one pass: observe, Plan, apply. Errors of single actions
// are logged and the pass goes on; the returned error joins them.
func (l *Launcher) Reconcile(ctx context.Context, term uint64) error {
	o, err := l.observe(ctx)
	if err != nil {
		return err
	}
	p := Plan(o, Graces{OrphanClaim: l.cfg.OrphanClaimGrace, Leak: l.cfg.LeakGrace, Node: l.cfg.NodeGrace})
	for _, inst := range p.NewlyUnowned {
		l.log.Info("instance owned by no intent; will collect after grace", "instance", inst.ID,
			"nodeClaim", inst.Tags[cloud.TagNodeClaim], "launchTerm", inst.Tags[cloud.TagLeaderTerm], "grace", l.cfg.LeakGrace)
	}
	return l.apply(ctx, term, p)
}

// observe reads what Plan needs, in the order Observed documents.
func (l *Launcher) observe(ctx context.Context) (Observed, error) {
	o := Observed{HaveKube: l.cfg.Claims != nil}
	if o.HaveKube {
		o.ClaimsListed = l.cfg.Now()
		claims, err := l.cfg.Claims.List(ctx)
		if err != nil {
			return o, fmt.Errorf("list NodeClaims: %w", err)
		}
		o.Claims = claims
	}
	insts, err := l.cloudList(ctx, cloudmetrics.ControllerGarbageCollection)
	if err != nil {
		return o, fmt.Errorf("list instances: %w", err)
	}
	o.Instances = insts
	o.State = l.cfg.Store.State()
	o.Now = l.cfg.Now()
	l.mu.Lock()
	o.FirstSeen = make(map[string]time.Time, len(l.firstSeen))
	for k, v := range l.firstSeen {
		o.FirstSeen[k] = v
	}
	l.mu.Unlock()
	if o.HaveKube {
		o.Nodes = map[string]*corev1.Node{}
		for _, in := range o.State.Intents {
			if in.State != fsm.IntentLaunched || in.Initialized || in.Instance == nil {
				continue
			}
			node, err := l.cfg.Claims.NodeByProviderID(ctx, in.Instance.ProviderID)
			if err != nil {
				l.log.Warn("look up node of launched NodeClaim", "nodeClaim", in.NodeClaim, "err", err)
				continue
			}
			if node != nil {
				o.Nodes[in.Instance.ProviderID] = node
			}
		}
	}
	return o, nil
}

// apply executes a plan's actions in order. It decides nothing: each action
// is carried out as planned (ConfirmGone's re-read is the action itself).
func (l *Launcher) apply(ctx context.Context, term uint64, p ReconcilePlan) error {
	l.mu.Lock()
	l.firstSeen = p.FirstSeen
	l.mu.Unlock()
	var errs []error
	for _, a := range p.Actions {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := l.applyAction(ctx, term, a); err != nil {
			if errors.Is(err, errStopPass) {
				return errors.Join(append(errs, err)...)
			}
			errs = append(errs, fmt.Errorf("%s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

// errStopPass ends a pass: this replica may no longer lead.
var errStopPass = errors.New("leadership not confirmed")

func (l *Launcher) applyAction(ctx context.Context, term uint64, a Action) error {
	now := l.cfg.Now()
	switch a.Kind {
	case ActExecute:
		_, err := l.execute(ctx, term, a.Token)
		return err
	case ActTerminate:
		return l.terminate(ctx, term, a.Token)
	case ActMarkDeleting:
		return l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentUpdate{Token: a.Token, Deleting: true, At: now})
	case ActReleaseClaim:
		return l.cfg.Claims.RemoveFinalizer(ctx, a.NodeClaim)
	case ActDeleteClaim:
		l.log.Info("deleting NodeClaim", "nodeClaim", a.NodeClaim, "why", a.Why)
		return l.cfg.Claims.Delete(ctx, a.NodeClaim)
	case ActMirrorResult:
		l.afterResult(ctx, term, l.intent(a.Token))
		return nil
	case ActRegister:
		if err := l.cfg.Claims.MarkRegistered(ctx, a.NodeClaim, a.NodeName, a.Ready); err != nil {
			return fmt.Errorf("mark NodeClaim registered: %w", err)
		}
		// One command records the node on the intent and its binding.
		return l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentUpdate{Token: a.Token, Registered: true,
			Initialized: a.Ready, NodeName: a.NodeName, At: now})
	case ActTerminateLeak:
		if err := l.cfg.Store.VerifyLeader(ctx, term); err != nil {
			return fmt.Errorf("%w before leak collection: %w", errStopPass, err)
		}
		launchTerm, _ := strconv.ParseUint(a.LaunchTerm, 10, 64)
		l.log.Warn("terminating leaked instance", "instance", a.InstanceID, "nodeClaim", a.NodeClaim,
			"launchTerm", launchTerm, "term", term)
		l.m.cloudCalls.WithLabelValues("delete").Inc()
		if err := l.cloudDelete(ctx, cloudmetrics.ControllerGarbageCollection, a.InstanceID); err != nil && !errors.Is(err, cloud.ErrNotFound) {
			return fmt.Errorf("terminate leaked %s: %w", a.InstanceID, err)
		}
		l.m.leaks.Inc()
		l.mu.Lock()
		delete(l.firstSeen, a.InstanceID)
		l.mu.Unlock()
		return nil
	case ActConfirmGone:
		got, err := l.cloudGet(ctx, cloudmetrics.ControllerGarbageCollection, a.InstanceID)
		if err == nil && !isTerminal(got.State) {
			return nil // the listing raced with a launch
		}
		if err != nil && !errors.Is(err, cloud.ErrNotFound) {
			return err
		}
		l.log.Info("instance is gone; deleting its NodeClaim", "instance", a.InstanceID, "nodeClaim", a.NodeClaim)
		var errs []error
		if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentUpdate{Token: a.Token, Deleting: true, At: now}); err != nil {
			errs = append(errs, err)
		}
		if l.cfg.Claims != nil {
			if err := l.cfg.Claims.Delete(ctx, a.NodeClaim); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case ActExpireICE:
		return l.cfg.Store.ApplyInTerm(ctx, term, fsm.ICEExpire{Now: now})
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}
