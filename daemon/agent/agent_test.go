package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dovetail-dev/dovetail/daemon/imds"
	"github.com/dovetail-dev/dovetail/daemon/repair"
	"github.com/dovetail-dev/dovetail/drain"
	"github.com/dovetail-dev/dovetail/gossip"
	"github.com/dovetail-dev/dovetail/health"
	"github.com/dovetail-dev/dovetail/report"
)

// metadata is a minimal IMDSv2 server whose documents a test can change.
type metadata struct {
	mu   sync.Mutex
	docs map[string]string
}

func newMetadata(t *testing.T, instanceID string) (*metadata, string) {
	m := &metadata{docs: map[string]string{
		"instance-id": instanceID, "placement/availability-zone": "us-east-1a",
		"local-hostname": "ip-10-0-0-9.ec2.internal", "instance-type": "m5.large",
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
			_, _ = w.Write([]byte("token"))
			return
		}
		if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "token" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		m.mu.Lock()
		body, ok := m.docs[strings.TrimPrefix(r.URL.Path, "/latest/meta-data/")]
		m.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return m, srv.URL
}

func (m *metadata) set(path, body string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if body == "" {
		delete(m.docs, path)
	} else {
		m.docs[path] = body
	}
}

// coordinator collects reports.
type coordinator struct {
	mu  sync.Mutex
	got []report.Report
}

func (c *coordinator) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep report.Report
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.got = append(c.got, rep)
		c.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
}

func (c *coordinator) find(kind report.Kind, pred func(report.Report) bool) (report.Report, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.got {
		if r.Kind == kind && (pred == nil || pred(r)) {
			return r, true
		}
	}
	return report.Report{}, false
}

// switchCheck is a health check a test flips.
type switchCheck struct {
	name, cond string
	failing    atomic.Bool
}

func (s *switchCheck) Name() string      { return s.name }
func (s *switchCheck) Condition() string { return s.cond }
func (s *switchCheck) Run(context.Context) health.Result {
	if s.failing.Load() {
		return health.Result{State: health.StateFailed, Reason: "ContainerRuntimeNotRunning", Message: "socket gone"}
	}
	return health.Result{State: health.StateOK, Reason: "ContainerRuntimeHealthy"}
}

type harness struct {
	t        *testing.T
	cs       *fake.Clientset
	meta     *metadata
	coord    *coordinator
	agent    *Agent
	check    *switchCheck
	stateDir string
	bootID   string
	cancel   context.CancelFunc
	done     chan struct{}
}

const instanceID = "i-0123456789abcdef0"

func newHarness(t *testing.T, objs ...runtime.Object) *harness {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-9.ec2.internal"},
		Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/" + instanceID}}
	cs := fake.NewClientset(append([]runtime.Object{n}, objs...)...)
	// The API server's eviction subresource: delete the pod.
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		return true, nil, cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ev.Namespace, ev.Name)
	})
	meta, url := newMetadata(t, instanceID)
	coord := &coordinator{}
	srv := httptest.NewServer(coord.handler())
	t.Cleanup(srv.Close)
	h := &harness{t: t, cs: cs, meta: meta, coord: coord, stateDir: t.TempDir(), bootID: "boot-1",
		check: &switchCheck{name: "containerd", cond: health.ContainerRuntimeReady}}
	h.writeBootID()
	h.start(url, srv.URL)
	return h
}

