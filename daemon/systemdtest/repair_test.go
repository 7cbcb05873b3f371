package systemdtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/internal/freeport"
)

// nodeEvents are the reasons of the Events on a Node.
func (c *cluster) nodeEvents(t testing.TB, node string) []corev1.Event {
	t.Helper()
	evs, err := c.kc.CoreV1().Events("").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + node})
	if err != nil {
		return nil
	}
	return evs.Items
}

func countReason(evs []corev1.Event, reason, contains string) int {
	n := 0
	for _, e := range evs {
		if e.Reason == reason && strings.Contains(e.Message, contains) {
			n += max(int(e.Count), 1)
		}
	}
	return n
}

// startAgent configures and starts the agent on a fresh node with its
// Node registered, and waits for the unit to be active.
func startAgent(t *testing.T, extra map[string]string) (*node, *cluster, string) {
	t.Helper()
	n := startNode(t)
	c := newCluster(t, false)
	info := c.launch(t, "spot")
	env := map[string]string{"DOVETAIL_AGENT_KUBELET_HEALTHZ": n.installKubelet(t)}
	for k, v := range extra {
		env[k] = v
	}
	n.configure(c, info.PrivateDNS, c.agentEnv(t, info, freeport.Port(t), env))
	name := c.kwokNode(t, info)
	n.must("systemctl", "start", agentUnit)
	if st := n.show(agentUnit, "ActiveState")["ActiveState"]; st != "active" {
		t.Fatalf("agent unit %s after start", st)
	}
	return n, c, name
}

// TestSelfRepairOverDBus: the repair ladder against real units through
// systemd's real D-Bus API, and kernel problems read from the journal.
// Thresholds are shortened with the agent's --repair-* flags.
func TestSelfRepairOverDBus(t *testing.T) {
	n, c, name := startAgent(t, map[string]string{
		"DOVETAIL_AGENT_HEALTH_INTERVAL":          "1s",
		"DOVETAIL_AGENT_REPAIR_RESTART_AFTER":     "2s",
		"DOVETAIL_AGENT_REPAIR_MAX_RESTARTS":      "2",
		"DOVETAIL_AGENT_REPAIR_REPLACE_AFTER":     "10s",
		"DOVETAIL_AGENT_KERNEL_JOURNAL_MATCH":     "SYSLOG_IDENTIFIER=kernel-test",
		"DOVETAIL_AGENT_SPOT_FORCE_DELETE_BEFORE": "0",
	})
	agentRestarts := func() int {
		return strings.Count(n.must("journalctl", "--no-pager", "-o", "cat", "-u", agentUnit, "UNIT=kubelet.service"), "msg=\"restarting unit\"")
	}

	t.Run("a stopped unit is restarted over D-Bus", func(t *testing.T) {
		n := n.with(t)
		inv := n.show("kubelet.service", "InvocationID")["InvocationID"]
		n.must("systemctl", "stop", "kubelet.service")
		took := waitFor(t, 30*time.Second, "the agent restarted kubelet.service", func() bool {
			p := n.show("kubelet.service", "ActiveState", "InvocationID")
			return p["ActiveState"] == "active" && p["InvocationID"] != inv
		})
		if got := agentRestarts(); got != 1 {
			t.Errorf("agent logged %d restarts of kubelet.service, want 1", got)
		}
		waitFor(t, 10*time.Second, "SelfRepair event on the Node", func() bool {
			return countReason(c.nodeEvents(t, name), "SelfRepair", "kubelet.service") == 1
		})
		t.Logf("kubelet.service stopped → restarted by the agent over D-Bus: %v (restart-after 2s, health interval 1s)",
			took.Round(time.Millisecond))
	})

	t.Run("a restart that does not help escalates to replace-me", func(t *testing.T) {
		n := n.with(t)
		// healthz 500 until the file goes: restarting kubelet cannot fix it.
		n.must("sh", "-c", "mkdir -p /etc/kubelet-standin && touch /etc/kubelet-standin/fail")
		took := waitFor(t, 40*time.Second, "ReplaceRequested event on the Node", func() bool {
			return countReason(c.nodeEvents(t, name), "ReplaceRequested", "kubelet") >= 1
		})
		// The ladder: one more restart (2 an hour), no reboot (not allowed),
		// then one replace request for the episode.
		if got := agentRestarts(); got != 2 {
			t.Errorf("%d restarts of kubelet.service in all, want 2 (--repair-max-restarts)", got)
		}
		time.Sleep(4 * time.Second)
		if got := agentRestarts(); got != 2 {
			t.Errorf("restarts went on after the limit: %d", got)
		}
		if got := countReason(c.nodeEvents(t, name), "ReplaceRequested", "kubelet"); got != 1 {
			t.Errorf("%d replace requests for one episode, want 1", got)
		}
		cond := c.condition(t, name, "ContainerRuntimeReady")
		if cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != "KubeletUnhealthy" {
			t.Errorf("ContainerRuntimeReady %+v, want False/KubeletUnhealthy", cond)
		}
		t.Logf("failing kubelet → restart → replace-me requested after %v (replace-after 10s)", took.Round(time.Millisecond))
		n.must("rm", "/etc/kubelet-standin/fail")
	})

	t.Run("kernel problems from the journal", func(t *testing.T) {
		n := n.with(t)
		// Before any problem the disks are healthy: the disk check reads the
		// node's mounts, not the agent's sandboxed view (ProtectSystem=strict
		// makes / read-only inside the unit's own mount namespace).
		var before *corev1.NodeCondition
		waitFor(t, 20*time.Second, "StorageReady from the disk check", func() bool {
			before = c.condition(t, name, "StorageReady")
			return before != nil
		})
		if before.Reason == "ReadOnlyFilesystem" || strings.Contains(before.Message, "read-only mount") {
			t.Fatalf("StorageReady %s %s %q: the agent judged the node's disks by its own sandboxed mounts", before.Status, before.Reason, before.Message)
		}
		// journald holds what the kernel logged; here a message under the
		// test's match stands in for the kernel's own (_TRANSPORT=kernel
		// cannot be written from user space, and this node shares the host's kernel).
		msg := "EXT4-fs error (device nvme1n1): ext4_find_entry:1455: inode #2: comm ls: reading directory lblock 0"
		n.must("sh", "-c", fmt.Sprintf("echo %q | systemd-cat -t kernel-test -p err", msg))
		var cond *corev1.NodeCondition
		took := waitFor(t, 20*time.Second, "StorageReady False from the journal", func() bool {
			cond = c.condition(t, name, "StorageReady")
			return cond != nil && cond.Status == corev1.ConditionFalse && strings.Contains(cond.Message, "storage-log: EXT4-fs error")
		})
		t.Logf("StorageReady=%s %s %q", cond.Status, cond.Reason, cond.Message)
		t.Logf("kernel message in the journal → StorageReady=False on the Node: %v", took.Round(time.Millisecond))
	})
}

