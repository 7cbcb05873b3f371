// Package leader runs leader-only work. It listens to Raft's notify channel
// (not the best-effort leader channel), waits for a barrier so the new
// leader's state includes everything its predecessor committed, then runs
// every component under a context that is cancelled the moment leadership is
// lost. Components restart with backoff if they fail while still leading.
package leader

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
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
	l.since = time.Now()
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

// Run blocks until ctx is done.
func (l *Loop) Run(ctx context.Context) error {
	if l.Log == nil {
		l.Log = slog.Default()
	}
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
			runWithRestart(ctx, c, term, log)
		}(c)
	}
	wg.Wait()
}

func runWithRestart(ctx context.Context, c Named, term uint64, log *slog.Logger) {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := c.Run(ctx, term)
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("leader component failed; restarting", "component", c.Name, "err", err)
		} else {
			log.Warn("leader component returned early; restarting", "component", c.Name)
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 30*time.Second {
			backoff *= 2
		}
	}
}