func (h *harness) writeBootID() {
	if err := os.WriteFile(filepath.Join(h.stateDir, "boot_id"), []byte(h.bootID+"\n"), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) start(imdsURL, coordURL string) {
	a, err := New(Config{
		Kube: h.cs, IMDSEndpoint: imdsURL, IMDSInterval: 50 * time.Millisecond, Coordinators: []string{coordURL},
		StateDir: h.stateDir, HealthInterval: 100 * time.Millisecond, Checks: []health.Check{h.check},
		DisableRepair: true, MaintenanceLead: time.Minute, BootIDFile: filepath.Join(h.stateDir, "boot_id"),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		if err := a.Run(ctx); err != nil {
			h.t.Errorf("agent: %v", err)
		}
	}()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
}

func (h *harness) node() *corev1.Node {
	n, err := h.cs.CoreV1().Nodes().Get(context.Background(), "ip-10-0-0-9.ec2.internal", metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

func condition(n *corev1.Node, t string) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if string(n.Status.Conditions[i].Type) == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func appPod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name, UID: types.UID(name)},
		Spec: corev1.PodSpec{NodeName: "ip-10-0-0-9.ec2.internal"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
}

func TestSpotNoticeTaintsCordonsReportsAndDrains(t *testing.T) {
	h := newHarness(t, appPod("web-1"), appPod("web-2"))
	eventually(t, "agent resolved its node", func() bool { return h.agent.NodeName() != "" })
	if h.agent.NodeName() != "ip-10-0-0-9.ec2.internal" {
		t.Fatalf("node %q", h.agent.NodeName())
	}
	deadline := time.Now().Add(2 * time.Minute).UTC().Truncate(time.Second)
	h.meta.set("spot/instance-action", fmt.Sprintf(`{"action":"terminate","time":%q}`, deadline.Format(time.RFC3339)))

	eventually(t, "node tainted and cordoned", func() bool {
		n := h.node()
		return n.Spec.Unschedulable && hasTaint(n, drain.DisruptedTaintKey) && hasTaint(n, drain.InterruptionTaintKey)
	})
	eventually(t, "pods evicted", func() bool {
		pods, _ := h.cs.CoreV1().Pods("app").List(context.Background(), metav1.ListOptions{})
		return len(pods.Items) == 0
	})
	eventually(t, "interruption reported", func() bool {
		r, ok := h.coord.find(report.KindInterruption, nil)
		return ok && r.Action == "terminate" && r.Deadline.Equal(deadline) && r.InstanceID == instanceID &&
			r.ProviderID == "aws:///us-east-1a/"+instanceID && r.NodeName == "ip-10-0-0-9.ec2.internal"
	})
	eventually(t, "drain completion reported", func() bool {
		_, ok := h.coord.find(report.KindDrainProgress, func(r report.Report) bool { return r.Done && r.PodsRemaining == 0 })
		return ok
	})
}

func TestRebalanceIsReportedNotDrained(t *testing.T) {
	h := newHarness(t, appPod("web-1"))
	eventually(t, "agent up", func() bool { return h.agent.NodeName() != "" })
	h.meta.set("events/recommendations/rebalance", `{"noticeTime":"2026-11-27T09:00:00Z"}`)
	eventually(t, "rebalance reported", func() bool { _, ok := h.coord.find(report.KindRebalance, nil); return ok })
	time.Sleep(200 * time.Millisecond)
	if n := h.node(); n.Spec.Unschedulable || len(n.Spec.Taints) > 0 {
		t.Fatalf("rebalance drained the node: %+v", n.Spec)
	}
}

func TestCancelledMaintenanceUncordons(t *testing.T) {
	h := newHarness(t, appPod("web-1"))
	eventually(t, "agent up", func() bool { return h.agent.NodeName() != "" })
	// Starts in 30 s: inside the 1 min lead, so the drain starts at once.
	start := time.Now().Add(30 * time.Second).UTC()
	ev := func(state string) string {
		return fmt.Sprintf(`[{"NotBefore":%q,"Code":"system-reboot","Description":"scheduled reboot","EventId":"instance-event-1","NotAfter":%q,"State":%q}]`,
			start.Format("2 Jan 2006 15:04:05 GMT"), start.Add(time.Hour).Format("2 Jan 2006 15:04:05 GMT"), state)
	}
	h.meta.set("events/maintenance/scheduled", ev("active"))
	eventually(t, "drained for maintenance", func() bool {
		n := h.node()
		pods, _ := h.cs.CoreV1().Pods("app").List(context.Background(), metav1.ListOptions{})
		return n.Spec.Unschedulable && hasTaint(n, drain.DisruptedTaintKey) && len(pods.Items) == 0
	})
	h.meta.set("events/maintenance/scheduled", ev("canceled"))
	eventually(t, "uncordoned and untainted", func() bool {
		n := h.node()
		return !n.Spec.Unschedulable && !hasTaint(n, drain.DisruptedTaintKey) && !hasTaint(n, drain.InterruptionTaintKey)
	})
	eventually(t, "cancellation reported", func() bool {
		_, ok := h.coord.find(report.KindMaintenance, func(r report.Report) bool { return r.Cancelled && r.EventID == "instance-event-1" })
		return ok
	})
}

func TestHealthBecomesConditionAndRecovers(t *testing.T) {
	h := newHarness(t)
	eventually(t, "condition True", func() bool {
		c := condition(h.node(), health.ContainerRuntimeReady)
		return c != nil && c.Status == corev1.ConditionTrue
	})
	h.check.failing.Store(true)
	eventually(t, "condition False", func() bool {
		c := condition(h.node(), health.ContainerRuntimeReady)
		return c != nil && c.Status == corev1.ConditionFalse && c.Reason == "ContainerRuntimeNotRunning"
	})
	eventually(t, "failure reported", func() bool {
		_, ok := h.coord.find(report.KindHealth, func(r report.Report) bool {
			return len(r.Checks) == 1 && r.Checks[0].State == "failed"
		})
		return ok
	})
	// The agent's own metrics say the same: the check's state set and its
	// result counts.
	eventually(t, "health metrics show the failure", func() bool {
		return metricValue(t, h.agent, "dovetail_agent_health_check_state", map[string]string{"check": "containerd", "state": "failed"}) == 1 &&
			metricValue(t, h.agent, "dovetail_agent_health_check_state", map[string]string{"check": "containerd", "state": "ok"}) == 0 &&
			metricValue(t, h.agent, "dovetail_agent_health_checks_total", map[string]string{"check": "containerd", "state": "failed"}) >= 1 &&
			metricValue(t, h.agent, "dovetail_agent_health_checks_total", map[string]string{"check": "containerd", "state": "ok"}) >= 1
	})

	// Restart the agent while the check is failing: the condition must not
	// flip to True before a check has run and passed.
	h.stop()
	var flippedTrue atomic.Bool
	h.cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if p, ok := a.(k8stesting.PatchAction); ok && strings.Contains(string(p.GetPatch()), `"ContainerRuntimeReady"`) &&
			strings.Contains(string(p.GetPatch()), `"True"`) && h.check.failing.Load() {
			flippedTrue.Store(true)
		}
		return false, nil, nil
	})
	_, url := newMetadata(t, instanceID)
	srv := httptest.NewServer(h.coord.handler())
	defer srv.Close()
	h.start(url, srv.URL)
	time.Sleep(300 * time.Millisecond)
	if flippedTrue.Load() {
		t.Fatal("restart reported the failing runtime as healthy")
	}
	h.check.failing.Store(false)
	eventually(t, "recovered to True", func() bool {
		c := condition(h.node(), health.ContainerRuntimeReady)
		return c != nil && c.Status == corev1.ConditionTrue
	})
	eventually(t, "False and Recovered events", func() bool {
		evs, _ := h.cs.CoreV1().Events("").List(context.Background(), metav1.ListOptions{})
		var reasons []string
		for _, e := range evs.Items {
			reasons = append(reasons, e.Reason)
		}
		joined := strings.Join(reasons, ",")
		return strings.Contains(joined, "ContainerRuntimeReadyFalse") && strings.Contains(joined, "ContainerRuntimeReadyRecovered")
	})
}

func TestSurvivedRebootUncordons(t *testing.T) {
	// A drain from the previous boot is on record; the node is cordoned by us.
	stateDir := t.TempDir()
	rec, _ := json.Marshal(drainRecord{Reason: "maintenance-system-reboot", EventID: "instance-event-9", BootID: "boot-0"})
	if err := os.WriteFile(filepath.Join(stateDir, "drain.json"), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-9.ec2.internal", Annotations: map[string]string{drain.CordonedByAnnotation: "dovetail-agent"}},
		Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/" + instanceID, Unschedulable: true, Taints: drain.DisruptionTaints(drain.InterruptionTaintKey, "maintenance")}}
	cs := fake.NewClientset(n)
	_, url := newMetadata(t, instanceID)
	if err := os.WriteFile(filepath.Join(stateDir, "boot_id"), []byte("boot-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, cs: cs, stateDir: stateDir, check: &switchCheck{name: "containerd", cond: health.ContainerRuntimeReady}}
	h.start(url, "127.0.0.1:1")
	eventually(t, "uncordoned after reboot", func() bool {
		n := h.node()
		return !n.Spec.Unschedulable && len(n.Spec.Taints) == 0
	})
	eventually(t, "drain record cleared", func() bool {
		_, err := os.Stat(filepath.Join(stateDir, "drain.json"))
		return os.IsNotExist(err)
	})
}

func TestResolveNode(t *testing.T) {
	id := imds.Identity{InstanceID: "i-1", AvailabilityZone: "us-east-1a", Hostname: "ip-10-0-0-1.ec2.internal"}
	byPID := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "custom-name"}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-1"}}
	short := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-1"}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-1"}}
	impostor := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-1.ec2.internal"}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1b/i-2"}}
	ctx := context.Background()

	n, err := ResolveNode(ctx, fake.NewClientset(byPID, impostor), "", id)
	if err != nil || n.Name != "custom-name" {
		t.Fatalf("by providerID: %v %v", n, err)
	}
	n, err = ResolveNode(ctx, fake.NewClientset(short), "", id)
	if err != nil || n.Name != "ip-10-0-0-1" {
		t.Fatalf("short hostname: %v %v", n, err)
	}
	if _, err := ResolveNode(ctx, fake.NewClientset(impostor), "ip-10-0-0-1.ec2.internal", id); err == nil {
		t.Fatal("accepted an explicit name whose providerID is another instance")
	}
	if _, err := ResolveNode(ctx, fake.NewClientset(), "", id); err == nil {
		t.Fatal("resolved a node that does not exist")
	}
	n, err = ResolveNode(ctx, fake.NewClientset(byPID), "custom-name", imds.Identity{})
	if err != nil || n.Name != "custom-name" {
		t.Fatalf("explicit without IMDS: %v %v", n, err)
	}
}

