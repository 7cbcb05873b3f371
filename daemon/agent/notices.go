package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/daemon/imds"
	"github.com/dovetail-dev/dovetail/drain"
	"github.com/dovetail-dev/dovetail/report"
)

// drainRecord is written when the agent drains its node, so that after a
// reboot (a new boot ID) the agent knows to undo the drain.
type drainRecord struct {
	Reason  string    `json:"reason"`
	EventID string    `json:"eventID,omitempty"`
	BootID  string    `json:"bootID"`
	Started time.Time `json:"started"`
}

func (a *Agent) bootID() string {
	b, err := os.ReadFile(a.cfg.BootIDFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (a *Agent) writeDrainRecord(rec drainRecord) {
	p := a.statePath("drain.json")
	if p == "" || a.cfg.DryRun {
		return
	}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(p+".tmp", b, 0o600); err == nil {
		err = os.Rename(p+".tmp", p)
		if err != nil {
			a.log.Warn("could not record drain", "err", err)
		}
	}
}

func (a *Agent) readDrainRecord() (drainRecord, bool) {
	p := a.statePath("drain.json")
	if p == "" {
		return drainRecord{}, false
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return drainRecord{}, false
	}
	var rec drainRecord
	if json.Unmarshal(b, &rec) != nil {
		return drainRecord{}, false
	}
	return rec, true
}

func (a *Agent) clearDrainRecord() {
	if p := a.statePath("drain.json"); p != "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("could not clear drain record", "err", err)
		}
	}
}

// restoreAfterReboot undoes a drain from a previous boot: the node survived
// whatever it was drained for (a reboot event, a spot stop/start).
func (a *Agent) restoreAfterReboot(ctx context.Context) {
	rec, ok := a.readDrainRecord()
	if !ok {
		return
	}
	boot := a.bootID()
	if boot == "" || rec.BootID == "" || boot == rec.BootID {
		return // same boot: the agent restarted; IMDS will tell us again
	}
	a.log.Info("node survived a reboot after a drain; uncordoning", "reason", rec.Reason, "event", rec.EventID)
	if err := a.drainer.Restore(ctx, a.node, fmt.Sprintf("node came back after %s (boot %s)", rec.Reason, boot)); err != nil {
		a.log.Error("restore after reboot", "err", err)
		return
	}
	a.clearDrainRecord()
	if rec.EventID != "" {
		r := a.newReport(report.KindMaintenance)
		r.EventID, r.Message = rec.EventID, "node survived the maintenance reboot and is schedulable again"
		a.reporter.Send(r)
	}
}

// handleNotice reacts to one IMDS notice. It must return fast: drains run
// in their own goroutines.
func (a *Agent) handleNotice(ctx context.Context, n imds.Notice) {
	a.heartbeat.Store(time.Now().UnixNano())
	log := a.log.With("notice", n.Kind, "action", n.Action, "time", n.Time, "event", n.EventID)
	switch n.Kind {
	case imds.KindSpotInterruption:
		log.Warn("spot interruption notice")
		a.interruptions.Inc()
		deadline := n.Time
		if deadline.IsZero() || !deadline.After(a.cfg.Now()) {
			deadline = a.cfg.Now().Add(2 * time.Minute)
		}
		r := a.newReport(report.KindInterruption)
		r.Action, r.Deadline = n.Action, deadline
		a.startDrain(ctx, "spot", deadline, a.cfg.SpotForceDeleteBefore, drainRecord{Reason: "spot-" + n.Action}, &r)

	case imds.KindRebalance:
		// Reported, not drained: the coordinator may replace the node early.
		log.Info("rebalance recommendation")
		r := a.newReport(report.KindRebalance)
		r.Deadline = n.Time
		a.reporter.Send(r)

	case imds.KindMaintenance:
		key := "maintenance/" + n.EventID
		r := a.newReport(report.KindMaintenance)
		r.Action, r.Deadline, r.EventID, r.Message = n.Action, n.Time, n.EventID, n.Description
		switch {
		case n.Cancelled:
			log.Info("maintenance event cancelled", "state", n.State)
			r.Cancelled = true
			a.reporter.Send(r)
			a.cancelDrain(key)
			a.undoDrainFor(ctx, n.EventID, "maintenance event "+n.EventID+" was cancelled")
		case n.Completed:
			log.Info("maintenance event completed")
			r.Message = "completed"
			a.reporter.Send(r)
			a.cancelDrain(key)
			// Still running: whatever the event did, the node survived it.
			a.undoDrainFor(ctx, n.EventID, "maintenance event "+n.EventID+" completed and the node is still here")
		default:
			log.Warn("maintenance event scheduled")
			a.reporter.Send(r)
			if n.Action == "system-maintenance" {
				return // network/power work: the instance keeps running
			}
			a.scheduleMaintenanceDrain(ctx, key, n)
		}
	}
}

