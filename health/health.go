// Package health checks a node the way an operator would: kubelet and the
// container runtime, disks, memory and PIDs, the kernel log, networking, the
// clock and accelerators. It is shared by the agent (which turns results
// into NodeConditions and Events) and the `dovetail health` CLI.
//
// Every check reads the machine through Env, whose paths are relative to a
// Root, so tests feed fake /proc, /sys, kmsg and sockets and run
// unprivileged.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// State of a check.
type State string

// States, ordered from best to worst.
const (
	StateOK       State = "ok"
	StateDegraded State = "degraded"
	StateFailed   State = "failed"
	// StateUnknown: the check could not look (e.g. not permitted). It does
	// not change a condition.
	StateUnknown State = "unknown"
)

func (s State) rank() int {
	switch s {
	case StateOK:
		return 1
	case StateDegraded:
		return 2
	case StateFailed:
		return 3
	default:
		return 0
	}
}

// Worse reports whether s is worse than o.
func (s State) Worse(o State) bool { return s.rank() > o.rank() }

// NodeCondition types, with the names users know from EKS.
const (
	KernelReady              = "KernelReady"
	NetworkingReady          = "NetworkingReady"
	StorageReady             = "StorageReady"
	ContainerRuntimeReady    = "ContainerRuntimeReady"
	AcceleratedHardwareReady = "AcceleratedHardwareReady"
)

// Conditions lists the condition types in a stable order.
var Conditions = []string{KernelReady, NetworkingReady, StorageReady, ContainerRuntimeReady, AcceleratedHardwareReady}

// Result is one check's verdict.
type Result struct {
	Name      string `json:"name"`
	Condition string `json:"condition,omitempty"`
	State     State  `json:"state"`
	// Reason is a CamelCase word fit for a NodeCondition reason.
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
	// Since is when the check entered State (kept across agent restarts).
	Since     time.Time `json:"since"`
	CheckedAt time.Time `json:"checkedAt"`
	// NotApplicable: nothing to check here (no GPU). No condition is set.
	NotApplicable bool `json:"notApplicable,omitempty"`
}

// Check is one health check.
type Check interface {
	Name() string
	Condition() string
	Run(ctx context.Context) Result
}

// Stateful checks carry memory across agent restarts (the kernel-log check
// remembers recent problems).
type Stateful interface {
	SaveState() (json.RawMessage, error)
	LoadState(json.RawMessage) error
}

// Runner runs checks and tracks since-when each has been in its state,
// persisting both to StateFile so a restart neither forgets a problem nor
// resets its age.
type Runner struct {
	Checks    []Check
	StateFile string // empty: keep state in memory only
	Now       func() time.Time

	mu      sync.Mutex
	last    map[string]Result
	loaded  bool
	timeout time.Duration
}

// NewRunner returns a Runner for checks, persisting to stateFile ("" for none).
func NewRunner(checks []Check, stateFile string) *Runner {
	return &Runner{Checks: checks, StateFile: stateFile, Now: time.Now, last: map[string]Result{}, timeout: 5 * time.Second}
}

type persisted struct {
	Results map[string]Result          `json:"results"`
	State   map[string]json.RawMessage `json:"state,omitempty"`
}

// Load reads the state file, if any. A missing file is not an error; a
// corrupt one is reported and ignored (checks then start afresh).
func (r *Runner) Load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loaded = true
	if r.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(r.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("health: read state: %w", err)
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("health: corrupt state file %s (ignored): %w", r.StateFile, err)
	}
	if p.Results != nil {
		r.last = p.Results
	}
	for _, c := range r.Checks {
		if s, ok := c.(Stateful); ok && p.State[c.Name()] != nil {
			if err := s.LoadState(p.State[c.Name()]); err != nil {
				return fmt.Errorf("health: state of %s (ignored): %w", c.Name(), err)
			}
		}
	}
	return nil
}

// Previous returns the persisted or last results (before any run this
// session, what the agent knew before it restarted).
func (r *Runner) Previous() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Result, 0, len(r.last))
	for _, v := range r.last {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Run runs every check (concurrently, each bounded by a timeout), stamps
// Since, persists, and returns the results sorted by name.
func (r *Runner) Run(ctx context.Context) []Result {
	r.mu.Lock()
	if !r.loaded {
		r.loaded = true
	}
	r.mu.Unlock()
	results := make([]Result, len(r.Checks))
	var wg sync.WaitGroup
	for i, c := range r.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runOne(ctx, c, r.timeout)
		}()
	}
	wg.Wait()
	now := r.Now()
	r.mu.Lock()
	for i := range results {
		res := &results[i]
		res.CheckedAt = now
		prev, ok := r.last[res.Name]
		if ok && prev.State == res.State && !prev.Since.IsZero() {
			res.Since = prev.Since
		} else {
			res.Since = now
		}
		r.last[res.Name] = *res
	}
	r.mu.Unlock()
	sort.Slice(results, func(i, j int) bool { return results[i].Name < results[j].Name })
	_ = r.save() // best effort: an unwritable state dir must not stop checking
	return results
}

