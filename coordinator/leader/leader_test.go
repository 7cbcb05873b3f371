package leader

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeRaft struct {
	notify  chan bool
	leading atomic.Bool
	term    atomic.Uint64
	barrier func() error
}

func (f *fakeRaft) LeaderNotify() <-chan bool { return f.notify }
func (f *fakeRaft) Barrier(context.Context) error {
	if f.barrier != nil {
		return f.barrier()
	}
	return nil
}
func (f *fakeRaft) Term() uint64   { return f.term.Load() }
func (f *fakeRaft) IsLeader() bool { return f.leading.Load() }

func (f *fakeRaft) elect(term uint64) {
	f.term.Store(term)
	f.leading.Store(true)
	f.notify <- true
}

func (f *fakeRaft) depose() {
	f.leading.Store(false)
	f.notify <- false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWorkRunsOnlyWhileLeading(t *testing.T) {
	fr := &fakeRaft{notify: make(chan bool, 4)}
	var running atomic.Int32
	var terms sync.Map
	var elected []uint64
	var mu sync.Mutex
	l := &Loop{
		Raft: fr, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), CheckInterval: 10 * time.Millisecond,
		OnElected: func(_ context.Context, term uint64) error {
			mu.Lock()
			elected = append(elected, term)
			mu.Unlock()
			return nil
		},
		Components: []Named{{Name: "w", Component: Func(func(ctx context.Context, term uint64) error {
			running.Add(1)
			terms.Store(term, true)
			<-ctx.Done()
			running.Add(-1)
			return nil
		})}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	sub := l.Subscribe()

	fr.elect(5)
	waitFor(t, "work to start", func() bool { return running.Load() == 1 })
	if got := <-sub; got != 5 {
		t.Fatalf("acting in term %d", got)
	}
	fr.depose()
	waitFor(t, "work to stop", func() bool { return running.Load() == 0 })
	if term, _ := l.Acting(); term != 0 {
		t.Fatalf("still acting in term %d after losing leadership", term)
	}
	// Re-elected in a new term without a false in between (notification
	// lost): the periodic check restarts the work under the new term.
	fr.elect(7)
	waitFor(t, "work in term 7", func() bool { _, ok := terms.Load(uint64(7)); return ok })
	fr.term.Store(9)
	waitFor(t, "work in term 9", func() bool { _, ok := terms.Load(uint64(9)); return ok && running.Load() == 1 })
	cancel()
	<-done
	if running.Load() != 0 {
		t.Fatal("work still running after shutdown")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(elected) != 3 || elected[0] != 5 || elected[1] != 7 || elected[2] != 9 {
		t.Fatalf("elected hooks = %v", elected)
	}
}

func TestFailingBarrierStartsNoWorkAndComponentsRestart(t *testing.T) {
	fr := &fakeRaft{notify: make(chan bool, 4)}
	var barrierOK atomic.Bool
	fr.barrier = func() error {
		if !barrierOK.Load() {
			return errors.New("no quorum")
		}
		return nil
	}
	var starts atomic.Int32
	l := &Loop{
		Raft: fr, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), CheckInterval: 10 * time.Millisecond,
		Components: []Named{{Name: "flaky", Component: Func(func(ctx context.Context, term uint64) error {
			if starts.Add(1) < 3 {
				return errors.New("boom")
			}
			<-ctx.Done()
			return nil
		})}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = l.Run(ctx) }()
	fr.elect(2)
	time.Sleep(100 * time.Millisecond)
	if starts.Load() != 0 {
		t.Fatal("work started before the barrier passed")
	}
	barrierOK.Store(true)
	waitFor(t, "component restarted after failures", func() bool { return starts.Load() == 3 })
}
