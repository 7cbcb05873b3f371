package agent

// Integration tests and the interruption benchmark: the agent against a
// real control plane (package controlplane: kube-apiserver, controllers,
// scheduler, kwok) and a real IMDS (AEMM or the EC2 simulator's). They
// skip, with a message, when the binaries from `make tools` are missing
// (and fail in CI).

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/daemon/internal/simtest"
	"github.com/dovetail-dev/dovetail/drain"
	"github.com/dovetail-dev/dovetail/health"
	"github.com/dovetail-dev/dovetail/report"
)

func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }

// okCheck keeps host checks out of integration runs (this machine is no node).
type okCheck struct{}

func (okCheck) Name() string      { return "runtime" }
func (okCheck) Condition() string { return health.ContainerRuntimeReady }
func (okCheck) Run(context.Context) health.Result {
	return health.Result{State: health.StateOK, Reason: "Fine"}
}

func kube(t testing.TB, cp *controlplane.ControlPlane) kubernetes.Interface {
	t.Helper()
	cfg := *cp.RESTConfig
	cfg.QPS, cfg.Burst = 100, 200
	kc, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// kwokNode creates a Node kwok will run pods on.
func kwokNode(t testing.TB, kc kubernetes.Interface, name, providerID string) {
	t.Helper()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{controlplane.KwokNodeAnnotation: controlplane.KwokNodeValue},
			Labels: map[string]string{corev1.LabelHostname: name}},
		Spec: corev1.NodeSpec{ProviderID: providerID},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{"cpu": mustQ("32"), "memory": mustQ("128Gi"), "pods": mustQ("110")},
			Capacity: corev1.ResourceList{"cpu": mustQ("32"), "memory": mustQ("128Gi"), "pods": mustQ("110")}},
	}
	if _, err := kc.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kc.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// podsOnNode creates bare pods bound to node (no scheduler, no controller:
// an evicted pod stays gone) and waits until kwok runs them all.
func podsOnNode(t testing.TB, kc kubernetes.Interface, ns, node string, ordinary, guarded int, critical bool) {
	t.Helper()
	ctx := t.Context()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	grace := int64(5)
	mk := func(ns, name string, labels map[string]string, prio string) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: &grace, PriorityClassName: prio,
				Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/app:1"}}},
		}
		if _, err := kc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod %s: %v", name, err)
		}
	}
	for i := range ordinary {
		mk(ns, fmt.Sprintf("web-%02d", i), map[string]string{"app": "web"}, "")
	}
	for i := range guarded {
		mk(ns, fmt.Sprintf("db-%d", i), map[string]string{"app": "db"}, "")
	}
	if critical {
		mk(ns, "critical-agent", nil, drain.SystemNodeCritical)
	}
	waitUntil(t, 60*time.Second, "pods running", func() bool {
		pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == len(pods.Items) && len(pods.Items) > 0
	})
}

func mustQ(s string) resource.Quantity { return resource.MustParse(s) }

