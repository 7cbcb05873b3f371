package leader

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// A failing pass is retried at the next tick; the loop ends only with ctx.
func TestEveryRetriesFailedPassesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- Every(ctx, time.Millisecond, slog.New(slog.DiscardHandler), "test", func(context.Context) error {
			if n.Add(1) >= 3 {
				cancel()
			}
			return errors.New("bad object")
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Every returned %v, want nil once ctx ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not end with its context")
	}
	if n.Load() < 3 {
		t.Fatalf("%d passes, want the failing pass retried", n.Load())
	}
}
