package drain

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// evictionAPI stands in for the API server's eviction subresource in unit
// tests: it refuses pods named in blocked with 429 (as a PDB would) and
// otherwise deletes the pod, recording the order. Real PDB behaviour is
// covered by the control-plane integration test.
type evictionAPI struct {
	mu      sync.Mutex
	blocked map[string]bool
	order   []string
	dryRuns []string
	graces  map[string]int64
}

func (e *evictionAPI) install(cs *fake.Clientset) {
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		key := ev.Namespace + "/" + ev.Name
		e.mu.Lock()
		defer e.mu.Unlock()
		if _, err := cs.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ev.Namespace, ev.Name); err != nil {
			return true, nil, err
		}
		if e.blocked[key] {
			return true, nil, apierrors.NewTooManyRequestsError("Cannot evict pod as it would violate the pod's disruption budget.")
		}
		if ev.DeleteOptions != nil && len(ev.DeleteOptions.DryRun) > 0 {
			e.dryRuns = append(e.dryRuns, key)
			return true, nil, nil
		}
		e.order = append(e.order, key)
		if e.graces == nil {
			e.graces = map[string]int64{}
		}
		if ev.DeleteOptions != nil && ev.DeleteOptions.GracePeriodSeconds != nil {
			e.graces[key] = *ev.DeleteOptions.GracePeriodSeconds
		}
		return true, nil, cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ev.Namespace, ev.Name)
	})
	// The fake clientset applies dry-run updates; the API server does not.
	cs.PrependReactor("update", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if u, ok := a.(k8stesting.UpdateActionImpl); ok && len(u.UpdateOptions.DryRun) > 0 {
			return true, u.Object, nil
		}
		return false, nil, nil
	})
}

func (e *evictionAPI) evicted() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.order)
}

func node(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

type podOpt func(*corev1.Pod)

func pod(ns, name, nodeName string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name)},
		Spec:       corev1.PodSpec{NodeName: nodeName},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func critical(class string) podOpt { return func(p *corev1.Pod) { p.Spec.PriorityClassName = class } }
func daemonSet() podOpt {
	return func(p *corev1.Pod) {
		t := true
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "ds", Controller: &t, APIVersion: "apps/v1", UID: "ds"}}
	}
}
func mirror() podOpt {
	return func(p *corev1.Pod) { p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"} }
}
func grace(s int64) podOpt { return func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = &s } }

