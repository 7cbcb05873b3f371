package provisioning

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stypes "k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
)

type fakeLauncher struct {
	mu      sync.Mutex
	claims  []*karpv1.NodeClaim
	options [][]cloud.LaunchOption
	fail    error
}

func (f *fakeLauncher) Launch(_ context.Context, nc *karpv1.NodeClaim, opts []cloud.LaunchOption) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.claims = append(f.claims, nc)
	f.options = append(f.options, opts)
	return nil
}

type staticTypes []*cloud.InstanceType

func (s staticTypes) InstanceTypes(context.Context) ([]*cloud.InstanceType, error) { return s, nil }

func testType(name string, cpu, memGi int64, price float64) *cloud.InstanceType {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(cpu, resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memGi<<30, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
	it := &cloud.InstanceType{Name: name, Allocatable: res, Capacity: res, Labels: map[string]string{
		corev1.LabelInstanceTypeStable: name, corev1.LabelArchStable: "amd64", corev1.LabelOSStable: "linux"}}
	for _, z := range []string{"us-east-1a", "us-east-1b"} {
		it.Offerings = append(it.Offerings,
			cloud.Offering{Zone: z, CapacityType: cloud.CapacityTypeOnDemand, Price: price, Available: true},
			cloud.Offering{Zone: z, CapacityType: cloud.CapacityTypeSpot, Price: price / 3, Available: true})
	}
	return it
}

func pendingPod(name, cpu string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: k8stypes.UID("uid-" + name)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("256Mi")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}},
	}
}

func nodePool(name string, limits corev1.ResourceList, reqs ...karpv1.NodeSelectorRequirementWithMinValues) *karpv1.NodePool {
	return &karpv1.NodePool{
		TypeMeta:   metav1.TypeMeta{APIVersion: "karpenter.sh/v1", Kind: "NodePool"},
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: "pool-uid"},
		Spec: karpv1.NodePoolSpec{
			Limits: karpv1.Limits(limits),
			Template: karpv1.NodeClaimTemplate{
				ObjectMeta: karpv1.ObjectMeta{Labels: map[string]string{"team": "a"}},
				Spec: karpv1.NodeClaimTemplateSpec{
					Requirements:  reqs,
					NodeClassRef:  &karpv1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
					StartupTaints: []corev1.Taint{{Key: "cni-not-ready", Effect: corev1.TaintEffectNoSchedule}},
				},
			},
		},
	}
}

func nodeClass(name string) *awsv1.EC2NodeClass {
	return &awsv1.EC2NodeClass{TypeMeta: metav1.TypeMeta{APIVersion: "karpenter.k8s.aws/v1", Kind: "EC2NodeClass"}, ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func toUnstructured(t *testing.T, objs ...runtime.Object) []runtime.Object {
	t.Helper()
	var out []runtime.Object
	for _, o := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &unstructuredObj{Object: m})
	}
	return out
}