// TestReportsFindCoordinatorThroughGossip: no static coordinator address;
// the agent joins the pool, finds the coordinator's RPC address in its
// gossip meta, and delivers there. The coordinator sees the agent's meta.
func TestReportsFindCoordinatorThroughGossip(t *testing.T) {
	coord := &coordinator{}
	srv := httptest.NewServer(coord.handler())
	defer srv.Close()
	rpc := strings.TrimPrefix(srv.URL, "http://")
	pool, err := gossip.Start(t.Context(), gossip.Config{Name: "coord-0", BindAddr: "127.0.0.1", Dev: true,
		Meta: func() report.Meta { return report.Meta{Role: "coordinator", RPCAddr: rpc} }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pool.Shutdown() }()

	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-9.ec2.internal"}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/" + instanceID}}
	cs := fake.NewClientset(n)
	meta, url := newMetadata(t, instanceID)
	stateDir := t.TempDir()
	a, err := New(Config{Kube: cs, IMDSEndpoint: url, IMDSInterval: 50 * time.Millisecond, StateDir: stateDir,
		HealthInterval: 100 * time.Millisecond, Checks: []health.Check{&switchCheck{name: "containerd", cond: health.ContainerRuntimeReady}},
		DisableRepair: true, BootIDFile: filepath.Join(stateDir, "boot_id"), Logger: slog.New(slog.DiscardHandler),
		Gossip: gossip.Config{BindAddr: "127.0.0.1", Dev: true, Seeds: []string{pool.LocalAddr()}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	eventually(t, "coordinator sees the agent with its meta", func() bool {
		for _, m := range pool.Members() {
			if m.Name == "ip-10-0-0-9.ec2.internal" && m.Meta.Role == "agent" && m.Meta.InstanceID == instanceID {
				return true
			}
		}
		return false
	})
	meta.set("events/recommendations/rebalance", `{"noticeTime":"2026-11-27T09:00:00Z"}`)
	eventually(t, "report delivered to the gossip-discovered coordinator", func() bool {
		_, ok := coord.find(report.KindRebalance, nil)
		return ok
	})
	meta.set("spot/instance-action", fmt.Sprintf(`{"action":"stop","time":%q}`, time.Now().Add(time.Minute).UTC().Format(time.RFC3339)))
	// The notice reaches the coordinator as a report (the gossip record
	// carries identity and where to report only).
	eventually(t, "spot notice reported to the gossip-discovered coordinator", func() bool {
		_, ok := coord.find(report.KindInterruption, nil)
		return ok
	})
	// On shutdown the agent leaves the pool gracefully.
	cancel()
	<-done
	eventually(t, "agent listed as left", func() bool {
		for _, m := range pool.Members() {
			if m.Name == "ip-10-0-0-9.ec2.internal" {
				return m.State == gossip.StateLeft
			}
		}
		return false
	})
}

func TestMaintenanceDrainWaitsForTheLeadAndFollowsReschedules(t *testing.T) {
	h := newHarness(t, appPod("web-1"))
	eventually(t, "agent up", func() bool { return h.agent.NodeName() != "" })
	ev := func(start time.Time) string {
		return fmt.Sprintf(`[{"NotBefore":%q,"Code":"instance-stop","Description":"retiring","EventId":"instance-event-7","NotAfter":%q,"State":"active"}]`,
			start.UTC().Format("2 Jan 2006 15:04:05 GMT"), start.Add(time.Hour).UTC().Format("2 Jan 2006 15:04:05 GMT"))
	}
	// Two hours out with a one-minute lead: reported, not drained yet.
	h.meta.set("events/maintenance/scheduled", ev(time.Now().Add(2*time.Hour)))
	eventually(t, "maintenance reported", func() bool {
		_, ok := h.coord.find(report.KindMaintenance, func(r report.Report) bool { return r.EventID == "instance-event-7" && r.Action == "instance-stop" })
		return ok
	})
	time.Sleep(300 * time.Millisecond)
	if n := h.node(); n.Spec.Unschedulable {
		t.Fatal("drained two hours early")
	}
	// AWS moves it forward to 20 s from now: inside the lead, drain now.
	h.meta.set("events/maintenance/scheduled", ev(time.Now().Add(20*time.Second)))
	eventually(t, "drained after the reschedule", func() bool {
		pods, _ := h.cs.CoreV1().Pods("app").List(context.Background(), metav1.ListOptions{})
		return h.node().Spec.Unschedulable && len(pods.Items) == 0
	})
}

type unitRecorder struct {
	mu       sync.Mutex
	restarts []string
}

func (u *unitRecorder) RestartUnit(_ context.Context, unit string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.restarts = append(u.restarts, unit)
	return nil
}
func (u *unitRecorder) Reboot(context.Context) error {
	return fmt.Errorf("reboot not allowed in tests")
}
func (u *unitRecorder) count() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.restarts) }