func newDrainer(t *testing.T, cs *fake.Clientset, o Options) *Drainer {
	t.Helper()
	o.Logger = slog.New(slog.DiscardHandler)
	if o.RetryInterval == 0 {
		o.RetryInterval = 50 * time.Millisecond
	}
	o.PollInterval = 20 * time.Millisecond
	d, err := New(cs, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDrainOrderSkipsAndTaints(t *testing.T) {
	objs := []runtime.Object{node("n1"), node("n2"),
		pod("app", "web-1", "n1"), pod("app", "web-2", "n1"),
		pod("kube-system", "coredns", "n1", critical(SystemClusterCritical)),
		pod("kube-system", "proxy", "n1", daemonSet()),
		pod("kube-system", "static", "n1", mirror()),
		pod("app", "done", "n1", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("app", "elsewhere", "n2"),
	}
	cs := fake.NewClientset(objs...)
	api := &evictionAPI{}
	api.install(cs)
	var progress []Result
	d := newDrainer(t, cs, Options{Component: "dovetail-agent", Progress: func(r Result) { progress = append(progress, r) }})

	res, err := d.Drain(t.Context(), "n1", time.Now().Add(30*time.Second), "spot")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || res.Count(OutcomeEvicted) != 3 {
		t.Fatalf("result: complete=%v evicted=%d %+v", res.Complete, res.Count(OutcomeEvicted), res.Pods)
	}
	order := api.evicted()
	if len(order) != 3 || order[2] != "kube-system/coredns" {
		t.Fatalf("eviction order %v: critical pod must go last", order)
	}
	var skipped []string
	for _, s := range res.Skipped {
		skipped = append(skipped, s.Pod.Name+":"+s.Reason)
	}
	slices.Sort(skipped)
	if want := []string{"done:terminal", "proxy:daemonset", "static:mirror"}; !slices.Equal(skipped, want) {
		t.Fatalf("skipped %v, want %v", skipped, want)
	}
	// The daemonset pod and the other node's pod are still there.
	for _, k := range [][2]string{{"kube-system", "proxy"}, {"app", "elsewhere"}, {"kube-system", "static"}} {
		if _, err := cs.CoreV1().Pods(k[0]).Get(t.Context(), k[1], metav1.GetOptions{}); err != nil {
			t.Errorf("%s/%s was removed: %v", k[0], k[1], err)
		}
	}
	n, _ := cs.CoreV1().Nodes().Get(t.Context(), "n1", metav1.GetOptions{})
	if !n.Spec.Unschedulable || n.Annotations[CordonedByAnnotation] != "dovetail-agent" {
		t.Fatalf("node not cordoned by us: %+v", n.Spec)
	}
	if !hasTaint(n, DisruptedTaintKey, "") || !hasTaint(n, InterruptionTaintKey, "spot") {
		t.Fatalf("taints %+v", n.Spec.Taints)
	}
	if res.CordonedAt.IsZero() || res.LastGoneAt.Before(res.CordonedAt) {
		t.Fatalf("timestamps cordoned=%v lastGone=%v", res.CordonedAt, res.LastGoneAt)
	}
	if len(progress) < 2 || progress[0].CordonedAt.IsZero() || !progress[len(progress)-1].Complete {
		t.Fatalf("progress callbacks: %d, first cordoned=%v", len(progress), progress[0].CordonedAt)
	}
	reasons := eventReasons(t, cs)
	for _, want := range []string{"Draining", "Evicted", "Drained"} {
		if !slices.Contains(reasons, want) {
			t.Errorf("no %s event; got %v", want, reasons)
		}
	}
}

func TestDrainPDBBlockedIsRetriedThenReportedNeverDeleted(t *testing.T) {
	cs := fake.NewClientset(node("n1"), pod("app", "db-0", "n1"), pod("app", "web", "n1"))
	api := &evictionAPI{blocked: map[string]bool{"app/db-0": true}}
	api.install(cs)
	d := newDrainer(t, cs, Options{})
	res, err := d.Drain(t.Context(), "n1", time.Now().Add(600*time.Millisecond), "maintenance")
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete {
		t.Fatal("complete although a PDB blocked db-0")
	}
	b := res.Blocked()
	if len(b) != 1 || b[0].Pod.Name != "db-0" || b[0].Attempts < 3 || !strings.Contains(b[0].Message, "disruption budget") {
		t.Fatalf("blocked = %+v", b)
	}
	if _, err := cs.CoreV1().Pods("app").Get(t.Context(), "db-0", metav1.GetOptions{}); err != nil {
		t.Fatalf("blocked pod was removed: %v", err)
	}
	reasons := eventReasons(t, cs)
	if !slices.Contains(reasons, "EvictionBlocked") || !slices.Contains(reasons, "DrainIncomplete") {
		t.Fatalf("events %v", reasons)
	}
	// One EvictionBlocked event per pod, not one per retry.
	if n := countOf(reasons, "EvictionBlocked"); n != 1 {
		t.Fatalf("%d EvictionBlocked events", n)
	}
}

func TestDrainForceDeletesOnlyWhenTheDeadlineForcesIt(t *testing.T) {
	cs := fake.NewClientset(node("n1"), pod("app", "db-0", "n1", grace(60)))
	api := &evictionAPI{blocked: map[string]bool{"app/db-0": true}}
	api.install(cs)
	var deletes []int64
	cs.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		deletes = append(deletes, *a.(k8stesting.DeleteActionImpl).DeleteOptions.GracePeriodSeconds)
		return false, nil, nil
	})
	d := newDrainer(t, cs, Options{ForceDeleteBefore: 2 * time.Second})
	start := time.Now()
	res, err := d.Drain(t.Context(), "n1", start.Add(2500*time.Millisecond), "spot")
	if err != nil {
		t.Fatal(err)
	}
	if res.Count(OutcomeDeleted) != 1 || !res.Complete {
		t.Fatalf("outcome %+v", res.Pods)
	}
	if len(deletes) != 1 || deletes[0] < 1 || deletes[0] > 2 {
		t.Fatalf("deletes with grace %v, want one with ≤2s (the time left)", deletes)
	}
	if at := res.Pods[0].GoneAt.Sub(start); at < 400*time.Millisecond {
		t.Fatalf("deleted after %v: before the force point", at)
	}
}

func TestDrainGraceShortenedToDeadline(t *testing.T) {
	cs := fake.NewClientset(node("n1"), pod("app", "slow", "n1", grace(300)), pod("app", "quick", "n1", grace(5)))
	api := &evictionAPI{}
	api.install(cs)
	d := newDrainer(t, cs, Options{})
	if _, err := d.Drain(t.Context(), "n1", time.Now().Add(120*time.Second), "spot"); err != nil {
		t.Fatal(err)
	}
	if g := api.graces["app/slow"]; g > 120 || g < 118 {
		t.Errorf("slow pod grace %d, want ≈120 (time to the deadline)", g)
	}
	if g := api.graces["app/quick"]; g != 5 {
		t.Errorf("quick pod grace %d, want its own 5", g)
	}
}

// The drain counts time on its injected clock only: a clock far from the
// wall clock (a test's, or a node whose clock the agent corrects) still gives
// the pods the grace left before the deadline as that clock counts it.
func TestDrainDeadlineOnTheInjectedClock(t *testing.T) {
	cs := fake.NewClientset(node("n1"), pod("app", "slow", "n1", grace(300)))
	api := &evictionAPI{}
	api.install(cs)
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := base
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Millisecond)
		return now
	}
	d := newDrainer(t, cs, Options{Now: clock})
	res, err := d.Drain(t.Context(), "n1", base.Add(120*time.Second), "spot")
	if err != nil {
		t.Fatal(err)
	}
	if g := api.graces["app/slow"]; g > 120 || g < 118 {
		t.Errorf("slow pod grace %d, want ≈120 (the deadline on the drain's clock)", g)
	}
	if got := api.evicted(); len(got) != 1 {
		t.Errorf("evicted %v, want the one pod (a wall-clock deadline in 2020 ends the drain before any eviction)", got)
	}
	if res.Deadline != base.Add(120*time.Second) {
		t.Errorf("result deadline %v", res.Deadline)
	}
}