// runOne runs a check with a timeout and turns a panic or overrun into a
// failed-to-check result rather than a crash.
func runOne(ctx context.Context, c Check, timeout time.Duration) (res Result) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan Result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- Result{Name: c.Name(), Condition: c.Condition(), State: StateUnknown, Reason: "CheckPanicked", Message: fmt.Sprint(p)}
			}
		}()
		done <- c.Run(ctx)
	}()
	select {
	case res = <-done:
	case <-ctx.Done():
		res = Result{State: StateUnknown, Reason: "CheckTimedOut", Message: fmt.Sprintf("no answer within %s", timeout)}
	}
	res.Name, res.Condition = c.Name(), c.Condition()
	return res
}

// SaveState persists results and stateful checks' memory.
func (r *Runner) save() error {
	if r.StateFile == "" {
		return nil
	}
	r.mu.Lock()
	p := persisted{Results: map[string]Result{}, State: map[string]json.RawMessage{}}
	for k, v := range r.last {
		p.Results[k] = v
	}
	r.mu.Unlock()
	for _, c := range r.Checks {
		if s, ok := c.(Stateful); ok {
			if b, err := s.SaveState(); err == nil {
				p.State[c.Name()] = b
			}
		}
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.StateFile), 0o700); err != nil {
		return fmt.Errorf("health: state dir: %w", err)
	}
	// Write then rename: a crash mid-write must not leave a torn file.
	tmp := r.StateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("health: write state: %w", err)
	}
	if err := os.Rename(tmp, r.StateFile); err != nil {
		return fmt.Errorf("health: write state: %w", err)
	}
	return nil
}

// ConditionVerdict is the summary of one NodeCondition's checks.
type ConditionVerdict struct {
	Type    string
	State   State // worst of its checks (unknown ignored)
	Reason  string
	Message string
	// Since is when the worst state began (the earliest Since among the
	// checks in that state).
	Since  time.Time
	Checks []Result
}

// Summarize groups results by condition. Conditions whose checks are all
// not applicable or unknown are left out: nothing is known, nothing is set.
func Summarize(results []Result) []ConditionVerdict {
	by := map[string][]Result{}
	for _, r := range results {
		if r.Condition == "" || r.NotApplicable || r.State == StateUnknown {
			continue
		}
		by[r.Condition] = append(by[r.Condition], r)
	}
	var out []ConditionVerdict
	for _, ct := range Conditions {
		rs := by[ct]
		if len(rs) == 0 {
			continue
		}
		v := ConditionVerdict{Type: ct, State: StateOK, Checks: rs}
		for _, r := range rs {
			if r.State.Worse(v.State) {
				v.State = r.State
			}
		}
		var msgs []string
		for _, r := range rs {
			if r.State != v.State {
				continue
			}
			if v.Reason == "" {
				v.Reason = r.Reason
			}
			if v.Since.IsZero() || r.Since.Before(v.Since) {
				v.Since = r.Since
			}
			if r.Message != "" && v.State != StateOK {
				msgs = append(msgs, r.Name+": "+r.Message)
			}
		}
		slices.Sort(msgs)
		if len(msgs) > 0 {
			v.Message = joinTrunc(msgs, "; ", 1024)
		}
		if v.State == StateOK {
			v.Reason = ct[:len(ct)-len("Ready")] + "IsReady"
		}
		out = append(out, v)
	}
	return out
}

// Overall is the worst state among results.
func Overall(results []Result) State {
	s := StateOK
	for _, r := range results {
		if !r.NotApplicable && r.State.Worse(s) {
			s = r.State
		}
	}
	return s
}

func joinTrunc(xs []string, sep string, n int) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += sep
		}
		out += x
	}
	if len(out) > n {
		out = out[:n-3] + "..."
	}
	return out
}

func ok(reason, msg string) Result { return Result{State: StateOK, Reason: reason, Message: msg} }
func degraded(reason, msg string) Result {
	return Result{State: StateDegraded, Reason: reason, Message: msg}
}
func failed(reason, msg string) Result {
	return Result{State: StateFailed, Reason: reason, Message: msg}
}
func unknown(reason, msg string) Result {
	return Result{State: StateUnknown, Reason: reason, Message: msg}
}
