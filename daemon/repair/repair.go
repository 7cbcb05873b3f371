// Package repair decides and performs the agent's self-repair: restart the
// systemd unit behind a failed check, reboot when allowed and nothing else
// helped, otherwise ask the coordinator to replace the node. Every action is
// rate-limited, and the limits are persisted so that a restart loop (or a
// reboot loop) cannot reset them. When in doubt it reports and lets the
// coordinator decide: a repair must never make the node worse.
package repair

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/dovetail-dev/dovetail/health"
)

// Action is what the repairer does about a check.
type Action string

// Actions.
const (
	ActionNone    Action = ""
	ActionRestart Action = "restart-unit"
	ActionReboot  Action = "reboot"
	ActionReplace Action = "replace-me"
)

// Policy configures self-repair. The zero value only ever reports.
type Policy struct {
	// Units maps a check name to the unit that serves it, e.g.
	// kubelet → kubelet.service, containerd → containerd.service.
	Units map[string]string
	// RestartAfter: a check must have failed this long before its unit is
	// restarted (a blip is not worth a restart). Default 1 min.
	RestartAfter time.Duration
	// MaxRestarts per unit within RestartWindow. Default 3 per hour.
	MaxRestarts   int
	RestartWindow time.Duration
	// AllowReboot lets the agent reboot the node for kernel or accelerator
	// failures, or for units that restarts did not fix.
	AllowReboot bool
	// RebootAfter: how long a failure must persist before a reboot.
	// Default 10 min.
	RebootAfter time.Duration
	// MaxReboots within RebootWindow. Default 1 per 24 h.
	MaxReboots   int
	RebootWindow time.Duration
	// ReplaceAfter: how long a failure must persist (with nothing else left
	// to try) before asking the coordinator for a replacement. Default 5 min.
	ReplaceAfter time.Duration
}

func (p *Policy) defaults() {
	if p.RestartAfter <= 0 {
		p.RestartAfter = time.Minute
	}
	if p.MaxRestarts <= 0 {
		p.MaxRestarts = 3
	}
	if p.RestartWindow <= 0 {
		p.RestartWindow = time.Hour
	}
	if p.RebootAfter <= 0 {
		p.RebootAfter = 10 * time.Minute
	}
	if p.MaxReboots <= 0 {
		p.MaxReboots = 1
	}
	if p.RebootWindow <= 0 {
		p.RebootWindow = 24 * time.Hour
	}
	if p.ReplaceAfter <= 0 {
		p.ReplaceAfter = 5 * time.Minute
	}
}

// DefaultUnits are the units behind the runtime checks on Dovetail's AMIs.
var DefaultUnits = map[string]string{"kubelet": "kubelet.service", "containerd": "containerd.service"}

// Systemd is what the repairer needs from the init system (D-Bus in
// production, a recorder in tests).
type Systemd interface {
	RestartUnit(ctx context.Context, unit string) error
	Reboot(ctx context.Context) error
}

// Decision is one planned action.
type Decision struct {
	Check  string `json:"check"`
	Action Action `json:"action"`
	Unit   string `json:"unit,omitempty"`
	Reason string `json:"reason"`
}

// history is the persisted rate-limit memory.
type history struct {
	Restarts map[string][]time.Time `json:"restarts"` // by unit
	Reboots  []time.Time            `json:"reboots"`
	// Replace requests already sent, by check, with the Since of the
	// failure episode they were about (one request per episode).
	Replaced map[string]time.Time `json:"replaced"`
}

// Repairer plans and performs repairs.
type Repairer struct {
	policy    Policy
	sd        Systemd
	stateFile string
	log       *slog.Logger
	now       func() time.Time

	mu sync.Mutex
	h  history
}

// New returns a Repairer persisting its history to stateFile ("" for none).
func New(policy Policy, sd Systemd, stateFile string, log *slog.Logger) (*Repairer, error) {
	policy.defaults()
	if log == nil {
		log = slog.Default()
	}
	r := &Repairer{policy: policy, sd: sd, stateFile: stateFile, log: log.With("component", "repair"), now: time.Now,
		h: history{Restarts: map[string][]time.Time{}, Replaced: map[string]time.Time{}}}
	if stateFile != "" {
		b, err := os.ReadFile(stateFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("repair: read state: %w", err)
		default:
			var h history
			if err := json.Unmarshal(b, &h); err != nil {
				// Fail safe: with unknown history assume the limits are used up
				// for a window rather than risk a reboot loop.
				r.log.Error("corrupt repair state; assuming limits exhausted", "file", stateFile, "err", err)
				now := r.now()
				for range policy.MaxReboots {
					r.h.Reboots = append(r.h.Reboots, now)
				}
			} else {
				if h.Restarts == nil {
					h.Restarts = map[string][]time.Time{}
				}
				if h.Replaced == nil {
					h.Replaced = map[string]time.Time{}
				}
				r.h = h
			}
		}
	}
	return r, nil
}

