package systemd

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// notifySocket listens where NOTIFY_SOCKET points and returns received datagrams.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no sd_notify message")
		return ""
	}
}

func TestNotifyReadyStatusStopping(t *testing.T) {
	ch := notifySocket(t)
	n := NewNotifier(slog.New(slog.DiscardHandler))
	if err := n.Ready("watching IMDS"); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, ch); m != "READY=1\nSTATUS=watching IMDS" {
		t.Fatalf("%q", m)
	}
	if err := n.Stopping("leaving gossip"); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, ch); !strings.HasPrefix(m, "STOPPING=1") {
		t.Fatalf("%q", m)
	}
}

func TestWatchdogPingsOnlyWhileAlive(t *testing.T) {
	ch := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100 ms
	t.Setenv("WATCHDOG_PID", "")
	n := NewNotifier(slog.New(slog.DiscardHandler))
	if n.WatchdogInterval() != 100*time.Millisecond {
		t.Fatalf("interval %v", n.WatchdogInterval())
	}
	alive := make(chan bool, 1)
	alive <- true
	isAlive := func() bool { v := <-alive; alive <- v; return v }
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go n.RunWatchdog(ctx, isAlive)
	if m := recv(t, ch); m != "WATCHDOG=1" {
		t.Fatalf("%q", m)
	}
	<-alive
	alive <- false
	// Drain what was in flight, then expect silence.
	time.Sleep(120 * time.Millisecond)
	for len(ch) > 0 {
		<-ch
	}
	select {
	case m := <-ch:
		t.Fatalf("pinged while unresponsive: %q", m)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestNoSocketIsANoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n := NewNotifier(nil)
	if err := n.Ready("x"); err != nil {
		t.Fatal(err)
	}
	n.RunWatchdog(t.Context(), nil) // returns at once without a watchdog
}

func TestJournalHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewJournalHandler(&buf, slog.LevelDebug)).With("component", "imds")
	log.Error("poll failed", "err", "boom")
	log.WithGroup("g").Debug("detail", "k", 1)
	log.Info("hello")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`<3>msg="poll failed" component=imds err=boom`,
		`<7>msg=detail component=imds g.k=1`,
		`<6>msg=hello component=imds`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%q", lines)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, lines[i], want[i])
		}
	}
}

// TestUnitVerifies runs verify.sh (systemd-analyze verify + security).
func TestUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") != "true" {
			t.Skip("systemd-analyze not installed (verify.sh installs it with apt-get; CI runs it)")
		}
	}
	out, err := exec.Command("bash", "verify.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("verify.sh: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func TestNewLoggerFormats(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	for _, f := range []string{"auto", "journal", "text", "json"} {
		if _, err := NewLogger("debug", f, io.Discard); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := NewLogger("loud", "text", io.Discard); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := NewLogger("info", "xml", io.Discard); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("bad format: %v", err)
	}
}