// scheduleMaintenanceDrain drains MaintenanceLead before the event starts
// (at once when that is already past).
func (a *Agent) scheduleMaintenanceDrain(ctx context.Context, key string, n imds.Notice) {
	a.cancelDrain(key) // a rescheduled event replaces the old plan
	start := n.Time.Add(-a.cfg.MaintenanceLead)
	wait := start.Sub(a.cfg.Now())
	dctx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	a.drainCancel[key] = cancel
	a.mu.Unlock()
	a.log.Info("maintenance drain scheduled", "event", n.EventID, "at", start, "in", wait.Round(time.Second))
	a.drains.Add(1)
	go func() {
		defer a.drains.Done()
		if wait > 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-dctx.Done():
				return
			case <-t.C:
			}
		}
		a.interruptions.Inc()
		deadline := n.Time
		if !deadline.After(a.cfg.Now()) {
			deadline = a.cfg.Now().Add(a.cfg.MaintenanceLead)
		}
		r := a.newReport(report.KindDrainProgress)
		r.Action, r.EventID, r.Deadline, r.Message = n.Action, n.EventID, deadline, "draining for maintenance"
		// Maintenance keeps the node (or stops it cleanly): never force.
		a.runDrain(dctx, "maintenance", deadline, 0, drainRecord{Reason: "maintenance-" + n.Action, EventID: n.EventID}, &r)
	}()
}

func (a *Agent) startDrain(ctx context.Context, key string, deadline time.Time, force time.Duration, rec drainRecord, first *report.Report) {
	a.mu.Lock()
	if _, running := a.drainCancel[key]; running {
		a.mu.Unlock()
		return
	}
	dctx, cancel := context.WithCancel(ctx)
	a.drainCancel[key] = cancel
	a.mu.Unlock()
	a.drains.Add(1)
	go func() {
		defer a.drains.Done()
		a.runDrain(dctx, key, deadline, force, rec, first)
	}()
}

// runDrain taints, cordons, sends first (the report that gets a
// replacement launched) as soon as the node is cordoned, then drains.
func (a *Agent) runDrain(ctx context.Context, reason string, deadline time.Time, force time.Duration, rec drainRecord, first *report.Report) {
	rec.BootID, rec.Started = a.bootID(), a.cfg.Now()
	a.writeDrainRecord(rec)
	var once sync.Once
	sendFirst := func() {
		once.Do(func() {
			if first != nil {
				a.reporter.Send(*first)
			}
		})
	}
	d := a.drainer.Derive(func(o *drain.Options) {
		o.ForceDeleteBefore = force
		o.Progress = func(res drain.Result) {
			if !res.CordonedAt.IsZero() {
				sendFirst()
			}
			a.lastDrain.Store(&res)
			p := a.newReport(report.KindDrainProgress)
			p.Deadline, p.PodsRemaining, p.PodsEvicted, p.Done = res.Deadline, res.Remaining(), res.Accepted(), !res.Finished.IsZero()
			if b := res.Blocked(); len(b) > 0 {
				p.Blocked = fmt.Sprintf("%s: %s", b[0].Pod, b[0].Message)
			}
			p.Message = res.Stopped
			a.reporter.Send(p)
		}
	})
	res, err := d.Drain(ctx, a.node, deadline, reason)
	sendFirst()
	a.lastDrain.Store(&res)
	if err != nil && !errors.Is(err, context.Canceled) {
		a.log.Error("drain failed", "reason", reason, "err", err)
		return
	}
	a.log.Info("drain done", drainAttrs(reason, res)...)
}

// drainAttrs is the drain's outcome as log attributes: counts that add up
// (accepted evictions, gone, still terminating, not yet evicted, blocked)
// and durations only when they happened — a drain stopped by SIGTERM has no
// "took to empty", rather than one computed from a zero time.
func drainAttrs(reason string, res drain.Result) []any {
	attrs := []any{"reason", reason, "complete", res.Complete, "pods", len(res.Pods),
		"evictionsAccepted", res.Accepted(), "gone", len(res.Pods) - res.Remaining(), "remaining", res.Remaining(),
		"terminating", res.Terminating(), "notEvicted", res.Count(drain.OutcomePending), "blocked", len(res.Blocked()),
		"deleted", res.Count(drain.OutcomeDeleted)}
	if d, ok := res.TookToCordon(); ok {
		attrs = append(attrs, "tookToCordon", d)
	}
	if d, ok := res.TookToEmpty(); ok {
		attrs = append(attrs, "tookToEmpty", d)
	}
	if res.Stopped != "" {
		attrs = append(attrs, "stopped", res.Stopped, "ranFor", res.Finished.Sub(res.Started))
	}
	return attrs
}

func (a *Agent) cancelDrain(key string) {
	a.mu.Lock()
	cancel := a.drainCancel[key]
	delete(a.drainCancel, key)
	a.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// undoDrainFor restores the node if it was drained (or being drained) for
// eventID. A drain for another reason (spot) is left alone.
func (a *Agent) undoDrainFor(ctx context.Context, eventID, why string) {
	rec, ok := a.readDrainRecord()
	if ok && rec.EventID != eventID {
		return
	}
	if !ok && a.cfg.StateDir != "" {
		return // nothing was drained for it
	}
	if err := a.drainer.Restore(ctx, a.node, why); err != nil {
		a.log.Error("restore node", "err", err)
		return
	}
	a.clearDrainRecord()
	a.drainer.NodeEvent(ctx, a.node, corev1.EventTypeNormal, "MaintenanceCancelled", why)
}
