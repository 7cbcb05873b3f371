package systemdtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/health"
	"github.com/dovetail-dev/dovetail/internal/freeport"
)

const agentUnit = "dovetail-agent.service"

var (
	standinOnce sync.Once
	standin     string
	standinErr  error
)

// kubeletStandin builds testdata/kubelet-standin for the node.
func kubeletStandin(t testing.TB) string {
	t.Helper()
	standinOnce.Do(func() {
		standin = filepath.Join(scratch, "kubelet-standin")
		cmd := exec.Command("go", "build", "-o", standin, "./testdata/kubelet-standin")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			standinErr = fmt.Errorf("build kubelet-standin: %w: %s", err, out)
		}
	})
	if standinErr != nil {
		t.Fatal(standinErr)
	}
	return standin
}

// installKubelet puts the stand-in in the node as kubelet.service on a
// free port and returns its healthz URL.
func (n *node) installKubelet(t testing.TB) string {
	t.Helper()
	bin := kubeletStandin(t)
	if out, err := exec.Command("docker", "cp", bin, n.id+":/usr/local/bin/kubelet-standin").CombinedOutput(); err != nil {
		t.Fatalf("docker cp: %v: %s", err, out)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freeport.Port(t))
	n.write("/etc/systemd/system/kubelet.service", fmt.Sprintf(`[Unit]
Description=kubelet stand-in (serves /healthz; fails while /etc/kubelet-standin/fail exists)
[Service]
ExecStart=/usr/local/bin/kubelet-standin --listen %s
[Install]
WantedBy=multi-user.target
`, addr), 0o644)
	n.must("systemctl", "daemon-reload")
	n.must("systemctl", "enable", "--now", "kubelet.service")
	return "http://" + addr + "/healthz"
}