func waitUntil(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened within %s: %s", limit, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func startAgent(t testing.TB, cfg Config) *Agent {
	t.Helper()
	cfg.StateDir = t.TempDir()
	cfg.Checks = []health.Check{okCheck{}}
	cfg.DisableRepair = true
	cfg.BootIDFile = filepath.Join(cfg.StateDir, "boot_id")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

func aemmBinary(t testing.TB) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("DOVETAIL_BIN")
	if dir == "" {
		dir = filepath.Join(root, "bin")
	}
	p := filepath.Join(dir, "ec2-metadata-mock")
	if _, err := os.Stat(p); err != nil {
		msg := "bin/ec2-metadata-mock missing: run `make tools`"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

func startAEMM(t testing.TB, args ...string) string {
	t.Helper()
	bin := aemmBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd := exec.Command(bin, append([]string{"-n", "127.0.0.1", "-p", strconv.Itoa(port), "-I"}, args...)...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+cmd.Dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	waitUntil(t, 15*time.Second, "AEMM listening", func() bool {
		resp, err := http.Post(url+"/latest/api/token", "", nil)
		if err == nil {
			_ = resp.Body.Close()
		}
		return err == nil
	})
	return url
}

// TestIntegrationSpotDrainRespectsPDB: AEMM shows a spot notice 20 s out;
// the agent taints and cordons the node, reports, evicts 27 ordinary pods,
// one of three PDB-guarded pods (minAvailable 2), then the critical pod,
// and reports the two the PDB protects as blocked at the deadline.
func TestIntegrationSpotDrainRespectsPDB(t *testing.T) {
	cp := controlplane.Shared(t)
	kc := kube(t, cp)
	const name, pid = "ip-172-16-34-43.ec2.internal", "aws:///us-east-1a/i-1234567890abcdef0" // AEMM's identity
	kwokNode(t, kc, name, pid)
	podsOnNode(t, kc, "spot-pdb", name, 27, 3, true)
	minAvail := intstr.FromInt32(2)
	if _, err := kc.PolicyV1().PodDisruptionBudgets("spot-pdb").Create(t.Context(), &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &minAvail, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "PDB status computed", func() bool {
		pdb, err := kc.PolicyV1().PodDisruptionBudgets("spot-pdb").Get(t.Context(), "db", metav1.GetOptions{})
		return err == nil && pdb.Status.ObservedGeneration == pdb.Generation && pdb.Status.CurrentHealthy == 3
	})

	coord := &coordinator{}
	srv := httptest.NewServer(coord.handler())
	defer srv.Close()
	deadline := time.Now().Add(20 * time.Second).UTC().Truncate(time.Second)
	url := startAEMM(t, "spot", "--action", "terminate", "--time", deadline.Format(time.RFC3339))
	start := time.Now()
	a := startAgent(t, Config{Kube: kc, IMDSEndpoint: url, Coordinators: []string{srv.URL}, SpotForceDeleteBefore: -1})

	waitUntil(t, 10*time.Second, "tainted and cordoned", func() bool {
		n, err := kc.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		return err == nil && n.Spec.Unschedulable && hasTaint(n, drain.DisruptedTaintKey) && hasTaint(n, drain.InterruptionTaintKey)
	})
	t.Logf("tainted+cordoned %v after the agent started (IMDS showed the notice from the start)", time.Since(start).Round(time.Millisecond))
	waitUntil(t, 15*time.Second, "interruption reported", func() bool {
		r, ok := coord.find(report.KindInterruption, nil)
		return ok && r.NodeName == name && r.Deadline.Equal(deadline)
	})
	waitUntil(t, 40*time.Second, "drain finished", func() bool {
		r := a.lastDrain.Load()
		return r != nil && !r.Finished.IsZero()
	})
	res := *a.lastDrain.Load()
	if res.Finished.After(deadline.Add(2 * time.Second)) {
		t.Errorf("drain finished %v, after the deadline %v", res.Finished, deadline)
	}
	left, err := kc.CoreV1().Pods("spot-pdb").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var remaining []string
	for _, p := range left.Items {
		if p.DeletionTimestamp == nil {
			remaining = append(remaining, p.Name)
		}
	}
	if len(remaining) != 2 || res.Count(drain.OutcomeBlocked) != 2 || res.Count(drain.OutcomeDeleted) != 0 {
		t.Fatalf("remaining %v; result blocked=%d deleted=%d evicted=%d", remaining, res.Count(drain.OutcomeBlocked),
			res.Count(drain.OutcomeDeleted), res.Count(drain.OutcomeEvicted))
	}
	if res.Count(drain.OutcomeEvicted) != 29 {
		t.Fatalf("evicted %d, want 27 web + 1 db + the critical pod", res.Count(drain.OutcomeEvicted))
	}
	waitUntil(t, 10*time.Second, "blocked pods reported", func() bool {
		_, ok := coord.find(report.KindDrainProgress, func(r report.Report) bool { return r.Done && r.PodsRemaining == 2 && r.Blocked != "" })
		return ok
	})
	evs, _ := kc.CoreV1().Events("default").List(t.Context(), metav1.ListOptions{})
	var reasons []string
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == name {
			reasons = append(reasons, e.Reason)
		}
	}
	t.Logf("node events: %v", reasons)
}

// TestIntegrationMaintenanceCancelled: an imminent reboot drains the node;
// cancelling it uncordons and removes the taints.
func TestIntegrationMaintenanceCancelled(t *testing.T) {
	cp := controlplane.Shared(t)
	kc := kube(t, cp)
	sim := ec2sim.New(ec2sim.Config{RESTConfig: cp.RESTConfig})
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	id, err := simtest.Launch(t.Context(), sim, "maint-it", "on-demand", "m5.large")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := sim.Instance(id)
	var nodeName string
	waitUntil(t, 30*time.Second, "simulator registered the node", func() bool {
		nodes, err := kc.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, n := range nodes.Items {
			if n.Spec.ProviderID == info.ProviderID {
				nodeName = n.Name
				return true
			}
		}
		return false
	})
	podsOnNode(t, kc, "maint", nodeName, 5, 0, false)
	a := startAgent(t, Config{Kube: kc, IMDSEndpoint: sim.IMDSEndpoint(id), MaintenanceLead: time.Hour})
	waitUntil(t, 15*time.Second, "agent found its node", func() bool { return a.NodeName() == nodeName })

	eid, err := sim.ScheduleMaintenance(id, ec2sim.MaintenanceEvent{Code: "system-reboot", NotBefore: time.Now().Add(30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "drained for maintenance", func() bool {
		n, _ := kc.CoreV1().Nodes().Get(t.Context(), nodeName, metav1.GetOptions{})
		pods, _ := kc.CoreV1().Pods("maint").List(t.Context(), metav1.ListOptions{})
		return n != nil && n.Spec.Unschedulable && hasTaint(n, drain.DisruptedTaintKey) && len(pods.Items) == 0
	})
	if err := sim.CancelMaintenance(id, eid); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "uncordoned and untainted", func() bool {
		n, _ := kc.CoreV1().Nodes().Get(t.Context(), nodeName, metav1.GetOptions{})
		return n != nil && !n.Spec.Unschedulable && !hasTaint(n, drain.DisruptedTaintKey) && !hasTaint(n, drain.InterruptionTaintKey)
	})
}

// TestIntegrationHealthCondition: a failing check becomes a NodeCondition
// with an Event, and recovers.
func TestIntegrationHealthCondition(t *testing.T) {
	cp := controlplane.Shared(t)
	kc := kube(t, cp)
	const name = "health-it.ec2.internal"
	kwokNode(t, kc, name, "aws:///us-east-1a/i-0health")
	_, url := newMetadata(t, "i-0health")
	check := &switchCheck{name: "containerd", cond: health.ContainerRuntimeReady}
	check.failing.Store(true)
	cfg := Config{Kube: kc, IMDSEndpoint: url, NodeName: name, StateDir: t.TempDir(), HealthInterval: 200 * time.Millisecond,
		Checks: []health.Check{check}, DisableRepair: true, Logger: slog.New(slog.DiscardHandler)}
	cfg.BootIDFile = filepath.Join(cfg.StateDir, "boot_id")
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	cond := func() *corev1.NodeCondition {
		n, err := kc.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return condition(n, health.ContainerRuntimeReady)
	}
	waitUntil(t, 15*time.Second, "condition False", func() bool { c := cond(); return c != nil && c.Status == corev1.ConditionFalse })
	check.failing.Store(false)
	waitUntil(t, 15*time.Second, "condition True", func() bool { c := cond(); return c != nil && c.Status == corev1.ConditionTrue })
	waitUntil(t, 10*time.Second, "events", func() bool {
		evs, _ := kc.CoreV1().Events("default").List(t.Context(), metav1.ListOptions{})
		var f, r bool
		for _, e := range evs.Items {
			f = f || (e.InvolvedObject.Name == name && e.Reason == "ContainerRuntimeReadyFalse")
			r = r || (e.InvolvedObject.Name == name && e.Reason == "ContainerRuntimeReadyRecovered")
		}
		return f && r
	})
}

// BenchmarkSpotNoticeToDrained: the EC2 simulator shows a spot notice on an
// instance whose Node carries 30 pods; measured are the time from the
// notice appearing in IMDS to the node tainted and cordoned, and to the
// last evictable pod gone. Run with:
//
//	go test -run '^$' -bench SpotNotice -benchtime 3x ./daemon/agent/
func BenchmarkSpotNoticeToDrained(b *testing.B) {
	runs := benchDrains(b, 30)
	var cordon, empty []time.Duration
	for _, r := range runs {
		cordon, empty = append(cordon, r.cordoned), append(empty, r.empty)
	}
	b.ReportMetric(float64(avg(cordon).Milliseconds()), "ms-to-cordon")
	b.ReportMetric(float64(avg(empty).Milliseconds()), "ms-to-last-eviction")
	b.Logf("\n| run | notice→tainted+cordoned | notice→last pod gone |\n|---|---|---|")
	for i := range cordon {
		b.Logf("| %d | %v | %v |", i+1, cordon[i].Round(time.Millisecond), empty[i].Round(time.Millisecond))
	}
}

// BenchmarkLargeDrain: notice → last pod gone with 30, 100 and 250 pods on
// the node, the agent on its shipped client budgets (agent.Clients). Besides
// the totals it splits the time into the agent's part (notice → the last
// eviction accepted by the API server) and the cluster's (last eviction
// accepted → last pod deleted: kube-apiserver, and kwok playing the
// kubelet), which says which side is the limit. Run with:
//
//	go test -run '^$' -bench LargeDrain -benchtime 3x ./daemon/agent/
func BenchmarkLargeDrain(b *testing.B) {
	for _, pods := range []int{30, 100, 250} {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			runs := benchDrains(b, pods)
			var cordon, accepted, empty []time.Duration
			var self, busy, wall time.Duration
			for _, r := range runs {
				cordon, accepted, empty = append(cordon, r.cordoned), append(accepted, r.accepted), append(empty, r.empty)
				self, busy, wall = self+r.selfCPU, busy+r.machineBusy, wall+r.wall
			}
			b.ReportMetric(float64(avg(cordon).Milliseconds()), "ms-to-cordon")
			b.ReportMetric(float64(avg(accepted).Milliseconds()), "ms-to-last-accepted")
			b.ReportMetric(float64(avg(empty).Milliseconds()), "ms-to-empty")
			b.ReportMetric(float64(busy)/float64(wall)/float64(runtime.NumCPU())*100, "%-machine-busy")
			b.ReportMetric(float64(self)/float64(busy)*100, "%-of-busy-in-agent")
			b.Logf("\n| pods | run | notice→cordoned | notice→last eviction accepted | notice→last pod gone | machine busy | agent's share |\n|---|---|---|---|---|---|---|")
			for i, r := range runs {
				b.Logf("| %d | %d | %v | %v | %v | %.0f %% of %d cores | %.0f %% |", pods, i+1, cordon[i].Round(time.Millisecond),
					accepted[i].Round(time.Millisecond), empty[i].Round(time.Millisecond),
					float64(r.machineBusy)/float64(r.wall)/float64(runtime.NumCPU())*100, runtime.NumCPU(),
					float64(r.selfCPU)/float64(r.machineBusy)*100)
			}
		})
	}
}

type drainRun struct {
	cordoned, accepted, empty time.Duration
	// selfCPU: the agent's process; machineBusy: all cores (API server,
	// etcd, kwok, the agent) over wall, the timed window.
	selfCPU, machineBusy, wall time.Duration
}

// benchDrains runs b.N spot interruptions of a simulator instance whose Node
// carries pods bare pods; only notice → empty node is timed.
func benchDrains(b *testing.B, pods int) []drainRun {
	cp := controlplane.Shared(b)
	kc := kube(b, cp)
	sim := ec2sim.New(ec2sim.Config{RESTConfig: cp.RESTConfig})
	if err := sim.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Close)
	agentKube, agentEvents, err := Clients(cp.RESTConfig, "dovetail-agent/bench")
	if err != nil {
		b.Fatal(err)
	}
	var runs []drainRun
	b.StopTimer() // only notice → drained is timed; set-up is not
	for i := 0; i < b.N; i++ {
		id, err := simtest.Launch(b.Context(), sim, fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i), "spot", "m5.large")
		if err != nil {
			b.Fatal(err)
		}
		info, _ := sim.Instance(id)
		var nodeName string
		waitUntil(b, 30*time.Second, "node registered", func() bool {
			nodes, _ := kc.CoreV1().Nodes().List(b.Context(), metav1.ListOptions{})
			if nodes == nil {
				return false
			}
			for _, n := range nodes.Items {
				if n.Spec.ProviderID == info.ProviderID {
					nodeName = n.Name
					return true
				}
			}
			return false
		})
		ns := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano()%1_000_000, i)
		podsOnNode(b, kc, ns, nodeName, pods, 0, false)
		a := startAgent(b, Config{Kube: agentKube, EventKube: agentEvents, IMDSEndpoint: sim.IMDSEndpoint(id)})
		waitUntil(b, 15*time.Second, "agent up", func() bool { return a.NodeName() == nodeName })

		// The pods are followed with a watch, not listed every 25 ms: a
		// benchmark that lists 250 pods 40 times a second loads the API
		// server it measures.
		gone := watchDeletions(b, kc, ns, pods)
		cpu0, busy0 := selfCPU(), machineBusy()
		b.StartTimer()
		// Timed from before the call: the simulator shows the notice during
		// it, and the agent may see it before the call returns.
		shown := time.Now()
		if _, err := sim.InterruptSpot(id); err != nil {
			b.Fatal(err)
		}
		var cordonedAt time.Time
		waitUntil(b, 30*time.Second, "cordoned", func() bool {
			n, err := kc.CoreV1().Nodes().Get(b.Context(), nodeName, metav1.GetOptions{})
			if err == nil && n.Spec.Unschedulable && hasTaint(n, drain.DisruptedTaintKey) {
				cordonedAt = time.Now()
				return true
			}
			return false
		})
		var emptyAt time.Time
		select {
		case emptyAt = <-gone:
		case <-time.After(60 * time.Second):
			b.Fatal("node never emptied")
		}
		b.StopTimer()
		wall := time.Since(shown)
		cpu, busy := selfCPU()-cpu0, machineBusy()-busy0
		var lastAccepted time.Time
		waitUntil(b, 10*time.Second, "drain result", func() bool {
			r := a.lastDrain.Load()
			return r != nil && !r.Finished.IsZero()
		})
		for _, p := range a.lastDrain.Load().Pods {
			if p.AcceptedAt.After(lastAccepted) {
				lastAccepted = p.AcceptedAt
			}
		}
		runs = append(runs, drainRun{cordoned: cordonedAt.Sub(shown), accepted: lastAccepted.Sub(shown), empty: emptyAt.Sub(shown),
			selfCPU: cpu, machineBusy: busy, wall: wall})
	}
	return runs
}

// watchDeletions returns a channel that receives the time the last of n
// pods in ns was deleted.
func watchDeletions(b *testing.B, kc kubernetes.Interface, ns string, n int) <-chan time.Time {
	w, err := kc.CoreV1().Pods(ns).Watch(b.Context(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	out := make(chan time.Time, 1)
	go func() {
		defer w.Stop()
		deleted := 0
		for ev := range w.ResultChan() {
			if ev.Type == watch.Deleted {
				if deleted++; deleted == n {
					out <- time.Now()
					return
				}
			}
		}
	}()
	return out
}

// selfCPU is this process's CPU time (the agent runs in it, with the
// benchmark's own watch and node polling).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the machine's busy CPU time so far (all cores, /proc/stat).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond // USER_HZ = 100
}

func avg(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(len(ds))
}
