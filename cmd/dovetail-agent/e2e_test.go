package main

// The real binary under a stand-in for systemd: NOTIFY_SOCKET and
// WATCHDOG_USEC set, a control plane, AEMM as IMDS. It must say READY=1,
// ping the watchdog, serve /healthz and /metrics, write NodeConditions,
// and say STOPPING=1 on SIGTERM.

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/internal/freeport"
)

func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }

func TestBinaryUnderSystemdContract(t *testing.T) {
	cp := controlplane.Shared(t)
	root, _ := controlplane.RepoRoot()
	aemmBin := filepath.Join(root, "bin", "ec2-metadata-mock")
	if _, err := os.Stat(aemmBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bin/ec2-metadata-mock missing")
		}
		t.Skip("bin/ec2-metadata-mock missing: run `make tools`")
	}
	kc, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	const node = "ip-172-16-34-43.ec2.internal" // AEMM's local-hostname
	if _, err := kc.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-1234567890abcdef0"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = kc.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) }()

	dir := t.TempDir()
	// AEMM with only a rebalance notice: nothing to drain.
	aemmPort := freeport.Port(t)
	aemm := exec.Command(aemmBin, "-n", "127.0.0.1", "-p", strconv.Itoa(aemmPort), "-I", "--rebalance-delay-sec", "0", "events", "--state", "completed")
	aemm.Dir, aemm.Env = dir, append(os.Environ(), "HOME="+dir)
	if err := aemm.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = aemm.Process.Kill(); _ = aemm.Wait() }()

	bin := filepath.Join(dir, "dovetail-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	listen := "127.0.0.1:" + strconv.Itoa(freeport.Port(t))
	healthRoot := filepath.Join(dir, "root") // an empty machine: checks report what they cannot see
	_ = os.MkdirAll(healthRoot, 0o755)
	agent := exec.Command(bin)
	agent.Env = append(os.Environ(),
		"NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000", "JOURNAL_STREAM=8:1234",
		"DOVETAIL_AGENT_KUBECONFIG="+cp.Kubeconfig,
		"DOVETAIL_AGENT_IMDS_ENDPOINT=http://127.0.0.1:"+strconv.Itoa(aemmPort),
		"DOVETAIL_AGENT_STATE_DIR="+filepath.Join(dir, "state"),
		"DOVETAIL_AGENT_HEALTH_ROOT="+healthRoot,
		"DOVETAIL_AGENT_KUBELET_HEALTHZ=http://127.0.0.1:1/healthz",
		"DOVETAIL_AGENT_DISABLE_REPAIR=true",
		"DOVETAIL_AGENT_HEALTH_INTERVAL=300ms",
		"DOVETAIL_AGENT_LISTEN="+listen,
		"DOVETAIL_AGENT_COORDINATORS=127.0.0.1:1",
		"DOVETAIL_AGENT_INSECURE_COORDINATORS=true",
	)
	stderr, _ := agent.StderrPipe()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	var logLines []string
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logLines = append(logLines, sc.Text())
		}
	}()
	defer func() { _ = agent.Process.Kill() }()

	want := func(prefix string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.HasPrefix(m, prefix) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q from the agent", prefix)
			}
		}
	}
	want("READY=1")
	want("WATCHDOG=1")

	resp, err := http.Get("http://" + listen + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("/healthz %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), "dovetail_agent_imds_request_seconds") {
		t.Fatal("/metrics lacks the agent's metrics")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := kc.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
		if err == nil && hasCondition(n, "ContainerRuntimeReady", corev1.ConditionFalse) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ContainerRuntimeReady=False on the node (kubelet is absent): %+v", n.Status.Conditions)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	want("STOPPING=1")
	if err := agent.Wait(); err != nil {
		t.Fatalf("agent exit: %v", err)
	}
	<-logDone
	journal := false
	for _, l := range logLines {
		if strings.HasPrefix(l, "<6>") || strings.HasPrefix(l, "<4>") {
			journal = true
		}
	}
	if !journal {
		t.Fatalf("logs not journald-formatted under JOURNAL_STREAM: %q", logLines)
	}
}

func hasCondition(n *corev1.Node, typ string, status corev1.ConditionStatus) bool {
	for _, c := range n.Status.Conditions {
		if string(c.Type) == typ && c.Status == status {
			return true
		}
	}
	return false
}