// SetClock replaces the clock (tests).
func (r *Repairer) SetClock(now func() time.Time) { r.now = now }

func within(ts []time.Time, since time.Time) int {
	n := 0
	for _, t := range ts {
		if !t.Before(since) {
			n++
		}
	}
	return n
}

func lastOf(ts []time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}

// Plan decides what to do about results; it performs nothing.
func (r *Repairer) Plan(results []health.Result) []Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	p := r.policy
	var out []Decision
	rebootPlanned := false
	sorted := append([]health.Result(nil), results...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, res := range sorted {
		if res.State != health.StateFailed {
			continue
		}
		age := now.Sub(res.Since)
		unit := p.Units[res.Name]
		// The ladder: restart the unit (while younger than RebootAfter),
		// then reboot (when allowed and within budget), else ask for a
		// replacement.
		if unit != "" && age >= p.RestartAfter && age < p.RebootAfter {
			restarts := r.h.Restarts[unit]
			if within(restarts, now.Add(-p.RestartWindow)) < p.MaxRestarts {
				// Give the last restart time to work before another.
				if now.Sub(lastOf(restarts)) >= p.RestartAfter {
					out = append(out, Decision{Check: res.Name, Action: ActionRestart, Unit: unit,
						Reason: fmt.Sprintf("%s failed for %s: %s", res.Name, age.Round(time.Second), res.Reason)})
				}
				continue
			}
		}
		rebootable := unit != "" || res.Condition == health.KernelReady || res.Condition == health.AcceleratedHardwareReady
		canReboot := p.AllowReboot && rebootable && within(r.h.Reboots, now.Add(-p.RebootWindow)) < p.MaxReboots
		if canReboot {
			if age >= p.RebootAfter && !rebootPlanned {
				rebootPlanned = true
				out = append(out, Decision{Check: res.Name, Action: ActionReboot,
					Reason: fmt.Sprintf("%s failed for %s (%s) and restarts did not help", res.Name, age.Round(time.Second), res.Reason)})
			}
			continue // a reboot is still to come: do not ask for replacement yet
		}
		if age >= p.ReplaceAfter {
			if sent, ok := r.h.Replaced[res.Name]; ok && sent.Equal(res.Since) {
				continue // already asked during this episode
			}
			out = append(out, Decision{Check: res.Name, Action: ActionReplace,
				Reason: fmt.Sprintf("%s failed for %s (%s); nothing left to try on the node", res.Name, age.Round(time.Second), res.Reason)})
		}
	}
	return out
}

// Apply performs decisions and records them. ReplaceMe decisions are
// recorded here and must be sent by the caller (they are reports). It
// returns the decisions that were carried out (or recorded).
func (r *Repairer) Apply(ctx context.Context, results []health.Result, decisions []Decision) ([]Decision, error) {
	since := map[string]time.Time{}
	for _, res := range results {
		since[res.Name] = res.Since
	}
	var done []Decision
	var errs []error
	for _, d := range decisions {
		now := r.now()
		switch d.Action {
		case ActionRestart:
			// Record before acting: if the restart takes the agent down with
			// it, the attempt must still count.
			r.record(func(h *history) { h.Restarts[d.Unit] = append(h.Restarts[d.Unit], now) })
			r.log.Warn("restarting unit", "unit", d.Unit, "reason", d.Reason)
			if err := r.sd.RestartUnit(ctx, d.Unit); err != nil {
				errs = append(errs, fmt.Errorf("restart %s: %w", d.Unit, err))
				continue
			}
		case ActionReboot:
			r.record(func(h *history) { h.Reboots = append(h.Reboots, now) })
			r.log.Warn("rebooting node", "reason", d.Reason)
			if err := r.sd.Reboot(ctx); err != nil {
				errs = append(errs, fmt.Errorf("reboot: %w", err))
				continue
			}
		case ActionReplace:
			r.record(func(h *history) { h.Replaced[d.Check] = since[d.Check] })
			r.log.Warn("asking the coordinator to replace this node", "reason", d.Reason)
		}
		done = append(done, d)
	}
	return done, errors.Join(errs...)
}

// record mutates and persists the history, trimming old entries.
func (r *Repairer) record(f func(*history)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.h)
	cut := r.now().Add(-max(r.policy.RestartWindow, r.policy.RebootWindow))
	for u, ts := range r.h.Restarts {
		kept := ts[:0]
		for _, t := range ts {
			if t.After(cut) {
				kept = append(kept, t)
			}
		}
		r.h.Restarts[u] = kept
	}
	if r.stateFile == "" {
		return
	}
	b, err := json.Marshal(r.h)
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(r.stateFile), 0o700); err == nil {
			tmp := r.stateFile + ".tmp"
			if err = os.WriteFile(tmp, b, 0o600); err == nil {
				err = os.Rename(tmp, r.stateFile)
			}
		}
	}
	if err != nil {
		r.log.Error("could not persist repair history", "err", err)
	}
}
