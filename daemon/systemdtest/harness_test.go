package systemdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/daemon/internal/simtest"
)

// scratch holds what the tests share: the built .deb.
var scratch string

func TestMain(m *testing.M) {
	var err error
	if scratch, err = os.MkdirTemp("", "systemdtest"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := controlplane.RunTests(m)
	_ = os.RemoveAll(scratch)
	os.Exit(code)
}

// skipOrFail skips with msg, or fails when CI=true (CI must run these).
func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: the systemd node tests must not be skipped)", msg)
	}
	t.Skip("skipping: " + msg)
}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

var (
	imageOnce sync.Once
	image     string
	imageErr  error
	imageSkip string

	debOnce sync.Once
	deb     string
	debErr  error
)

// nodeImage is the cached node image (built on first use, ≈2 min).
func nodeImage(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: needs Docker and the node image (-short)")
	}
	imageOnce.Do(func() {
		if _, err := exec.LookPath("docker"); err != nil {
			imageSkip = "docker not installed"
			return
		}
		if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
			imageSkip = fmt.Sprintf("docker daemon not answering: %v: %s", err, bytes.TrimSpace(out))
			return
		}
		cmd := exec.Command("bash", filepath.Join(repoRoot(t), "hack/build-node-image.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ee.ExitCode() == 3:
			imageSkip = strings.TrimSpace(stderr.String())
		case err != nil:
			imageErr = fmt.Errorf("hack/build-node-image.sh: %w\n%s", err, stderr.String())
		default:
			image = strings.TrimSpace(string(out))
		}
	})
	if imageSkip != "" {
		skipOrFail(t, imageSkip)
	}
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return image
}

// agentDeb builds the project's .deb (hack/package.sh) once per run.
func agentDeb(t testing.TB) string {
	t.Helper()
	debOnce.Do(func() {
		dist := filepath.Join(scratch, "dist")
		cmd := exec.Command("bash", "hack/package.sh")
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "DIST="+dist, "PACKAGERS=deb")
		out, err := cmd.CombinedOutput()
		if err != nil {
			debErr = fmt.Errorf("hack/package.sh: %w\n%s", err, out)
			return
		}
		debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
		if len(debs) != 1 {
			debErr = fmt.Errorf("hack/package.sh made %v, want one .deb\n%s", debs, out)
			return
		}
		deb = debs[0]
	})
	if debErr != nil {
		t.Fatal(debErr)
	}
	return deb
}

// node is one running container with systemd as PID 1.
type node struct {
	t  testing.TB
	id string
}

// startNode boots a node container and installs the agent's .deb in it.
//
// --network host: the agent reaches the control plane and the simulator's
// IMDS on the host's 127.0.0.1, as on EC2 it reaches 169.254.169.254.
// CAP_SYS_ADMIN lets systemd set up the unit's mount namespaces (without
// it systemd silently skips ProtectSystem=, PrivateTmp= ... in a
// container, and the hardening would not be tested); CAP_SYSLOG and
// /dev/kmsg (read-only) are what a node's PID 1 has, so the unit's own
// CapabilityBoundingSet=CAP_SYSLOG and DeviceAllow=/dev/kmsg r are what
// decide whether the agent can read the kernel log. Not --privileged.
func startNode(t testing.TB) *node {
	t.Helper()
	img := nodeImage(t)
	pkg := agentDeb(t)
	out, err := exec.Command("docker", "run", "-d", "--network", "host",
		"--cap-add", "SYS_ADMIN", "--cap-add", "SYSLOG", "--device", "/dev/kmsg:/dev/kmsg:r",
		"--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
		"--label", "dovetail-test=systemdtest", img, "/sbin/init").CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, out)
	}
	n := &node{t: t, id: strings.TrimSpace(string(out))[:12]}
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := n.exec("journalctl", "--no-pager", "-n", "3000", "-u", "dovetail-agent")
			t.Logf("agent journal (last 3000 lines):\n%s", log)
		}
		_ = exec.Command("docker", "rm", "-f", n.id).Run()
	})
	// is-system-running --wait blocks until boot finished, once PID 1's
	// bus is up (before that systemctl cannot connect at all).
	var state string
	waitFor(t, 60*time.Second, "systemd answering", func() bool {
		state, _ = n.exec("timeout", "60", "systemctl", "is-system-running", "--wait")
		// "offline": PID 1 has not yet set up /run/systemd/system.
		return !strings.Contains(state, "Failed to connect to bus") && state != "offline"
	})
	if state != "running" {
		failed, _ := n.exec("systemctl", "--failed", "--no-pager")
		t.Fatalf("node %s booted to %q, want running:\n%s", n.id, state, failed)
	}
	if out, err := exec.Command("docker", "cp", pkg, n.id+":/tmp/dovetail-agent.deb").CombinedOutput(); err != nil {
		t.Fatalf("docker cp: %v: %s", err, out)
	}
	n.must("dpkg", "-i", "/tmp/dovetail-agent.deb")
	return n
}