// kwokNode registers the instance's Node the way kubelet would (kwok plays
// kubelet's API side: Ready, pods running).
func (c *cluster) kwokNode(t testing.TB, info ec2sim.InstanceInfo) string {
	t.Helper()
	q := resource.MustParse
	name := info.PrivateDNS
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{controlplane.KwokNodeAnnotation: controlplane.KwokNodeValue},
			Labels: map[string]string{corev1.LabelHostname: name}},
		Spec: corev1.NodeSpec{ProviderID: info.ProviderID},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{"cpu": q("2"), "memory": q("8Gi"), "pods": q("110")},
			Capacity: corev1.ResourceList{"cpu": q("2"), "memory": q("8Gi"), "pods": q("110")}},
	}
	if _, err := c.kc.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Not t.Context(): it is already cancelled when cleanups run.
	t.Cleanup(func() { _ = c.kc.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}

// TestAgentUnderSystemd: one node, the agent from its .deb, in order:
// Type=notify readiness, structured journal fields, state kept across
// `systemctl restart`, the running unit's security score, the watchdog.
func TestAgentUnderSystemd(t *testing.T) {
	n := startNode(t)
	c := newCluster(t, false)
	info := c.launch(t, "spot")
	healthz := n.installKubelet(t)
	listen := freeport.Port(t)
	n.configure(c, info.PrivateDNS, c.agentEnv(t, info, listen, map[string]string{
		"DOVETAIL_AGENT_KUBELET_HEALTHZ": healthz,
		"DOVETAIL_AGENT_HEALTH_INTERVAL": "2s",
	}))
	var nodeName string
	parent := t

	t.Run("ready only after READY=1", func(t *testing.T) {
		n := n.with(t)
		// No Node yet: the agent runs but cannot resolve it, so it has not
		// sent READY=1 and systemd keeps the unit activating.
		n.must("systemctl", "start", "--no-block", agentUnit)
		waitFor(t, 20*time.Second, "agent process started", func() bool {
			p := n.show(agentUnit, "MainPID", "ActiveState")
			return p["MainPID"] != "0" && p["ActiveState"] == "activating"
		})
		for range 15 {
			time.Sleep(200 * time.Millisecond)
			if p := n.show(agentUnit, "ActiveState", "SubState"); p["ActiveState"] != "activating" || p["SubState"] != "start" {
				t.Fatalf("without its Node the unit is %s/%s, want activating/start (READY=1 too early?)", p["ActiveState"], p["SubState"])
			}
		}
		created := time.Now()
		nodeName = c.kwokNode(parent, info) // lives as long as the whole test, not this subtest
		took := waitFor(t, 30*time.Second, "unit active after the Node appeared", func() bool {
			return n.show(agentUnit, "ActiveState")["ActiveState"] == "active"
		})
		st := n.show(agentUnit, "StatusText")["StatusText"]
		if want := fmt.Sprintf("watching %s (%s)", nodeName, info.ID); st != want {
			t.Errorf("StatusText %q, want %q", st, want)
		}
		t.Logf("activating → active %v after the Node was created (%v since start)", took.Round(time.Millisecond), time.Since(created).Round(time.Millisecond))
	})
	if nodeName == "" {
		t.FailNow()
	}

	t.Run("structured journal fields", func(t *testing.T) {
		n := n.with(t)
		var found map[string]any
		waitFor(t, 10*time.Second, "the 'agent starting' entry in the journal", func() bool {
			for _, e := range n.journal("-u", agentUnit) {
				if m, _ := e["MESSAGE"].(string); strings.HasPrefix(m, "msg=\"agent starting\"") {
					found = e
					return true
				}
			}
			return false
		})
		want := map[string]string{"COMPONENT": "agent", "NODE": nodeName, "INSTANCE": info.ID, "PROVIDERID": info.ProviderID,
			"PRIORITY": "6", "SYSLOG_IDENTIFIER": "dovetail-agent", "_SYSTEMD_UNIT": agentUnit, "_TRANSPORT": "journal"}
		for k, v := range want {
			if found[k] != v {
				t.Errorf("%s=%v, want %q", k, found[k], v)
			}
		}
		if f, _ := found["CODE_FUNC"].(string); !strings.Contains(f, "agent.(*Agent).Run") {
			t.Errorf("CODE_FUNC=%q", f)
		}
		// journalctl can filter on an attribute.
		if out := n.must("journalctl", "--no-pager", "-o", "cat", "INSTANCE="+info.ID); !strings.Contains(out, "agent starting") {
			t.Errorf("journalctl INSTANCE=%s: %q", info.ID, out)
		}
	})

	t.Run("state kept across systemctl restart", func(t *testing.T) {
		n := n.with(t)
		const dir = "/var/lib/dovetail-agent"
		waitFor(t, 20*time.Second, "node key and health state written", func() bool {
			_, err1 := n.exec("test", "-s", dir+"/node-key.pem")
			_, err2 := n.exec("test", "-s", dir+"/health.json")
			return err1 == nil && err2 == nil
		})
		key := n.must("sha256sum", dir+"/node-key.pem")
		perm := n.must("stat", "-c", "%a %U", dir, dir+"/node-key.pem")
		if perm != "700 root\n600 root" {
			t.Errorf("state permissions %q, want the directory 700 and the key 600", perm)
		}
		before := n.show(agentUnit, "MainPID", "InvocationID")
		start := time.Now()
		n.must("systemctl", "restart", agentUnit) // blocks until READY=1 again
		took := time.Since(start)
		after := n.show(agentUnit, "MainPID", "InvocationID", "ActiveState")
		if after["ActiveState"] != "active" || after["MainPID"] == before["MainPID"] || after["InvocationID"] == before["InvocationID"] {
			t.Fatalf("restart: before %v after %v", before, after)
		}
		if k := n.must("sha256sum", dir+"/node-key.pem"); k != key {
			t.Errorf("node key changed across a restart: %s → %s", key, k)
		}
		// The restarted agent read its saved health state rather than starting blank.
		inv := after["InvocationID"]
		ents := n.journal("-u", agentUnit, "_SYSTEMD_INVOCATION_ID="+inv)
		for _, e := range ents {
			if m, _ := e["MESSAGE"].(string); strings.Contains(m, "health state") && e["PRIORITY"] == "4" {
				t.Errorf("restarted agent could not load its state: %s", m)
			}
		}
		t.Logf("systemctl restart (stop, start, READY=1): %v", took.Round(time.Millisecond))
	})

	t.Run("security of the running unit", func(t *testing.T) {
		n := n.with(t)
		out, _ := n.exec("systemd-analyze", "security", "--no-pager", agentUnit)
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no score in:\n%s", out)
		}
		score, _ := strconv.ParseFloat(m[1], 64)
		if score > 3.0 {
			t.Errorf("running unit's exposure %.1f %s, above 3.0 (the limit systemd/verify.sh holds the file to):\n%s", score, m[2], out)
		}
		t.Logf("systemd-analyze security %s (running): %s %s", agentUnit, m[1], m[2])
		// What the score rests on is in force, not only written down.
		pid := n.show(agentUnit, "MainPID")["MainPID"]
		status := n.must("cat", "/proc/"+pid+"/status")
		for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2", "CapBnd:\t0000000400000000"} {
			if !strings.Contains(status, want) {
				t.Errorf("agent's /proc/%s/status lacks %q", pid, want)
			}
		}
		if out, err := n.exec("nsenter", "-t", pid, "-m", "touch", "/usr/dovetail-write-test"); err == nil || !strings.Contains(out, "Read-only") {
			t.Errorf("ProtectSystem=strict not in force: touch /usr in the agent's mount namespace: %v %s", err, out)
		}
	})

	t.Run("kernel log readable", func(t *testing.T) {
		// /dev/kmsg through DeviceAllow= and CAP_SYSLOG (this kernel has
		// dmesg_restrict=1), and the journal beside it: the agent's own
		// /status says what its kernel-log check read.
		var res health.Result
		waitFor(t, 20*time.Second, "kernel-log result in /status", func() bool {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", listen))
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var st struct {
				Health []health.Result `json:"health"`
			}
			if json.NewDecoder(resp.Body).Decode(&st) != nil {
				return false
			}
			for _, r := range st.Health {
				if r.Name == "kernel-log" {
					res = r
					return true
				}
			}
			return false
		})
		// A finding (this host's kernel may have logged an OOM kill) also
		// proves /dev/kmsg was read: this node's journald has no kernel messages.
		finding := res.Reason != "NoKernelProblems" && res.Reason != "KernelLogUnreadable"
		if !finding && res.Message != "read /dev/kmsg and the journal (_TRANSPORT=kernel)" {
			t.Errorf("kernel-log %s %s: %q", res.State, res.Reason, res.Message)
		}
		t.Logf("kernel-log check: %s %s %q", res.State, res.Reason, res.Message)
	})

	t.Run("watchdog restarts a hung agent", func(t *testing.T) {
		n := n.with(t)
		// The shipped WatchdogSec=30s, shortened for the test.
		n.write("/run/systemd/system/dovetail-agent.service.d/watchdog.conf", "[Service]\nWatchdogSec=4s\n", 0o644)
		n.must("systemctl", "daemon-reload")
		n.must("systemctl", "restart", agentUnit)
		before := n.show(agentUnit, "MainPID", "NRestarts")
		time.Sleep(5 * time.Second) // alive: pings keep it running past WatchdogSec
		if p := n.show(agentUnit, "MainPID", "NRestarts"); p["MainPID"] != before["MainPID"] {
			t.Fatalf("a healthy agent was restarted: %v → %v", before, p)
		}
		stopped := time.Now()
		n.must("sh", "-c", "kill -STOP "+before["MainPID"]) // procps (/bin/kill) is not in the image
		var after map[string]string
		took := waitFor(t, 60*time.Second, "systemd restarted the stopped agent", func() bool {
			after = n.show(agentUnit, "MainPID", "NRestarts", "ActiveState")
			return after["ActiveState"] == "active" && after["MainPID"] != before["MainPID"] && after["MainPID"] != "0"
		})
		nb, _ := strconv.Atoi(before["NRestarts"])
		na, _ := strconv.Atoi(after["NRestarts"])
		if na != nb+1 {
			t.Errorf("NRestarts %d → %d, want one more", nb, na)
		}
		if out := n.must("journalctl", "--no-pager", "-o", "cat", "-u", agentUnit, "--since", stopped.Add(-time.Second).UTC().Format("2006-01-02 15:04:05")); !strings.Contains(out, "Watchdog timeout") {
			t.Errorf("no watchdog timeout in the journal:\n%s", out)
		}
		t.Logf("SIGSTOP → active again: %v (WatchdogSec=4s, TimeoutAbortSec, RestartSec=2s)", took.Round(time.Millisecond))
	})
}