func TestSelfRepairRestartsTheUnitThenAsksForReplacement(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-9.ec2.internal"}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/" + instanceID}}
	cs := fake.NewClientset(n)
	_, url := newMetadata(t, instanceID)
	coord := &coordinator{}
	srv := httptest.NewServer(coord.handler())
	defer srv.Close()
	check := &switchCheck{name: "kubelet", cond: health.ContainerRuntimeReady}
	check.failing.Store(true)
	units := &unitRecorder{}
	stateDir := t.TempDir()
	a, err := New(Config{Kube: cs, IMDSEndpoint: url, Coordinators: []string{srv.URL}, StateDir: stateDir,
		HealthInterval: 50 * time.Millisecond, Checks: []health.Check{check}, Systemd: units,
		// Restarts are 100 ms apart; the reboot/replace horizon leaves room for
		// both on a loaded machine.
		Repair: repair.Policy{Units: repair.DefaultUnits, RestartAfter: 100 * time.Millisecond, MaxRestarts: 2,
			RebootAfter: 1500 * time.Millisecond, ReplaceAfter: 1500 * time.Millisecond},
		BootIDFile: filepath.Join(stateDir, "boot_id"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	eventually(t, "ReplaceMe reported after the restarts did not help", func() bool {
		_, ok := coord.find(report.KindReplaceMe, nil)
		return ok
	})
	if c := units.count(); c != 2 {
		t.Fatalf("kubelet.service restarted %d times, want the limit of 2", c)
	}
	if v := metricValue(t, a, "dovetail_agent_repairs_total", map[string]string{"action": "restart-unit", "result": "done"}); v != 2 {
		t.Errorf("dovetail_agent_repairs_total{action=restart-unit,result=done} = %v, want 2", v)
	}
	if v := metricValue(t, a, "dovetail_agent_repairs_total", map[string]string{"action": "replace-me", "result": "done"}); v != 1 {
		t.Errorf("dovetail_agent_repairs_total{action=replace-me,result=done} = %v, want 1", v)
	}
	eventually(t, "2 SelfRepair events and 1 ReplaceRequested", func() bool {
		evs, _ := cs.CoreV1().Events("").List(context.Background(), metav1.ListOptions{})
		var repairs, replace int
		for _, e := range evs.Items {
			switch e.Reason {
			case "SelfRepair":
				repairs++
			case "ReplaceRequested":
				replace++
			}
		}
		return repairs == 2 && replace == 1
	})
}
