package devcluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/controlplane/manifest"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
)

// The demo's manifests decode into the API types the coordinators read,
// with what the story depends on: spot allowed, a short consolidateAfter,
// empty nodes unbudgeted and a two-node budget otherwise, pods pinned to
// the pool and starting at zero.
func TestDemoManifests(t *testing.T) {
	objs, err := manifest.Decode("demo", []byte(demoManifests))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0].GetKind() != "NodePool" || objs[1].GetKind() != "Deployment" {
		t.Fatalf("want a NodePool and a Deployment, got %d objects", len(objs))
	}
	raw, err := objs[0].MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var np karpv1.NodePool
	if err := yaml.UnmarshalStrict(raw, &np); err != nil {
		t.Fatalf("NodePool does not decode strictly: %v", err)
	}
	if np.Name != demoPool {
		t.Errorf("pool name %q", np.Name)
	}
	spot := false
	for _, r := range np.Spec.Template.Spec.Requirements {
		if r.Key == karpv1.CapacityTypeLabelKey {
			for _, v := range r.Values {
				spot = spot || v == "spot"
			}
		}
	}
	if !spot {
		t.Error("the demo pool must allow spot: step (b) interrupts a spot instance")
	}
	if ca := np.Spec.Disruption.ConsolidateAfter; ca.Duration == nil || *ca.Duration != 10*time.Second {
		t.Errorf("consolidateAfter %+v, want 10s", ca)
	}
	if len(np.Spec.Disruption.Budgets) != 2 || np.Spec.Disruption.Budgets[1].Nodes != "2" || len(np.Spec.Disruption.Budgets[1].Reasons) != 0 {
		t.Errorf("budgets %+v: want 100%% for Empty and %d otherwise", np.Spec.Disruption.Budgets, demoBudget)
	}
	dep := objs[1]
	sel, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "spec", "nodeSelector")
	if sel[karpv1.NodePoolLabelKey] != demoPool {
		t.Errorf("deployment nodeSelector %v does not pin the demo pool", sel)
	}
	if n, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); n != 0 {
		t.Errorf("deployment starts at %d replicas", n)
	}
	labels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
	if dep.GetName() != demoDeployment || labels[demoAppLabel] != demoDeployment {
		t.Errorf("deployment %s labels %v do not match what the demo watches", dep.GetName(), labels)
	}
}

func readyNode(name string, unschedulable bool, taints ...string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{karpv1.NodePoolLabelKey: demoPool}},
		Spec:   corev1.NodeSpec{Unschedulable: unschedulable},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	for _, k := range taints {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: k, Effect: corev1.TaintEffectNoSchedule})
	}
	return n
}

func demoPod(name, node string, phase corev1.PodPhase) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: demoNamespace, Labels: map[string]string{demoAppLabel: demoDeployment}},
		Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
}

func demoInstance(id, dns, capType, state, ami string) ec2sim.InstanceInfo {
	return ec2sim.InstanceInfo{ID: id, PrivateDNS: dns, CapacityType: capType, State: state, ImageID: ami,
		Tags: map[string]string{cloud.TagNodePool: demoPool}}
}

func claim(name string, replacement bool) unstructured.Unstructured {
	u := unstructured.Unstructured{}
	u.SetName(name)
	u.SetLabels(map[string]string{karpv1.NodePoolLabelKey: demoPool})
	if replacement {
		u.SetAnnotations(map[string]string{disruptionKeyAnnotation: "k"})
	}
	return u
}

