package launcher

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// Reconcile runs one pass: finish open intents, follow NodeClaims, collect
// leaked instances, expire the ICE cache. Errors of single items are logged
// and the pass goes on; the returned error joins them.
func (l *Launcher) Reconcile(ctx context.Context, term uint64) error {
	var errs []error
	st := l.cfg.Store.State()
	for _, in := range st.OpenIntents() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var err error
		switch in.State {
		case fsm.IntentPending:
			_, err = l.execute(ctx, term, in.Token)
		case fsm.IntentDeleting:
			err = l.terminate(ctx, term, in.Token)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("intent %s (%s): %w", in.Token, in.NodeClaim, err))
		}
	}
	if l.cfg.Claims != nil {
		if err := l.reconcileClaims(ctx, term); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.collectLeaks(ctx, term); err != nil {
		errs = append(errs, err)
	}
	now := l.cfg.Now()
	for _, e := range st.ICE {
		if !e.Until.After(now) {
			if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.ICEExpire{Now: now}); err != nil {
				errs = append(errs, err)
			}
			break
		}
	}
	return errors.Join(errs...)
}

// reconcileClaims mirrors intents and NodeClaims: deletions become Deleting
// intents, launched claims advance to Registered/Initialized, and claims a
// dead leader created but never committed an intent for are removed after a
// grace period (provisioning will plan them again).
func (l *Launcher) reconcileClaims(ctx context.Context, term uint64) error {
	claims, err := l.cfg.Claims.List(ctx)
	if err != nil {
		return fmt.Errorf("list NodeClaims: %w", err)
	}
	st := l.cfg.Store.State()
	now := l.cfg.Now()
	byName := map[string]*karpv1.NodeClaim{}
	var errs []error
	for i := range claims {
		nc := &claims[i]
		byName[nc.Name] = nc
		in := st.IntentByNodeClaim(nc.Name)
		switch {
		case nc.DeletionTimestamp != nil:
			if in == nil {
				if err := l.cfg.Claims.RemoveFinalizer(ctx, nc.Name); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			if in.State != fsm.IntentDeleting {
				if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentUpdate{Token: in.Token, Deleting: true, At: now}); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			if err := l.terminate(ctx, term, in.Token); err != nil {
				errs = append(errs, err)
			}
		case in == nil:
			if nc.Status.ProviderID == "" && now.Sub(nc.CreationTimestamp.Time) >= l.cfg.OrphanClaimGrace {
				l.log.Info("deleting NodeClaim that never got a launch intent", "nodeClaim", nc.Name)
				if err := l.cfg.Claims.Delete(ctx, nc.Name); err != nil {
					errs = append(errs, err)
				}
			}
		case in.State == fsm.IntentLaunched:
			if nc.Status.ProviderID == "" {
				l.afterResult(ctx, term, in)
			}
			if !in.Initialized {
				l.follow(ctx, term, in)
			}
		case in.State == fsm.IntentFailed:
			l.afterResult(ctx, term, in)
		}
	}
	// Intents whose NodeClaim vanished (deleted without our finalizer).
	for _, in := range st.Intents {
		if _, ok := byName[in.NodeClaim]; ok || in.State == fsm.IntentDeleting || in.State == fsm.IntentPending {
			continue
		}
		if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentUpdate{Token: in.Token, Deleting: true, At: now}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// follow advances a launched NodeClaim when its node appears and turns Ready.
func (l *Launcher) follow(ctx context.Context, term uint64, in *fsm.Intent) {
	if in.Instance == nil {
		return
	}
	node, err := l.cfg.Claims.NodeByProviderID(ctx, in.Instance.ProviderID)
	if err != nil || node == nil {
		return
	}
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == "Ready" && c.Status == "True" {
			ready = true
		}
	}
	if in.Registered && in.NodeName == node.Name && (!ready || in.Initialized) {
		return
	}
	if err := l.cfg.Claims.MarkRegistered(ctx, in.NodeClaim, node.Name, ready); err != nil {
		l.log.Warn("mark NodeClaim registered", "nodeClaim", in.NodeClaim, "err", err)
		return
	}
	_ = l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentUpdate{Token: in.Token, Registered: true, Initialized: ready,
		NodeName: node.Name, At: l.cfg.Now()})
	_ = l.cfg.Store.ApplyInTerm(ctx, term, fsm.NodeBind{Binding: fsm.NodeBinding{InstanceID: in.Instance.ID,
		ProviderID: in.Instance.ProviderID, NodeName: node.Name, NodeClaim: in.NodeClaim, NodePool: in.NodePool, Since: l.cfg.Now()}})
}

// collectLeaks terminates instances of this cluster that no intent owns,
// once this leader has seen them unowned for LeakGrace. The cloud is listed
// BEFORE the state is read: every launch commits its intent before calling
// the cloud, so any instance in the listing that belongs to a live launch
// has its intent in the state read afterwards.
//
// It also notices launched instances that disappeared (spot reclaimed,
// terminated by hand): outside the post-failover grace period their
// intents move to Deleting so the NodeClaim goes away.
func (l *Launcher) collectLeaks(ctx context.Context, term uint64) error {
	insts, err := l.cfg.Cloud.List(ctx)
	if err != nil {
		return fmt.Errorf("list instances: %w", err)
	}
	st := l.cfg.Store.State()
	now := l.cfg.Now()
	owner := map[string]*fsm.Intent{}   // instance ID → intent
	pending := map[string]*fsm.Intent{} // NodeClaim → pending intent
	for _, in := range st.Intents {
		if in.Instance != nil {
			owner[in.Instance.ID] = in
		}
		if in.State == fsm.IntentPending {
			pending[in.NodeClaim] = in
		}
	}
	live := map[string]bool{}
	var errs []error
	l.mu.Lock()
	seen := l.firstSeen
	l.mu.Unlock()
	for _, inst := range insts {
		if isTerminal(inst.State) {
			continue
		}
		live[inst.ID] = true
		if owner[inst.ID] != nil || pending[inst.Tags[cloud.TagNodeClaim]] != nil {
			delete(seen, inst.ID)
			continue
		}
		first, ok := seen[inst.ID]
		if !ok {
			seen[inst.ID] = now
			l.log.Info("instance owned by no intent; will collect after grace", "instance", inst.ID,
				"nodeClaim", inst.Tags[cloud.TagNodeClaim], "launchTerm", inst.Tags[cloud.TagLeaderTerm], "grace", l.cfg.LeakGrace)
			continue
		}
		if now.Sub(first) < l.cfg.LeakGrace {
			continue
		}
		if err := l.cfg.Store.VerifyLeader(ctx, term); err != nil {
			return fmt.Errorf("before leak collection: %w", err)
		}
		launchTerm, _ := strconv.ParseUint(inst.Tags[cloud.TagLeaderTerm], 10, 64)
		l.log.Warn("terminating leaked instance", "instance", inst.ID, "nodeClaim", inst.Tags[cloud.TagNodeClaim],
			"launchTerm", launchTerm, "term", term)
		l.m.cloudCalls.WithLabelValues("delete").Inc()
		if err := l.cfg.Cloud.Delete(ctx, inst.ID); err != nil && !errors.Is(err, cloud.ErrNotFound) {
			errs = append(errs, fmt.Errorf("terminate leaked %s: %w", inst.ID, err))
			continue
		}
		l.m.leaks.Inc()
		delete(seen, inst.ID)
	}
	if st.InGracePeriod(now, l.cfg.NodeGrace) {
		return errors.Join(errs...)
	}
	for id, in := range owner {
		if live[id] || in.State != fsm.IntentLaunched {
			continue
		}
		got, err := l.cfg.Cloud.Get(ctx, id)
		if err == nil && !isTerminal(got.State) {
			continue // listing raced with a launch
		}
		if err != nil && !errors.Is(err, cloud.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		l.log.Info("instance is gone; deleting its NodeClaim", "instance", id, "nodeClaim", in.NodeClaim)
		if err := l.cfg.Store.ApplyInTerm(ctx, term, fsm.IntentUpdate{Token: in.Token, Deleting: true, At: now}); err != nil {
			errs = append(errs, err)
		}
		if l.cfg.Claims != nil {
			if err := l.cfg.Claims.Delete(ctx, in.NodeClaim); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
