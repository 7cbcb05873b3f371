package controlplane

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

// StartForTest starts a control plane for one test and stops it in
// t.Cleanup. Without binaries the test is skipped with a message naming
// `make tools`, except in CI (env CI=true) where that is a failure: CI must
// have built them. Under -short it always skips.
func StartForTest(t testing.TB) *ControlPlane {
	t.Helper()
	return StartForTestWith(t, Options{})
}

// StartForTestWith is StartForTest with options (Log defaults to the
// test's output).
func StartForTestWith(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	skipWithoutBinaries(t)
	if opts.Log == nil {
		opts.Log = t.Output()
	}
	cp, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(cp.Stop)
	return cp
}

func skipWithoutBinaries(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: needs the local control plane (-short)")
	}
	binDir := os.Getenv("DOVETAIL_BIN")
	if binDir == "" {
		repo, err := repoRoot()
		if err != nil {
			t.Fatalf("control plane: %v", err)
		}
		binDir = repo + "/bin"
	}
	if err := BinariesPresent(binDir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: integration tests must not be skipped)", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// Starting a control plane takes 10-20 s, so the tests of one package share
// one: Shared starts it on first use, RunTests stops it after the last test.
var shared struct {
	sync.Mutex
	cp  *ControlPlane
	err error
}

// Shared returns the package's shared control plane, starting it on first
// use. Skips or fails like StartForTest. Call RunTests from TestMain so it
// is stopped:
//
//	func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }
//
// Tests sharing it must not assume an empty cluster: use their own
// namespaces and names.
func Shared(t testing.TB) *ControlPlane {
	t.Helper()
	skipWithoutBinaries(t)
	shared.Lock()
	defer shared.Unlock()
	if shared.cp == nil && shared.err == nil {
		// Progress goes to stderr, not to t: the control plane outlives t.
		shared.cp, shared.err = Start(context.Background(), Options{Log: os.Stderr})
	}
	if shared.err != nil {
		t.Fatalf("start shared control plane: %v", shared.err)
	}
	if err := shared.cp.Err(); err != nil {
		t.Fatalf("shared control plane died: %v", err)
	}
	return shared.cp
}

// RunTests runs the tests and then stops the shared control plane, if one
// was started. Use it as os.Exit(controlplane.RunTests(m)) in TestMain.
func RunTests(m *testing.M) int {
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.cp != nil {
		if code != 0 {
			// Keep the component logs: they usually hold the reason.
			shared.cp.removeDir = false
			fmt.Fprintf(os.Stderr, "control plane logs kept in %s/logs\n", shared.cp.Dir)
		}
		shared.cp.Stop()
		shared.cp = nil
	}
	return code
}