// observeDemo counts only the demo pool's instances, nodes and pods, finds
// empty nodes and replacements, and picks the fullest schedulable spot node
// to interrupt.
func TestObserveDemo(t *testing.T) {
	instances := []ec2sim.InstanceInfo{
		demoInstance("i-1", "n1", "spot", "running", "ami-old"),
		demoInstance("i-2", "n2", "spot", "running", "ami-old"),
		demoInstance("i-3", "n3", "on-demand", "running", "ami-new"),
		demoInstance("i-4", "n4", "spot", "running", "ami-new"), // empty
		demoInstance("i-5", "n5", "spot", "shutting-down", "ami-old"),
		{ID: "i-9", PrivateDNS: "other", CapacityType: "spot", State: "running", Tags: map[string]string{cloud.TagNodePool: "general-purpose"}},
	}
	other := readyNode("other", false)
	other.Labels[karpv1.NodePoolLabelKey] = "general-purpose"
	nodes := []corev1.Node{readyNode("n1", false), readyNode("n2", false), readyNode("n3", false), readyNode("n4", true, "karpenter.sh/disrupted"), other}
	nodes[3].Status.Conditions[0].Status = corev1.ConditionFalse
	pods := []corev1.Pod{
		demoPod("a", "n1", corev1.PodRunning), demoPod("b", "n2", corev1.PodRunning), demoPod("c", "n2", corev1.PodRunning),
		demoPod("d", "n3", corev1.PodRunning), demoPod("e", "n3", corev1.PodRunning), demoPod("f", "n3", corev1.PodRunning),
		demoPod("g", "", corev1.PodPending),
		{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"app": "else"}}, Spec: corev1.PodSpec{NodeName: "n4"}},
	}
	s := observeDemo(instances, nodes, pods, []unstructured.Unstructured{claim("demo-a", false), claim("demo-b", true), claim("demo-c", false), claim("demo-d", false)})
	if s.Claims != 4 || len(s.Replacements) != 1 || !s.Replacements["demo-b"] {
		t.Errorf("claims %d replacements %v", s.Claims, s.Replacements)
	}
	if s.Instances != 4 || s.Spot != 3 || s.ShuttingDown != 1 {
		t.Errorf("instances %d spot %d shutting down %d", s.Instances, s.Spot, s.ShuttingDown)
	}
	if s.Nodes != 4 || s.Ready != 3 || s.Cordons != 1 {
		t.Errorf("nodes %d ready %d cordoned %d", s.Nodes, s.Ready, s.Cordons)
	}
	if s.Pods != 7 || s.PodsRunning != 6 || s.PodsOn["n3"] != 3 || s.PodsOn["n4"] != 0 {
		t.Errorf("pods %d running %d on %v", s.Pods, s.PodsRunning, s.PodsOn)
	}
	if strings.Join(s.EmptyNodes, ",") != "n4" {
		t.Errorf("empty nodes %v, want n4", s.EmptyNodes)
	}
	if got := s.onAMIs(map[string]bool{"ami-new": true}); got != 2 {
		t.Errorf("%d instances on the new AMI, want 2", got)
	}
	// n3 has the most pods but is on-demand; n4 is cordoned and empty.
	if v, ok := s.pickSpotVictim(); !ok || v.ID != "i-2" {
		t.Errorf("victim %v %v, want i-2 (spot, most pods)", v.ID, ok)
	}
	want := "nodeclaims 4 · instances 4 (3 spot) · nodes 3/4 ready · pods 6/7 running · 1 cordoned · 1 shutting down"
	if got := s.line(); got != want {
		t.Errorf("line:\n got %s\nwant %s", got, want)
	}

	// No spot node with pods: nothing to interrupt, said so rather than guessed.
	s = observeDemo(instances[2:4], nodes[2:4], pods[3:6], nil)
	if v, ok := s.pickSpotVictim(); ok {
		t.Errorf("picked %s although no schedulable spot node has pods", v.ID)
	}
}

// The whole demo on a real dev cluster (control plane, simulator, three
// coordinator replicas built from the tree, agents): about 90 s on a
// loaded 2-core machine, so it runs only with DOVETAIL_E2E_DEMO=1. Steps
// (a), (b), (r) and (c) must succeed; (d) is played but only logged (it needs EC2NodeClass
// status.amis, which nothing in the tree writes yet).
// TestDemoEventDigest: the demo's events digest keeps Dovetail's Events
// under Karpenter's reasons since the step began, one row per reason and
// kind with the total count and the latest object and message.
func TestDemoEventDigest(t *testing.T) {
	t1 := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	ev := func(reason, kind, name, component string, at time.Time, count int32) corev1.Event {
		return corev1.Event{Reason: reason, Type: corev1.EventTypeNormal, Count: count, Message: reason + " on " + name,
			InvolvedObject: corev1.ObjectReference{Kind: kind, Name: name}, Source: corev1.EventSource{Component: component},
			LastTimestamp: metav1.NewTime(at)}
	}
	rows := karpenterEvents([]corev1.Event{
		ev("Nominated", "Pod", "web-1", "dovetail-provisioning", t1.Add(time.Second), 1),
		ev("Nominated", "Pod", "web-2", "dovetail-provisioning", t1.Add(3*time.Second), 2),
		ev("Nominated", "Pod", "old", "dovetail-provisioning", t1.Add(-time.Minute), 1),     // before the step
		ev("FailedScheduling", "Pod", "web-1", "default-scheduler", t1.Add(time.Second), 1), // kube-scheduler's
		ev("Drained", "Node", "n1", "dovetail-agent", t1.Add(2*time.Second), 1),             // Dovetail's own reason
		ev("DisruptionTerminating", "Node", "n1", "dovetail-disruption", t1.Add(2*time.Second), 1),
	}, t1)
	if len(rows) != 2 {
		t.Fatalf("rows %+v, want DisruptionTerminating and Nominated", rows)
	}
	if r := rows[0]; r.Reason != "DisruptionTerminating" || r.Object != "node/n1" || r.Count != 1 {
		t.Errorf("first row %+v", r)
	}
	if r := rows[1]; r.Reason != "Nominated" || r.Count != 3 || r.Object != "pod/web-2" || r.Message != "Nominated on web-2" {
		t.Errorf("second row %+v", r)
	}
}

