package provisioning

import (
	"context"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// waitAsync runs Wait in the background and returns a channel with its result.
func waitAsync(ctx context.Context, b *Batcher) <-chan bool {
	done := make(chan bool, 1)
	go func() { done <- b.Wait(ctx) }()
	return done
}

// settle waits until the batcher goroutine has armed n timers.
func settle(t *testing.T, clk *clocktesting.FakeClock, n int) {
	t.Helper()
	for i := 0; i < 10000; i++ {
		if clk.Waiters() >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("batcher never armed %d timers (has %d)", n, clk.Waiters())
}

func closed(ch <-chan bool) (bool, bool) {
	select {
	case v := <-ch:
		return v, true
	case <-time.After(50 * time.Millisecond):
		return false, false
	}
}

func TestBatcherClosesAfterIdleGap(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	b := NewBatcher(time.Second, 10*time.Second, clk)
	b.Trigger()
	done := waitAsync(context.Background(), b)
	settle(t, clk, 2)
	clk.Step(900 * time.Millisecond)
	if _, ok := closed(done); ok {
		t.Fatal("batch closed before the idle gap")
	}
	clk.Step(200 * time.Millisecond)
	if v, ok := closed(done); !ok || !v {
		t.Fatal("batch did not close after the idle gap")
	}
}

func TestBatcherTriggersExtendUpToMaxWindow(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	b := NewBatcher(time.Second, 3*time.Second, clk)
	b.Trigger()
	done := waitAsync(context.Background(), b)
	settle(t, clk, 2)
	// A trigger every 0.5 s keeps the batch open until the 3 s window ends.
	for i := 0; i < 5; i++ {
		clk.Step(500 * time.Millisecond)
		b.Trigger()
		time.Sleep(5 * time.Millisecond) // let the goroutine re-arm the idle timer
		settle(t, clk, 2)
		if _, ok := closed(done); ok {
			t.Fatalf("batch closed early at step %d", i)
		}
	}
	clk.Step(600 * time.Millisecond) // 3.1 s since start
	if v, ok := closed(done); !ok || !v {
		t.Fatal("batch did not close at the max window")
	}
}

func TestBatcherStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := NewBatcher(0, 0, clocktesting.NewFakeClock(time.Unix(0, 0)))
	done := waitAsync(ctx, b)
	cancel()
	if v, ok := closed(done); !ok || v {
		t.Fatal("Wait did not return false on cancel")
	}
}
