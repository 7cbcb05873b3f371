package repair

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/health"
)

type recorder struct {
	restarts []string
	reboots  int
	fail     bool
}

func (r *recorder) RestartUnit(_ context.Context, unit string) error {
	r.restarts = append(r.restarts, unit)
	if r.fail {
		return errors.New("dbus: access denied")
	}
	return nil
}
func (r *recorder) Reboot(context.Context) error { r.reboots++; return nil }

var t0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func failedFor(name, cond string, d time.Duration, now time.Time) health.Result {
	return health.Result{Name: name, Condition: cond, State: health.StateFailed, Reason: "Broken", Since: now.Add(-d)}
}

func step(t *testing.T, r *Repairer, results ...health.Result) []Decision {
	t.Helper()
	ds := r.Plan(results)
	done, err := r.Apply(t.Context(), results, ds)
	if err != nil {
		t.Fatal(err)
	}
	return done
}

func TestRestartThenRebootThenReplace(t *testing.T) {
	sd := &recorder{}
	state := filepath.Join(t.TempDir(), "repair.json")
	now := t0
	newR := func() *Repairer {
		r, err := New(Policy{Units: DefaultUnits, AllowReboot: true}, sd, state, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		r.SetClock(func() time.Time { return now })
		return r
	}
	r := newR()
	since := now.Add(-30 * time.Second)
	res := func() health.Result {
		return health.Result{Name: "kubelet", Condition: health.ContainerRuntimeReady, State: health.StateFailed, Reason: "KubeletNotRunning", Since: since}
	}
	if d := step(t, r, res()); len(d) != 0 {
		t.Fatalf("acted on a 30 s blip: %+v", d)
	}
	// Restarts: at most 3 an hour, a minute apart; the limit survives an agent restart.
	for i := range 3 {
		now = now.Add(time.Minute)
		if i == 2 {
			r = newR()
		}
		d := step(t, r, res())
		if len(d) != 1 || d[0].Action != ActionRestart || d[0].Unit != "kubelet.service" {
			t.Fatalf("round %d: %+v", i, d)
		}
	}
	now = now.Add(time.Minute)
	if d := step(t, r, res()); len(d) != 0 {
		t.Fatalf("a 4th restart within the hour: %+v", d)
	}
	// After 10 min failing: one reboot, never two in a day.
	now = since.Add(10 * time.Minute)
	d := step(t, r, res())
	if len(d) != 1 || d[0].Action != ActionReboot || sd.reboots != 1 {
		t.Fatalf("%+v", d)
	}
	// "After the reboot" (new process, same state file) it still fails:
	// no second reboot within a day, a replacement is asked for once.
	r = newR()
	var asked int
	for range 5 {
		now = now.Add(20 * time.Minute)
		for _, x := range step(t, r, res()) {
			switch x.Action {
			case ActionReplace:
				asked++
			case ActionReboot, ActionRestart:
				t.Fatalf("after the reboot: %+v", x)
			}
		}
	}
	if asked != 1 {
		t.Fatalf("replace-me sent %d times", asked)
	}
	if sd.reboots != 1 {
		t.Fatalf("reboots %d", sd.reboots)
	}
}

func TestNoRebootUnlessAllowed(t *testing.T) {
	sd := &recorder{}
	r, _ := New(Policy{}, sd, "", slog.New(slog.DiscardHandler))
	r.SetClock(func() time.Time { return t0 })
	d := step(t, r, failedFor("kernel-log", health.KernelReady, time.Hour, t0))
	if len(d) != 1 || d[0].Action != ActionReplace || sd.reboots != 0 {
		t.Fatalf("%+v", d)
	}
}

func TestStorageFailuresAreNeverRebooted(t *testing.T) {
	sd := &recorder{}
	r, _ := New(Policy{AllowReboot: true}, sd, "", slog.New(slog.DiscardHandler))
	r.SetClock(func() time.Time { return t0 })
	d := step(t, r, failedFor("disk", health.StorageReady, time.Hour, t0))
	if len(d) != 1 || d[0].Action != ActionReplace || sd.reboots != 0 {
		t.Fatalf("a full disk is not fixed by rebooting: %+v", d)
	}
}

func TestOnlyOneRebootPerRound(t *testing.T) {
	sd := &recorder{}
	r, _ := New(Policy{AllowReboot: true, MaxReboots: 5}, sd, "", slog.New(slog.DiscardHandler))
	r.SetClock(func() time.Time { return t0 })
	step(t, r, failedFor("kernel-log", health.KernelReady, time.Hour, t0), failedFor("gpu", health.AcceleratedHardwareReady, time.Hour, t0))
	if sd.reboots != 1 {
		t.Fatalf("reboots %d", sd.reboots)
	}
}

func TestFailedRestartCountsAndErrors(t *testing.T) {
	sd := &recorder{fail: true}
	r, _ := New(Policy{Units: DefaultUnits}, sd, "", slog.New(slog.DiscardHandler))
	r.SetClock(func() time.Time { return t0 })
	res := failedFor("containerd", health.ContainerRuntimeReady, 2*time.Minute, t0)
	if _, err := r.Apply(t.Context(), []health.Result{res}, r.Plan([]health.Result{res})); err == nil {
		t.Fatal("restart error swallowed")
	}
	if d := r.Plan([]health.Result{res}); len(d) != 0 {
		t.Fatalf("immediate retry after a failed restart: %+v", d)
	}
}

func TestCorruptStateAssumesLimitsUsed(t *testing.T) {
	state := filepath.Join(t.TempDir(), "repair.json")
	if err := os.WriteFile(state, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	sd := &recorder{}
	r, err := New(Policy{AllowReboot: true}, sd, state, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.SetClock(func() time.Time { return time.Now() })
	step(t, r, failedFor("kernel-log", health.KernelReady, time.Hour, time.Now()))
	if sd.reboots != 0 {
		t.Fatal("rebooted with unknown history")
	}
}