func TestDemoEndToEnd(t *testing.T) {
	if os.Getenv("DOVETAIL_E2E_DEMO") != "1" {
		t.Skip("set DOVETAIL_E2E_DEMO=1 to run the whole demo (~90 s)")
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := controlplane.BinariesPresent(filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	demo := &Demo{Replicas: 20, ScaleDownTo: 4, StepTimeout: 3 * time.Minute}
	var out bytes.Buffer
	err = Run(ctx, Config{
		StateDir:     t.TempDir(),
		Out:          &out,
		SummaryEvery: -1,
		Parts:        []Part{&EC2Sim{}, &Coordinators{Env: DemoCoordinatorEnv}, &Agents{}},
		Demo:         demo,
		DemoDone:     cancel,
	})
	t.Log(out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := map[string]StepResult{}
	for _, r := range demo.Results {
		got[r.Step] = r
	}
	for _, step := range []string{"a", "b", "r", "c"} {
		if r, ok := got[step]; !ok || !r.OK {
			t.Errorf("step (%s) %+v", step, r)
		}
	}
	// `kubectl get events` shows Karpenter's reasons for scheduling,
	// interruption and disruption, and the demo printed them.
	for step, reasons := range map[string][]string{
		"a": {karpenterevents.Nominated},
		"b": {karpenterevents.SpotInterrupted, karpenterevents.TerminatingOnInterruption, karpenterevents.DisruptionTerminating, karpenterevents.Evicted},
		"c": {karpenterevents.ConsolidationCandidate, karpenterevents.DisruptionTerminating},
	} {
		for _, reason := range reasons {
			if got[step].Events[reason] == 0 {
				t.Errorf("step (%s): no %s Event (Events %v)", step, reason, got[step].Events)
			}
			if !strings.Contains(out.String(), " "+reason+" ") {
				t.Errorf("the demo's output does not show %s Events", reason)
			}
		}
	}
	t.Logf("step (d): %+v", got["d"])
}

// Step (r) follows a rebalance replacement through observations: it
// succeeds only when the replacement (on another offering) is Ready before
// the old node is cordoned, and the old node is emptied and gone; a cordon
// seen while the replacement is not Ready fails it.
func TestRebalanceProgress(t *testing.T) {
	victim := demoInstance("i-1", "n1", "spot", "running", "ami")
	victim.InstanceType, victim.Zone = "c6a.large", "us-east-1a"
	repl := demoInstance("i-7", "n7", "spot", "running", "ami")
	repl.InstanceType, repl.Zone = "c6a.large", "us-east-1b"
	other := demoInstance("i-2", "n2", "on-demand", "running", "ami")
	withClaim := func(c unstructured.Unstructured, node string) unstructured.Unstructured {
		if node != "" {
			_ = unstructured.SetNestedField(c.Object, node, "status", "nodeName")
		}
		return c
	}
	n7 := readyNode("n7", false)
	n7NotReady := readyNode("n7", false)
	n7NotReady.Status.Conditions[0].Status = corev1.ConditionFalse
	cordonedN1 := readyNode("n1", true, disruptedTaintKey)
	pods := func(node string, n int) []corev1.Pod {
		var out []corev1.Pod
		for i := range n {
			out = append(out, demoPod(node+"-"+string(rune('a'+i)), node, corev1.PodRunning))
		}
		return out
	}
	old := claim("demo-old", false)
	states := func(cordonBeforeReady bool) []demoState {
		launched := withClaim(claim("demo-new", true), "")
		registered := withClaim(claim("demo-new", true), "n7")
		s := []demoState{
			// the recommendation: nothing happened yet
			observeDemo([]ec2sim.InstanceInfo{victim, other}, []corev1.Node{readyNode("n1", false), readyNode("n2", false)},
				append(pods("n1", 2), pods("n2", 1)...), []unstructured.Unstructured{old}),
			// replacement NodeClaim launched
			observeDemo([]ec2sim.InstanceInfo{victim, other}, []corev1.Node{readyNode("n1", false), readyNode("n2", false)},
				append(pods("n1", 2), pods("n2", 1)...), []unstructured.Unstructured{old, launched}),
		}
		if cordonBeforeReady {
			return append(s, observeDemo([]ec2sim.InstanceInfo{victim, other, repl}, []corev1.Node{cordonedN1, readyNode("n2", false), n7NotReady},
				append(pods("n1", 2), pods("n2", 1)...), []unstructured.Unstructured{old, registered}))
		}
		return append(s,
			// replacement Ready, old node untouched
			observeDemo([]ec2sim.InstanceInfo{victim, other, repl}, []corev1.Node{readyNode("n1", false), readyNode("n2", false), n7},
				append(pods("n1", 2), pods("n2", 1)...), []unstructured.Unstructured{old, registered}),
			// old node cordoned and drained, pods Pending then Running on n7
			observeDemo([]ec2sim.InstanceInfo{victim, other, repl}, []corev1.Node{cordonedN1, readyNode("n2", false), n7},
				append(pods("n7", 2), pods("n2", 1)...), []unstructured.Unstructured{old, registered}),
			// old instance gone
			observeDemo([]ec2sim.InstanceInfo{other, repl}, []corev1.Node{readyNode("n2", false), n7},
				append(pods("n7", 2), pods("n2", 1)...), []unstructured.Unstructured{registered}),
		)
	}

	p := &rebalanceProgress{node: "n1", victim: victim, before: map[string]bool{}}
	var lines []string
	for i, s := range states(false) {
		if p.done(s, 3) {
			t.Fatalf("done at observation %d, before the sequence finished", i)
		}
		lines = append(lines, p.see(s, time.Duration(i+1)*time.Second)...)
	}
	last := states(false)[4]
	if !p.done(last, 3) || p.violation != "" {
		t.Fatalf("not done after the whole sequence: %s (lines %q)", p.missing(last, 3), lines)
	}
	if p.replacement != "demo-new" || p.replNode != "n7" || p.replaced != 2*time.Second || p.ready != 3*time.Second ||
		p.cordoned != 4*time.Second || p.drained != 4*time.Second || p.gone != 5*time.Second {
		t.Errorf("progress %+v", p)
	}
	want := []string{
		"coordinator launched replacement NodeClaim demo-new",
		"replacement demo-new Ready (node n7, c6a.large in us-east-1b, spot)",
		"coordinator tainted and cordoned n1 (its replacement is Ready): draining",
		"n1 drained (no demo pods left)",
		"instance i-1 is gone (its NodeClaim deleted)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n got %q\nwant %q", lines, want)
	}

	// Cordon, drain and deletion inside one poll interval (seen in the
	// dev cluster: Ready at +6.3 s, gone at +7.4 s): done, in order.
	p = &rebalanceProgress{node: "n1", victim: victim, before: map[string]bool{}}
	seq := states(false)
	for i, s := range []demoState{seq[0], seq[1], seq[2], seq[4]} {
		p.see(s, time.Duration(i+1)*time.Second)
	}
	if !p.done(seq[4], 3) || p.violation != "" || p.cordoned != 4*time.Second {
		t.Errorf("fast drain between polls not done: %s %+v", p.missing(seq[4], 3), p)
	}

	// Cordoned while the replacement is not Ready: a violation, said so.
	p = &rebalanceProgress{node: "n1", victim: victim, before: map[string]bool{}}
	for i, s := range states(true) {
		p.see(s, time.Duration(i+1)*time.Second)
	}
	if !strings.Contains(p.violation, "cordoned while its replacement was not Ready") {
		t.Errorf("violation %q", p.violation)
	}

	// A replacement on the recommended offering is a violation too.
	p = &rebalanceProgress{node: "n1", victim: victim, before: map[string]bool{}}
	same := repl
	same.Zone = victim.Zone
	p.see(observeDemo([]ec2sim.InstanceInfo{victim, same}, []corev1.Node{readyNode("n1", false), n7}, pods("n1", 2),
		[]unstructured.Unstructured{old, withClaim(claim("demo-new", true), "n7")}), time.Second)
	if !strings.Contains(p.violation, "recommended offering c6a.large/us-east-1a/spot") {
		t.Errorf("violation %q", p.violation)
	}
}