func TestDrainDryRunChangesNothing(t *testing.T) {
	cs := fake.NewClientset(node("n1"), pod("app", "web", "n1"), pod("app", "db-0", "n1"))
	api := &evictionAPI{blocked: map[string]bool{"app/db-0": true}}
	api.install(cs)
	d := newDrainer(t, cs, Options{DryRun: true})
	res, err := d.Drain(t.Context(), "n1", time.Now().Add(time.Minute), "consolidation")
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete || res.Count(OutcomeEvicted) != 1 || res.Count(OutcomeBlocked) != 1 || !res.DryRun {
		t.Fatalf("dry run result %+v", res)
	}
	if len(api.evicted()) != 0 || len(api.dryRuns) != 1 {
		t.Fatalf("real evictions %v, dry-run evictions %v", api.evicted(), api.dryRuns)
	}
	n, _ := cs.CoreV1().Nodes().Get(t.Context(), "n1", metav1.GetOptions{})
	if n.Spec.Unschedulable || len(n.Spec.Taints) != 0 {
		t.Fatalf("dry run changed the node: %+v", n.Spec)
	}
	if r := eventReasons(t, cs); len(r) != 0 {
		t.Fatalf("dry run wrote events %v", r)
	}
}

func TestRestoreUndoesOnlyOurCordon(t *testing.T) {
	ours := node("ours")
	ours.Spec.Unschedulable = true
	ours.Annotations = map[string]string{CordonedByAnnotation: "dovetail-agent"}
	ours.Spec.Taints = DisruptionTaints(InterruptionTaintKey, "maintenance")
	ours.Spec.Taints = append(ours.Spec.Taints, corev1.Taint{Key: "team", Value: "x", Effect: corev1.TaintEffectNoSchedule})
	theirs := node("theirs")
	theirs.Spec.Unschedulable = true
	theirs.Spec.Taints = DisruptionTaints(InterruptionTaintKey, "maintenance")
	cs := fake.NewClientset(ours, theirs)
	d := newDrainer(t, cs, Options{})
	for _, n := range []string{"ours", "theirs"} {
		if err := d.Restore(t.Context(), n, "maintenance event cancelled"); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := cs.CoreV1().Nodes().Get(t.Context(), "ours", metav1.GetOptions{})
	if got.Spec.Unschedulable || len(got.Spec.Taints) != 1 || got.Spec.Taints[0].Key != "team" {
		t.Fatalf("ours not restored: %+v %v", got.Spec, got.Annotations)
	}
	if _, ok := got.Annotations[CordonedByAnnotation]; ok {
		t.Fatal("cordon annotation left behind")
	}
	got, _ = cs.CoreV1().Nodes().Get(t.Context(), "theirs", metav1.GetOptions{})
	if !got.Spec.Unschedulable || len(got.Spec.Taints) != 0 {
		t.Fatalf("an operator's cordon was undone or taints kept: %+v", got.Spec)
	}
}

func TestCriticalPodsStartWhenTimeRunsShort(t *testing.T) {
	// An ordinary pod blocked by its PDB must not keep critical pods on the
	// node until the end: they go at deadline - (grace + lead).
	cs := fake.NewClientset(node("n1"), pod("app", "db-0", "n1"), pod("kube-system", "dns", "n1", critical(SystemNodeCritical), grace(1)))
	api := &evictionAPI{blocked: map[string]bool{"app/db-0": true}}
	api.install(cs)
	d := newDrainer(t, cs, Options{CriticalLead: 200 * time.Millisecond})
	res, err := d.Drain(t.Context(), "n1", time.Now().Add(1500*time.Millisecond), "spot")
	if err != nil {
		t.Fatal(err)
	}
	if got := api.evicted(); !slices.Equal(got, []string{"kube-system/dns"}) {
		t.Fatalf("evicted %v", got)
	}
	if res.Count(OutcomeBlocked) != 1 || res.Count(OutcomeEvicted) != 1 {
		t.Fatalf("%+v", res.Pods)
	}
}

func TestDrainMissingNodeIsAnError(t *testing.T) {
	d := newDrainer(t, fake.NewClientset(), Options{})
	if _, err := d.Drain(t.Context(), "nope", time.Now().Add(time.Second), "spot"); !apierrors.IsNotFound(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestDrainCallerCancel(t *testing.T) {
	cs := fake.NewClientset(node("n1"), pod("app", "db-0", "n1"))
	api := &evictionAPI{blocked: map[string]bool{"app/db-0": true}}
	api.install(cs)
	d := newDrainer(t, cs, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	res, err := d.Drain(ctx, "n1", time.Now().Add(time.Hour), "spot")
	if err == nil || res.Complete {
		t.Fatalf("cancelled drain: err=%v complete=%v", err, res.Complete)
	}
}

func TestClassify(t *testing.T) {
	prio := int32(2000001000)
	cases := []struct {
		pod         *corev1.Pod
		evict, crit bool
		skip        string
	}{
		{pod("a", "p", "n"), true, false, ""},
		{pod("a", "p", "n", critical(SystemNodeCritical)), true, true, ""},
		{pod("a", "p", "n", func(p *corev1.Pod) { p.Spec.Priority = &prio }), true, true, ""},
		{pod("a", "p", "n", daemonSet()), false, false, "daemonset"},
		{pod("a", "p", "n", mirror()), false, false, "mirror"},
		{pod("a", "p", "n", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }), false, false, "terminal"},
	}
	for i, c := range cases {
		e, cr, s := Classify(c.pod)
		if e != c.evict || cr != c.crit || s != c.skip {
			t.Errorf("case %d: got %v %v %q", i, e, cr, s)
		}
	}
}

func TestSanitizeLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"spot": "spot", "spot interruption!": "spot-interruption", "--x--": "x", strings.Repeat("a", 80): strings.Repeat("a", 63),
	} {
		if got := sanitizeLabelValue(in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

func hasTaint(n *corev1.Node, key, value string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Value == value && t.Effect == corev1.TaintEffectNoSchedule {
			return true
		}
	}
	return false
}

func eventReasons(t *testing.T, cs *fake.Clientset) []string {
	t.Helper()
	evs, err := cs.CoreV1().Events("").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs.Items {
		out = append(out, e.Reason)
	}
	return out
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

type recordingObserver struct {
	mu      sync.Mutex
	codes   map[int]int
	evicted map[string]int
}

func (o *recordingObserver) EvictionRequest(code int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.codes[code]++
}

func (o *recordingObserver) PodEvicted(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.evicted[reason]++
}

// The Observer hears each eviction request's status code and each accepted
// eviction with the drain's reason; a dry run tells it nothing.
func TestDrainObserverHearsEvictionAnswers(t *testing.T) {
	cs := fake.NewClientset(node("n1"), pod("app", "db-0", "n1"), pod("app", "web", "n1"), pod("app", "api", "n1"))
	api := &evictionAPI{blocked: map[string]bool{"app/db-0": true}}
	api.install(cs)
	obs := &recordingObserver{codes: map[int]int{}, evicted: map[string]int{}}
	d := newDrainer(t, cs, Options{Observer: obs})
	if _, err := d.Drain(t.Context(), "n1", time.Now().Add(300*time.Millisecond), "Underutilized"); err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	if obs.codes[200] != 2 || obs.codes[429] < 2 || obs.evicted["Underutilized"] != 2 || len(obs.evicted) != 1 {
		t.Errorf("codes %v, evicted %v; want 2×200, ≥2×429 (retried), 2 evicted for Underutilized", obs.codes, obs.evicted)
	}
	obs.mu.Unlock()

	cs2 := fake.NewClientset(node("n2"), pod("app", "web", "n2"))
	(&evictionAPI{}).install(cs2)
	dry := &recordingObserver{codes: map[int]int{}, evicted: map[string]int{}}
	if _, err := newDrainer(t, cs2, Options{Observer: dry, DryRun: true}).Drain(t.Context(), "n2", time.Now().Add(300*time.Millisecond), "x"); err != nil {
		t.Fatal(err)
	}
	if len(dry.codes) != 0 || len(dry.evicted) != 0 {
		t.Errorf("dry run observed %v %v", dry.codes, dry.evicted)
	}
}