func newTestController(t *testing.T, kubeObjs []runtime.Object, crds []runtime.Object, its []*cloud.InstanceType, l Launcher, startInformers bool) (*Controller, *record.FakeRecorder) {
	t.Helper()
	// An empty scheme: the fake dynamic client then keeps everything
	// unstructured, as the real one does.
	sch := runtime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(sch, map[schema.GroupVersionResource]string{
		NodePoolsGVR: "NodePoolList", NodeClaimsGVR: "NodeClaimList", EC2NodeClassesGVR: "EC2NodeClassList",
	}, toUnstructured(t, crds...)...)
	rec := record.NewFakeRecorder(100)
	c, err := New(Config{Kube: kubefake.NewClientset(kubeObjs...), Dynamic: dyn, InstanceTypes: staticTypes(its), Launcher: l,
		Recorder: rec, Region: "us-east-1", Names: SequentialNames()})
	if err != nil {
		t.Fatal(err)
	}
	if !startInformers {
		return c, rec
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c.kubeInformers.Start(ctx.Done())
	c.dynInformers.Start(ctx.Done())
	c.kubeInformers.WaitForCacheSync(ctx.Done())
	c.dynInformers.WaitForCacheSync(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.podInf.HasSynced) {
		t.Fatal("no sync")
	}
	return c, rec
}

func TestControllerLaunchesAndExplains(t *testing.T) {
	its := []*cloud.InstanceType{testType("m.large", 2, 8, 0.1), testType("m.xlarge", 4, 16, 0.2)}
	kube := []runtime.Object{pendingPod("a", "1"), pendingPod("b", "1"), pendingPod("c", "1"), pendingPod("huge", "64")}
	bound := pendingPod("running", "1")
	bound.Spec.NodeName = "elsewhere"
	kube = append(kube, bound)
	l := &fakeLauncher{}
	c, rec := newTestController(t, kube, []runtime.Object{
		nodePool("default", nil, karpv1.NodeSelectorRequirementWithMinValues{Key: karpv1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"spot", "on-demand"}}),
		nodeClass("default"),
	}, its, l, true)
	d, err := c.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(l.claims) != 1 {
		t.Fatalf("launched %d claims, want 1 (three 1-cpu pods fit one 4-cpu node)", len(l.claims))
	}
	nc := l.claims[0]
	if nc.Name != "default-00001" || nc.Labels[karpv1.NodePoolLabelKey] != "default" || nc.Labels["team"] != "a" {
		t.Errorf("claim metadata: name %q labels %v", nc.Name, nc.Labels)
	}
	if len(nc.OwnerReferences) != 1 || nc.OwnerReferences[0].Name != "default" {
		t.Errorf("owner references: %v", nc.OwnerReferences)
	}
	if len(nc.Spec.StartupTaints) != 1 || nc.Spec.NodeClassRef == nil || nc.Spec.NodeClassRef.Name != "default" {
		t.Errorf("template not applied: %+v", nc.Spec)
	}
	var typesReq []string
	for _, r := range nc.Spec.Requirements {
		if r.Key == corev1.LabelInstanceTypeStable {
			typesReq = r.Values
		}
	}
	if len(typesReq) != 1 || typesReq[0] != "m.xlarge" {
		t.Errorf("instance types %v, want [m.xlarge]", typesReq)
	}
	if opts := l.options[0]; len(opts) == 0 || opts[0].CapacityType != cloud.CapacityTypeSpot {
		t.Errorf("options should start with spot: %v", opts)
	}
	if len(d.Unschedulable) != 1 || d.Unschedulable[0].PodName != "default/huge" {
		t.Fatalf("unschedulable: %+v", d.Unschedulable)
	}
	found, nominated := false, 0
	for len(rec.Events) > 0 {
		e := <-rec.Events
		if strings.Contains(e, "FailedScheduling") && strings.Contains(e, "cpu") && strings.Contains(e, "default") {
			found = true
		}
		if strings.Contains(e, "Nominated") && strings.Contains(e, "nodeclaim/default-00001") {
			nominated++
		}
	}
	if !found {
		t.Error("no FailedScheduling event naming the pool and the resource")
	}
	if nominated != 3 {
		t.Errorf("first pass: %d Nominated events for the new claim, want 3", nominated)
	}
	// The next pass must not launch again for the same still-pending pods:
	// the launched claim is in flight.
	if _, err := c.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(l.claims) != 1 {
		t.Fatalf("second pass launched again: %d claims", len(l.claims))
	}
	// The pods still pending are placed on the in-flight claim; they were
	// nominated to it a moment ago, and Karpenter dedupes Nominated per pod
	// for 2 minutes, so neither this pass nor the next repeats it (the
	// in-flight and existing-node nominations themselves are asserted on
	// the real API server in TestEndToEndScaleUp).
	for pass := 2; pass <= 3; pass++ {
		n := 0
		for len(rec.Events) > 0 {
			if e := <-rec.Events; strings.Contains(e, "Nominated") || strings.Contains(e, "FailedScheduling") {
				n++
			}
		}
		if n != 0 {
			t.Fatalf("pass %d repeated %d Nominated/FailedScheduling events within the dedupe window", pass, n)
		}
		if _, err := c.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestControllerSkipsPoolWithoutNodeClass(t *testing.T) {
	l := &fakeLauncher{}
	c, _ := newTestController(t, []runtime.Object{pendingPod("a", "1")}, []runtime.Object{nodePool("default", nil)},
		[]*cloud.InstanceType{testType("m.large", 2, 8, 0.1)}, l, true)
	d, err := c.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(l.claims) != 0 || len(d.Unschedulable) != 1 || !strings.Contains(d.Unschedulable[0].Message, "no NodePool") {
		t.Fatalf("claims %d, unschedulable %+v", len(l.claims), d.Unschedulable)
	}
}

func TestControllerReportsLaunchErrors(t *testing.T) {
	l := &fakeLauncher{fail: errors.New("boom")}
	c, _ := newTestController(t, []runtime.Object{pendingPod("a", "1")}, []runtime.Object{nodePool("default", nil), nodeClass("default")},
		[]*cloud.InstanceType{testType("m.large", 2, 8, 0.1)}, l, true)
	if _, err := c.Reconcile(context.Background()); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("want launch error, got %v", err)
	}
}

func TestPlanReportsSpotFallback(t *testing.T) {
	it := testType("m.large", 2, 8, 0.1)
	for i := range it.Offerings {
		if it.Offerings[i].CapacityType == cloud.CapacityTypeSpot {
			it.Offerings[i].Available = false
		}
	}
	np := nodePool("default", nil, karpv1.NodeSelectorRequirementWithMinValues{Key: karpv1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"spot", "on-demand"}})
	snap, _ := Build(Inputs{Pods: []*corev1.Pod{pendingPod("a", "1")}, NodePools: []*karpv1.NodePool{np}, InstanceTypes: []*cloud.InstanceType{it}}, nil)
	d := Plan(snap, PlanOptions{Names: SequentialNames()})
	if len(d.Launches) != 1 || d.Launches[0].Options[0].CapacityType != cloud.CapacityTypeOnDemand || len(d.SpotFallbacks) != 1 {
		t.Fatalf("launches %d fallbacks %v", len(d.Launches), d.SpotFallbacks)
	}
}