// TestSpotNoticeDrainsSystemdNode: the simulator gives the node's instance
// its spot notice; the agent under systemd taints, cordons and drains the
// Node on the local control plane.
func TestSpotNoticeDrainsSystemdNode(t *testing.T) {
	_, c, name := startAgent(t, nil)
	ctx := t.Context()
	ns := "systemd-spot"
	if _, err := c.kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.kc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	grace := int64(5)
	const pods = 10
	for i := range pods {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("web-%02d", i)},
			Spec: corev1.PodSpec{NodeName: name, TerminationGracePeriodSeconds: &grace,
				Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/app:1"}}}}
		if _, err := c.kc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "pods running", func() bool {
		l, err := c.kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != pods {
			return false
		}
		for _, p := range l.Items {
			if p.Status.Phase != corev1.PodRunning {
				return false
			}
		}
		return true
	})
	id := ""
	for _, in := range c.sim.Instances() {
		if in.PrivateDNS == name {
			id = in.ID
		}
	}
	noticed := time.Now()
	deadline, err := c.sim.InterruptSpot(id)
	if err != nil {
		t.Fatal(err)
	}
	cordon := waitFor(t, 15*time.Second, "cordoned", func() bool {
		nd, err := c.kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil || !nd.Spec.Unschedulable {
			return false
		}
		// Acting as its node (system:node:<name>), the agent may cordon but
		// NodeRestriction forbids it to change taints: it drains on the cordon.
		return true
	})
	gone := waitFor(t, 60*time.Second, "pods evicted", func() bool {
		l, err := c.kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0
	})
	if time.Now().After(deadline) {
		t.Errorf("drain finished after the deadline %v", deadline)
	}
	t.Logf("spot notice → cordoned %v, → %d pods gone %v (deadline %v after the notice)", cordon.Round(time.Millisecond), pods,
		(cordon + gone).Round(time.Millisecond), deadline.Sub(noticed).Round(time.Second))
}
