package leader

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dovetail-dev/dovetail/internal/syncbuffer"
)

// A component that panics (in its own goroutine, then in a goroutine it
// started) must not take the process down: each panic is recovered, logged
// with its stack, counted, reported with the object being worked on, and the
// component restarts after 100 ms, then 200 ms of the injected clock. Other
// components keep running untouched. Before panic-proofing, the first panic
// killed the test binary.
func TestComponentPanicsAreRecoveredReportedAndRestartedWithBackoff(t *testing.T) {
	fr := &fakeRaft{notify: make(chan bool, 4)}
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))
	reg := prometheus.NewRegistry()
	var logs syncbuffer.Buffer
	var runs, steady atomic.Int32
	reported := make(chan *Panic, 8)
	l := &Loop{
		Raft: fr, Log: slog.New(slog.NewJSONHandler(&logs, nil)), CheckInterval: 10 * time.Millisecond,
		Clock: clk, Registry: reg,
		OnPanic: func(_ context.Context, p *Panic) { reported <- p },
		Components: []Named{
			{Name: "pools", Component: Func(func(ctx context.Context, term uint64) error {
				switch runs.Add(1) {
				case 1: // in Run's own goroutine, while working on a NodePool
					_, done := WorkingOn(ctx, Object{Kind: "NodePool", Name: "bad-budget"})
					defer done()
					var schedules map[string]int
					//lint:ignore SA5000 a deliberate runtime panic, the test's subject
					schedules["CRON_TZ=UTC\t0"]++ // nil map write: a runtime panic
				case 2: // in a worker goroutine, blamed on its own object
					wctx, done := WorkingOn(ctx, Object{Kind: "NodeClaim", Name: "default-abc12"})
					Go(wctx, func() { panic("index out of range in worker") })
					done()
					<-ctx.Done() // the panic cancels the run
					return nil
				}
				<-ctx.Done()
				return nil
			})},
			{Name: "steady", Component: Func(func(ctx context.Context, term uint64) error {
				steady.Add(1)
				<-ctx.Done()
				return nil
			})},
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	fr.elect(3)

	p1 := <-reported
	if p1.Component != "pools" || p1.Term != 3 || p1.Object == nil || p1.Object.String() != "NodePool/bad-budget" {
		t.Fatalf("first panic = %+v (object %v)", p1, p1.Object)
	}
	if !strings.Contains(string(p1.Stack), "panics_test.go") {
		t.Fatalf("stack does not show the panicking code:\n%s", p1.Stack)
	}
	// Restart waits for the backoff on the injected clock.
	waitFor(t, "backoff timer", clk.HasWaiters)
	clk.Step(99 * time.Millisecond)
	time.Sleep(30 * time.Millisecond)
	if n := runs.Load(); n != 1 {
		t.Fatalf("restarted after 99ms of a 100ms backoff (runs=%d)", n)
	}
	clk.Step(time.Millisecond)
	p2 := <-reported
	if p2.Object == nil || p2.Object.String() != "NodeClaim/default-abc12" || p2.Value != "index out of range in worker" {
		t.Fatalf("second panic = %+v (object %v)", p2, p2.Object)
	}
	waitFor(t, "second backoff timer", clk.HasWaiters)
	clk.Step(199 * time.Millisecond)
	time.Sleep(30 * time.Millisecond)
	if n := runs.Load(); n != 2 {
		t.Fatalf("restarted before the doubled backoff (runs=%d)", n)
	}
	clk.Step(time.Millisecond)
	waitFor(t, "third run", func() bool { return runs.Load() == 3 })

	if got := testutil.ToFloat64(l.panics.WithLabelValues("pools")); got != 2 {
		t.Fatalf("panics counter = %v, want 2", got)
	}
	// One series per component from the start: the steady one's at 0.
	if n, err := testutil.GatherAndCount(reg, "dovetail_leader_component_panics_total"); err != nil || n != 2 {
		t.Fatalf("exported series = %d, %v", n, err)
	}
	if got := testutil.ToFloat64(l.panics.WithLabelValues("steady")); got != 0 {
		t.Fatalf("steady component's panics = %v, want 0", got)
	}
	if steady.Load() != 1 {
		t.Fatalf("a panic in one component restarted another (%d runs)", steady.Load())
	}
	out := logs.String()
	for _, want := range []string{`"msg":"leader component panicked; recovered, restarting with backoff"`, `"object":"NodePool/bad-budget"`, `"stack":"goroutine `, "assignment to entry in nil map"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if term, _ := l.Acting(); term != 3 {
		t.Fatalf("stopped acting as leader after a component panic (term %d)", term)
	}
	cancel()
	<-done
}

// A panicking reporter and a stray Recover outside any component are
// survived as well.
func TestPanicReporterAndStrayRecoverDoNotCrash(t *testing.T) {
	fr := &fakeRaft{notify: make(chan bool, 4)}
	var runs atomic.Int32
	l := &Loop{
		Raft: fr, Log: slog.New(slog.NewTextHandler(&syncbuffer.Buffer{}, nil)), CheckInterval: 10 * time.Millisecond,
		OnPanic: func(context.Context, *Panic) { panic("reporter broke") },
		Components: []Named{{Name: "p", Component: Func(func(ctx context.Context, _ uint64) error {
			if runs.Add(1) == 1 {
				panic("first")
			}
			<-ctx.Done()
			return nil
		})}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = l.Run(ctx) }()
	fr.elect(1)
	waitFor(t, "restart after a panic with a panicking reporter", func() bool { return runs.Load() == 2 })

	fin := make(chan struct{})
	Go(context.Background(), func() { defer close(fin); panic("no component") })
	<-fin
}
