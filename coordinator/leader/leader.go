// Package leader runs leader-only work. It listens to Raft's notify channel
// (not the best-effort leader channel), waits for a barrier so the new
// leader's state includes everything its predecessor committed, then runs
// every component under a context that is cancelled the moment leadership is
// lost. Components restart with backoff if they fail while still leading.
//
// A panic in a component (in its Run goroutine, or in a goroutine it started
// with Go or guarded with Recover) never crashes the process: it is
// recovered, logged with its stack, counted in
// dovetail_leader_component_panics_total{component}, reported to OnPanic
// with the object the component was working on (WorkingOn), and the
// component is restarted with the same exponential backoff as a failure.
// Before this, one NodePool whose budget panicked the cron parser crashed
// every leader in turn.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// Component is leader-only work. Run must return promptly when ctx is
// cancelled. term is the Raft term of this leadership, for fencing.
type Component interface {
	Run(ctx context.Context, term uint64) error
}

// Func adapts a function to Component.
type Func func(ctx context.Context, term uint64) error

// Run implements Component.
func (f Func) Run(ctx context.Context, term uint64) error { return f(ctx, term) }

// Named gives a component a name for logs.
type Named struct {
	Name string
	Component
}

// Raft is what the loop needs from the replica.
type Raft interface {
	LeaderNotify() <-chan bool
	Barrier(ctx context.Context) error
	Term() uint64
	IsLeader() bool
}

// Loop runs components while this replica leads.
type Loop struct {
	Raft       Raft
	Components []Named
	// OnElected runs after the barrier and before components start (e.g. to
	// commit the LeaderEpoch); an error abandons this leadership attempt's
	// work until the next notification or check.
	OnElected func(ctx context.Context, term uint64) error
	Log       *slog.Logger
	// CheckInterval is how often leadership is re-checked besides the
	// notify channel (default 200ms).
	CheckInterval time.Duration
	// Clock times restart backoff (default the real clock).
	Clock clock.Clock
	// Registry receives dovetail_leader_component_panics_total (nil: the
	// counter is kept but not exported).
	Registry prometheus.Registerer
	// OnPanic, when set, is told of every recovered component panic after
	// it was logged and counted (e.g. to put a Warning Event on the object
	// that caused it). ctx ends with this leadership. It runs in the
	// component's goroutine before the restart backoff; a panic in it is
	// recovered and logged.
	OnPanic func(ctx context.Context, p *Panic)

	metricsOnce sync.Once
	panics      *prometheus.CounterVec

	mu     sync.Mutex
	acting uint64
	since  time.Time
	subs   []chan uint64
}

// Acting returns the term this replica is acting as leader in (0 if none)
// and when it started acting.
func (l *Loop) Acting() (uint64, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acting, l.since
}

// Subscribe returns a channel that receives the term each time this replica
// starts acting as leader (buffered; slow readers miss events).
func (l *Loop) Subscribe() <-chan uint64 {
	ch := make(chan uint64, 4)
	l.mu.Lock()
	l.subs = append(l.subs, ch)
	l.mu.Unlock()
	return ch
}

func (l *Loop) setActing(term uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acting = term
	l.since = l.Clock.Now()
	if term == 0 {
		return
	}
	for _, ch := range l.subs {
		select {
		case ch <- term:
		default:
		}
	}
}

func (l *Loop) init() {
	l.metricsOnce.Do(func() {
		if l.Log == nil {
			l.Log = slog.Default()
		}
		if l.Clock == nil {
			l.Clock = clock.RealClock{}
		}
		l.panics = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_leader_component_panics_total",
			Help: "Panics recovered in leader components (each restarted the component with backoff).",
		}, []string{"component"})
		if l.Registry != nil {
			if err := l.Registry.Register(l.panics); err != nil {
				var are prometheus.AlreadyRegisteredError
				if errors.As(err, &are) {
					if c, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
						l.panics = c
					}
				} else {
					l.Log.Warn("register leader metrics", "err", err)
				}
			}
		}
		// Each component's count exists from the start at 0: a dashboard
		// reads "no panics", not no data.
		for _, c := range l.Components {
			l.panics.WithLabelValues(c.Name).Add(0)
		}
	})
}