// with is n reporting to t (a subtest must not fail its parent).
func (n *node) with(t testing.TB) *node { c := *n; c.t = t; return &c }

// exec runs a command in the node; stdout+stderr, trimmed.
func (n *node) exec(args ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"exec", n.id}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (n *node) must(args ...string) string {
	n.t.Helper()
	out, err := n.exec(args...)
	if err != nil {
		n.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// write puts content at path in the node.
func (n *node) write(path, content string, mode os.FileMode) {
	n.t.Helper()
	cmd := exec.Command("docker", "exec", "-i", n.id, "sh", "-c",
		fmt.Sprintf("mkdir -p %q && cat >%q && chmod %o %q", filepath.Dir(path), path, mode, path))
	cmd.Stdin = strings.NewReader(content)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("write %s: %v: %s", path, err, out)
	}
}

// show is `systemctl show` of props.
func (n *node) show(unit string, props ...string) map[string]string {
	n.t.Helper()
	out := n.must("systemctl", "show", unit, "-p", strings.Join(props, ","))
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// journal is the unit's journal as JSON entries.
func (n *node) journal(args ...string) []map[string]any {
	n.t.Helper()
	out := n.must(append([]string{"journalctl", "--no-pager", "-o", "json"}, args...)...)
	var ents []map[string]any
	for _, l := range strings.Split(out, "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) == nil {
			ents = append(ents, e)
		}
	}
	return ents
}

func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// cluster is the control plane and an EC2 simulator on the host.
type cluster struct {
	cp  *controlplane.ControlPlane
	kc  kubernetes.Interface
	sim *ec2sim.Sim
}

// newCluster: the shared control plane; the simulator registers kwok
// Nodes for its instances when register is set.
func newCluster(t testing.TB, register bool) *cluster {
	t.Helper()
	cp := controlplane.Shared(t)
	cfg := *cp.RESTConfig
	cfg.QPS, cfg.Burst = 50, 100
	kc, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc := ec2sim.Config{}
	if register {
		sc.RESTConfig = cp.RESTConfig
	}
	sim := ec2sim.New(sc)
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return &cluster{cp: cp, kc: kc, sim: sim}
}

// launch starts an instance the way the coordinator does.
func (c *cluster) launch(t testing.TB, capType string) ec2sim.InstanceInfo {
	t.Helper()
	token := fmt.Sprintf("sd-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
	if len(token) > 60 {
		token = token[len(token)-60:]
	}
	id, err := simtest.Launch(t.Context(), c.sim, token, capType, "m5.large")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := c.sim.Instance(id)
	return info
}

func (c *cluster) condition(t testing.TB, node, typ string) *corev1.NodeCondition {
	t.Helper()
	n, err := c.kc.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	for i := range n.Status.Conditions {
		if string(n.Status.Conditions[i].Type) == typ {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// agentEnv is /etc/dovetail/agent.env for an instance: the host's control
// plane and the instance's IMDS; listen on a free host port (the node
// shares the host's network).
func (c *cluster) agentEnv(t testing.TB, info ec2sim.InstanceInfo, listen int, extra map[string]string) string {
	t.Helper()
	env := map[string]string{
		"DOVETAIL_AGENT_IMDS_ENDPOINT":         c.sim.IMDSEndpoint(info.ID),
		"DOVETAIL_AGENT_INSECURE_COORDINATORS": "true",
		"DOVETAIL_AGENT_LISTEN":                "127.0.0.1:" + strconv.Itoa(listen),
		"DOVETAIL_AGENT_LOG_LEVEL":             "debug",
	}
	for k, v := range extra {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, env[k])
	}
	return b.String()
}

// configure writes the agent's credentials where a node keeps them (the
// kubelet's kubeconfig, system:node:<nodeName>, which the API server
// confines to that Node) and agent.env into the node.
func (n *node) configure(c *cluster, nodeName, env string) {
	n.t.Helper()
	path := filepath.Join(n.t.TempDir(), "kubeconfig")
	if err := c.cp.WriteNodeKubeconfig(nodeName, path); err != nil {
		n.t.Fatal(err)
	}
	kcfg, err := os.ReadFile(path)
	if err != nil {
		n.t.Fatal(err)
	}
	n.write("/var/lib/kubelet/kubeconfig", string(kcfg), 0o600)
	n.write("/etc/dovetail/agent.env", env, 0o640)
}
