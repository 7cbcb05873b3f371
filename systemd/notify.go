// Package systemd is the agent's glue to systemd: sd_notify readiness,
// watchdog keep-alives and shutdown notice (Type=notify units), a slog
// handler that writes journald-friendly lines, and the hardened unit file
// itself (dovetail-agent.service, checked by verify.sh).
package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier speaks sd_notify. Outside systemd (no NOTIFY_SOCKET) every call
// is a cheap no-op, so the agent runs the same way in a terminal.
type Notifier struct {
	log      *slog.Logger
	watchdog time.Duration // WatchdogSec as systemd set it; zero when off
}

// NewNotifier reads the watchdog interval systemd gave this process.
func NewNotifier(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.Default()
	}
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		// A malformed WATCHDOG_USEC: run without the watchdog rather than die.
		log.Warn("ignoring watchdog settings", "err", err)
		wd = 0
	}
	return &Notifier{log: log.With("component", "systemd"), watchdog: wd}
}

// WatchdogInterval is systemd's WatchdogSec for this unit (zero if none).
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog }

func (n *Notifier) notify(state string) error {
	sent, err := daemon.SdNotify(false, state)
	if err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	if sent {
		n.log.Debug("sd_notify", "state", state)
	}
	return nil
}

// Ready tells systemd start-up finished (Type=notify units stay
// "activating" until then).
func (n *Notifier) Ready(status string) error {
	return n.notify(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Stopping tells systemd the service is shutting down on purpose.
func (n *Notifier) Stopping(status string) error {
	return n.notify(daemon.SdNotifyStopping + "\nSTATUS=" + status)
}

// RunWatchdog pings systemd at half the watchdog interval for as long as
// alive() holds and ctx lasts. When alive() fails, pings stop and systemd
// restarts the service after WatchdogSec: a wedged main loop is fixed by a
// restart, not hidden by a ticker goroutine that is still fine.
func (n *Notifier) RunWatchdog(ctx context.Context, alive func() bool) {
	if n.watchdog <= 0 {
		return
	}
	t := time.NewTicker(n.watchdog / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive != nil && !alive() {
				n.log.Error("main loop unresponsive; withholding watchdog ping so systemd restarts the agent")
				continue
			}
			if err := n.notify(daemon.SdNotifyWatchdog); err != nil {
				n.log.Warn("watchdog ping failed", "err", err)
			}
		}
	}
}