// Run blocks until ctx is done.
func (l *Loop) Run(ctx context.Context) error {
	l.init()
	interval := l.CheckInterval
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var (
		cancel context.CancelFunc
		done   chan struct{}
		term   uint64
	)
	stop := func(reason string) {
		if cancel == nil {
			return
		}
		cancel()
		<-done
		l.Log.Info("leader work stopped", "term", term, "reason", reason)
		cancel, done, term = nil, nil, 0
		l.setActing(0)
	}
	start := func() {
		t := l.Raft.Term()
		var wctx context.Context
		wctx, cancel = context.WithCancel(ctx)
		done = make(chan struct{})
		term = t
		go func(d chan struct{}) {
			defer close(d)
			l.lead(wctx, t)
		}(done)
	}
	defer stop("shutdown")
	// Drain raft's notify channel in its own goroutine: raft blocks on that
	// send, so a component slow to stop must never be able to wedge raft.
	// A notification only triggers an immediate check of state and term.
	kick := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-l.Raft.LeaderNotify():
				if !ok {
					return
				}
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		}
	}()
	check := func() {
		leading := l.Raft.IsLeader()
		switch {
		case cancel != nil && (!leading || l.Raft.Term() != term):
			stop("leadership changed")
			if leading {
				start()
			}
		case cancel == nil && leading:
			start()
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			check()
		case <-tick.C:
			check()
		}
		if done != nil {
			select {
			case <-done: // lead returned on its own (barrier failed): retry on next tick
				cancel()
				cancel, done, term = nil, nil, 0
				l.setActing(0)
			default:
			}
		}
	}
}

// lead runs one leadership's work; it returns only when ctx is cancelled or
// the barrier cannot be passed.
func (l *Loop) lead(ctx context.Context, term uint64) {
	log := l.Log.With("term", term)
	bctx, bcancel := context.WithTimeout(ctx, 30*time.Second)
	err := l.Raft.Barrier(bctx)
	bcancel()
	if err != nil {
		log.Warn("leader barrier failed", "err", err)
		return
	}
	if l.OnElected != nil {
		if err := l.OnElected(ctx, term); err != nil {
			log.Warn("leader election hook failed", "err", err)
			return
		}
	}
	log.Info("acting as leader")
	l.setActing(term)
	var wg sync.WaitGroup
	for _, c := range l.Components {
		wg.Add(1)
		go func(c Named) {
			defer wg.Done()
			l.runWithRestart(ctx, c, term, log)
		}(c)
	}
	wg.Wait()
}

// runWithRestart runs one component for one leadership, restarting it
// with exponential backoff (100 ms doubling to 30 s, reset after a minute of
// healthy running) whenever it fails, returns early or panics.
func (l *Loop) runWithRestart(ctx context.Context, c Named, term uint64, log *slog.Logger) {
	clk := l.Clock
	backoff := 100 * time.Millisecond
	for {
		start := clk.Now()
		p, err := l.runOnce(ctx, c, term)
		switch {
		case p != nil:
			l.reportPanic(ctx, p, log)
		case ctx.Err() != nil:
			return
		case err != nil && !errors.Is(err, context.Canceled):
			log.Error("leader component failed; restarting", "component", c.Name, "err", err)
		default:
			log.Warn("leader component returned early; restarting", "component", c.Name)
		}
		if ctx.Err() != nil {
			return
		}
		if clk.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		t := clk.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		if backoff < 30*time.Second {
			backoff *= 2
		}
	}
}

// runOnce runs the component once under its own context and tracker; a
// panic in Run's goroutine, or in one started with Go, comes back as p.
func (l *Loop) runOnce(ctx context.Context, c Named, term uint64) (p *Panic, err error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := &tracker{cancel: cancel}
	rctx = context.WithValue(rctx, trackerKey{}, t)
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(recorded); !ok { // else a WorkingOn function recorded it
					t.record(r, debug.Stack(), nil)
				}
			}
		}()
		err = c.Run(rctx, term)
	}()
	p, extra := t.result()
	if p != nil {
		p.Component, p.Term = c.Name, term
		if extra > 0 {
			log := l.Log.With("term", term)
			log.Warn("further panics in the same component run", "component", c.Name, "count", extra)
		}
	}
	return p, err
}

func (l *Loop) reportPanic(ctx context.Context, p *Panic, log *slog.Logger) {
	l.panics.WithLabelValues(p.Component).Inc()
	attrs := []any{"component", p.Component, "panic", fmt.Sprint(p.Value), "stack", string(p.Stack)}
	if p.Object != nil {
		attrs = append(attrs, "object", p.Object.String())
	}
	log.Error("leader component panicked; recovered, restarting with backoff", attrs...)
	if l.OnPanic == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic reporter panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	l.OnPanic(ctx, p)
}
