package controlplane

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/dovetail-dev/dovetail/internal/freeport"
)

func TestPKIChainsToCA(t *testing.T) {
	now := time.Now()
	p, err := newPKI(now)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.CA.CertPEM) {
		t.Fatal("CA PEM does not parse")
	}
	serving := parseCert(t, p.Serving.CertPEM)
	for _, host := range []string{"127.0.0.1", "localhost", "kubernetes.default.svc", serviceIP} {
		if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving cert for %s: %v", host, err)
		}
	}
	for name, kp := range p.Clients {
		c := parseCert(t, kp.CertPEM)
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client cert %s: %v", name, err)
		}
		if len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "system:masters" {
			t.Errorf("client %s groups = %v, want system:masters", name, c.Subject.Organization)
		}
	}
	if b, _ := pem.Decode(p.SAKeyPEM); b == nil || b.Type != "EC PRIVATE KEY" {
		t.Errorf("service account key is not an EC PEM key")
	}
	files, err := p.write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(files.SAKey)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("sa.key mode = %v, want 0600", st.Mode().Perm())
	}
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The kubeconfig is written by hand; clientcmd (what kubectl uses) must read it.
func TestKubeconfigReadableByClientcmd(t *testing.T) {
	p, err := newPKI(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := writeKubeconfig(path, "https://127.0.0.1:6443", p.CA.CertPEM, p.Clients["admin"]); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" {
		t.Errorf("host = %q", cfg.Host)
	}
	if string(cfg.CAData) != string(p.CA.CertPEM) || string(cfg.CertData) != string(p.Clients["admin"].CertPEM) {
		t.Error("kubeconfig does not carry the CA and admin cert")
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := freeport.Ports(8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: bad or repeated", ports)
		}
		seen[p] = true
	}
}

func TestBinariesPresentNamesMissingAndMakeTools(t *testing.T) {
	dir := t.TempDir()
	err := BinariesPresent(dir)
	if err == nil {
		t.Fatal("empty dir accepted")
	}
	for _, want := range append([]string{"make tools", "kwok-stages/"}, Binaries...) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	for _, b := range Binaries {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "kwok-stages"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kwok-stages", "pod-ready.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := BinariesPresent(dir); err != nil {
		t.Fatalf("complete dir refused: %v", err)
	}
	// Not executable counts as missing.
	if err := os.Chmod(filepath.Join(dir, "etcd"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := BinariesPresent(dir); err == nil || !strings.Contains(err.Error(), "etcd") {
		t.Fatalf("non-executable etcd accepted: %v", err)
	}
}

func TestRepoRootFindsDovetailModule(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if !isDovetailModule(filepath.Join(root, "go.mod")) {
		t.Fatalf("%s/go.mod is not %s", root, ModulePath)
	}
	if _, err := os.Stat(filepath.Join(root, "controlplane")); err != nil {
		t.Fatalf("repo root %s has no controlplane dir", root)
	}
}

// A component that spawns children must leave nothing behind after stop,
// even when it ignores SIGTERM.
func TestProcessStopKillsGroup(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	// The shell ignores TERM and starts a background sleep; both must die.
	script := `trap '' TERM; sleep 300 & echo $! > ` + pidFile + `; echo started; wait`
	p, err := startProcess("stubborn", sh, []string{"-c", script}, nil, filepath.Join(dir, "stubborn.log"))
	if err != nil {
		t.Fatal(err)
	}
	var childPID int
	for i := 0; i < 200 && childPID == 0; i++ {
		if data, err := os.ReadFile(pidFile); err == nil && len(strings.TrimSpace(string(data))) > 0 {
			childPID, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if childPID == 0 {
		t.Fatal("child never started")
	}
	p.stop(200 * time.Millisecond)
	if done, _ := p.exited(); !done {
		t.Fatal("process not reported exited after stop")
	}
	// The grandchild is reaped by init eventually; it must at least be gone
	// or a zombie, never running.
	for i := 0; i < 100; i++ {
		if !running(childPID) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if running(childPID) {
		t.Fatalf("grandchild %d still running after stop", childPID)
	}
	if !p.stopRequested() {
		t.Error("stop not recorded")
	}
	if log := tailFile(p.logPath, 5); !strings.Contains(log, "started") {
		t.Errorf("log tail %q lacks the child's output", log)
	}
}

func running(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// Field 3 is the state; Z is a zombie awaiting reaping.
	fields := strings.Fields(string(data))
	return len(fields) < 3 || fields[2] != "Z"
}

func TestFailureCarriesLogTail(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess("broken", "/bin/sh", []string{"-c", "echo line-one; echo 'fatal: bad flag' >&2; exit 3"}, nil, filepath.Join(dir, "broken.log"))
	if err != nil {
		t.Fatal(err)
	}
	<-p.done
	done, cause := p.exited()
	if !done || cause == nil {
		t.Fatalf("exited = %v, %v", done, cause)
	}
	msg := p.failure(cause).Error()
	for _, want := range []string{"broken", "exit status 3", "fatal: bad flag", "line-one"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure %q lacks %q", msg, want)
		}
	}
}

func TestTailFileLimitsLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 100 {
		b.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	got := tailFile(path, 3)
	if got != "line 97\nline 98\nline 99" {
		t.Fatalf("tail = %q", got)
	}
	if !strings.Contains(tailFile(filepath.Join(t.TempDir(), "none"), 3), "cannot read log") {
		t.Error("missing file not reported")
	}
}