func TestControllerRunProvisionsPendingPods(t *testing.T) {
	l := &fakeLauncher{}
	c, _ := newTestController(t, []runtime.Object{pendingPod("a", "1")}, []runtime.Object{nodePool("default", nil), nodeClass("default")},
		[]*cloud.InstanceType{testType("m.large", 2, 8, 0.1)}, l, false)
	c.batcher = NewBatcher(time.Millisecond, 5*time.Millisecond, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for i := 0; i < 5000; i++ {
		l.mu.Lock()
		n := len(l.claims)
		l.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(l.claims) != 1 {
		t.Fatalf("Run launched %d claims, want 1", len(l.claims))
	}
}

func TestControllerForgetsUnseenLaunchesAfterGrace(t *testing.T) {
	l := &fakeLauncher{}
	c, _ := newTestController(t, []runtime.Object{pendingPod("a", "1")}, []runtime.Object{nodePool("default", nil), nodeClass("default")},
		[]*cloud.InstanceType{testType("m.large", 2, 8, 0.1)}, l, true)
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c.cfg.Clock = clk
	if _, err := c.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The fake launcher never creates the claim in Kubernetes: within the
	// grace period it still counts as in flight...
	if _, err := c.Reconcile(context.Background()); err != nil || len(l.claims) != 1 {
		t.Fatalf("relaunched within grace: %d claims (%v)", len(l.claims), err)
	}
	// ...after it, the pod gets a new claim.
	clk.Step(launchedGrace + time.Second)
	if _, err := c.Reconcile(context.Background()); err != nil || len(l.claims) != 2 {
		t.Fatalf("after grace: %d claims (%v)", len(l.claims), err)
	}
}

// TestNominatedSeesEveryNomination: Config.Nominated hears every pod of
// every pass, including the passes whose Nominated Events Karpenter's
// dedupe suppresses, and tells a claim the pass launches from an
// in-flight one.
func TestNominatedSeesEveryNomination(t *testing.T) {
	its := []*cloud.InstanceType{testType("m.xlarge", 4, 16, 0.2)}
	l := &fakeLauncher{}
	c, _ := newTestController(t, []runtime.Object{pendingPod("a", "1"), pendingPod("b", "1"), pendingPod("c", "1")},
		[]runtime.Object{nodePool("default", nil), nodeClass("default")}, its, l, true)
	var got []Nomination
	c.cfg.Nominated = func(n Nomination) { got = append(got, n) }
	for pass := 1; pass <= 2; pass++ {
		got = nil
		if _, err := c.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("pass %d: %d nominations, want 3", pass, len(got))
		}
		for _, n := range got {
			if n.NodeClaim != "default-00001" || n.Node != "" || n.New != (pass == 1) || n.Pass.IsZero() || !n.Pass.Equal(got[0].Pass) {
				t.Errorf("pass %d: %s nominated %+v", pass, n.Pod.Name, n)
			}
		}
	}
	if len(l.claims) != 1 {
		t.Fatalf("%d claims launched, want 1", len(l.claims))
	}
}
