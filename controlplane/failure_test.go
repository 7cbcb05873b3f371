package controlplane

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A component that fails at start makes Start fail with the component's
// name and the end of its log, and leaves nothing running.
func TestStartReportsFailingComponent(t *testing.T) {
	bin := t.TempDir()
	for _, b := range Binaries {
		script := "#!/bin/sh\nsleep 300\n"
		if b == "etcd" {
			script = "#!/bin/sh\necho 'etcd: cannot open data dir: disk on fire' >&2\nexit 7\n"
		}
		if err := os.WriteFile(filepath.Join(bin, b), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(bin, "kwok-stages"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "kwok-stages", "s.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	crds := t.TempDir()
	_, err := Start(context.Background(), Options{BinDir: bin, CRDDir: crds, StartTimeout: time.Minute})
	if err == nil {
		t.Fatal("Start succeeded with a broken etcd")
	}
	for _, want := range []string{"etcd", "exit status 7", "disk on fire", "last lines of"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// Children die with their parent even when it is SIGKILLed and cannot run
// Stop (Pdeathsig). The parent here is this test binary re-executed.
func TestChildDiesWithParent(t *testing.T) {
	if os.Getenv("CONTROLPLANE_TEST_HELPER") == "1" {
		p, err := startProcess("sleeper", "/bin/sleep", []string{"300"}, nil, filepath.Join(os.TempDir(), "cp-helper-sleeper.log"))
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString(strconv.Itoa(p.cmd.Process.Pid) + "\n")
		select {} // until killed
	}
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux-only")
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithParent$")
	helper.Env = append(os.Environ(), "CONTROLPLANE_TEST_HELPER=1")
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = helper.Process.Kill()
		t.Fatalf("helper printed no pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper pid %q: %v", line, err)
	}
	if !running(pid) {
		t.Fatal("child not running before the parent dies")
	}
	_ = helper.Process.Signal(syscall.SIGKILL)
	_ = helper.Wait()
	for i := 0; i < 200 && running(pid); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if running(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("child %d outlived its SIGKILLed parent", pid)
	}
}
