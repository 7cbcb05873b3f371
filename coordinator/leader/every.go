package leader

import (
	"context"
	"log/slog"
	"time"
)

// Every runs pass at once and then every interval until ctx ends: the loop
// of a leader component that reconciles on a timer. A failed pass is logged
// (what) and retried at the next tick; it never ends the loop, so one bad
// object cannot stop the component for the rest of the term.
func Every(ctx context.Context, interval time.Duration, log *slog.Logger, what string, pass func(context.Context) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := pass(ctx); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, what+" pass failed; retrying next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
