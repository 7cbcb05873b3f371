package imds

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/internal/freeport"
)

// aemm starts amazon-ec2-metadata-mock (bin/ec2-metadata-mock, installed
// by `make tools`) on loopback with IMDSv2 required, and returns its URL.
func aemm(t *testing.T, args ...string) string {
	t.Helper()
	bin := findBin(t, "ec2-metadata-mock")
	port := freeport.Port(t)
	// -n 127.0.0.1 always: never listen beyond loopback.
	full := append([]string{"-n", "127.0.0.1", "-p", strconv.Itoa(port), "-I"}, args...)
	cmd := exec.Command(bin, full...)
	cmd.Dir = t.TempDir() // it may write config files
	cmd.Env = append(os.Environ(), "HOME="+cmd.Dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start AEMM: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Post(url+"/latest/api/token", "", nil) // any answer means it listens
		if err == nil {
			_ = resp.Body.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("AEMM did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func findBin(t *testing.T, name string) string {
	t.Helper()
	if dir := os.Getenv("DOVETAIL_BIN"); dir != "" {
		if p := filepath.Join(dir, name); exists(p) {
			return p
		}
	}
	dir, _ := os.Getwd()
	for {
		if exists(filepath.Join(dir, "go.mod")) && exists(filepath.Join(dir, "bin", name)) {
			return filepath.Join(dir, "bin", name)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	msg := name + " not found in bin/: run `make tools` (or GOBIN=$PWD/bin go install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestAEMMSpotRebalanceAndScheduled(t *testing.T) {
	url := aemm(t, "-d", "1", "--rebalance-delay-sec", "1")
	w := newWatcher(t, url)
	id, err := w.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if id.InstanceID == "" || id.AvailabilityZone == "" || id.Hostname == "" {
		t.Fatalf("identity %+v", id)
	}
	out := run(t, w)
	got := map[Kind]Notice{}
	for len(got) < 3 {
		n := next(t, out)
		got[n.Kind] = n
	}
	if s := got[KindSpotInterruption]; s.Action != "terminate" || s.Time.IsZero() {
		t.Fatalf("spot %+v", s)
	}
	if m := got[KindMaintenance]; m.EventID == "" || m.Action == "" || m.Cancelled || m.Time.IsZero() {
		t.Fatalf("maintenance %+v", m)
	}
	if r := got[KindRebalance]; r.Time.IsZero() {
		t.Fatalf("rebalance %+v", r)
	}
}

func TestAEMMCancelledEvent(t *testing.T) {
	url := aemm(t, "events", "--state", "canceled", "--code", "instance-stop")
	out := run(t, newWatcher(t, url))
	n := next(t, out)
	if n.Kind != KindMaintenance || !n.Cancelled || n.Action != "instance-stop" {
		t.Fatalf("%+v", n)
	}
}

func TestAEMMSpotStopAction(t *testing.T) {
	url := aemm(t, "spot", "--action", "hibernate")
	out := run(t, newWatcher(t, url))
	n := next(t, out)
	if n.Kind == KindRebalance { // AEMM's spot mode also shows a rebalance recommendation
		n = next(t, out)
	}
	if n.Kind != KindSpotInterruption || n.Action != "hibernate" {
		t.Fatalf("%+v", n)
	}
}
