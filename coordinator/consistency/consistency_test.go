package consistency

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

func claim(name, provider string, memCapacity string) karpv1.NodeClaim {
	c := karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)}}
	c.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}
	c.Status.ProviderID = provider
	c.Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse(memCapacity),
		corev1.ResourcePods: resource.MustParse("29")}
	c.SetTrue(karpv1.ConditionTypeInitialized, "Initialized", "")
	return c
}

func nodeFor(name, provider, mem string) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{ProviderID: provider},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse(mem)}}}
}

func TestIssuesNodeShape(t *testing.T) {
	c := claim("a", "aws:///us-east-1a/i-1", "8Gi")
	// 7.5 GiB of 8 is 93.75 %: consistent (kubelet reports less than the type).
	if got := Issues(&c, ptr(nodeFor("n", "", "7680Mi"))); len(got) != 0 {
		t.Errorf("93.75%% of memory flagged: %v", got)
	}
	got := Issues(&c, ptr(nodeFor("n", "", "4Gi")))
	if len(got) != 1 || got[0] != "expected 8Gi of resource memory, but found 4Gi (50.0% of expected)" {
		t.Errorf("issues %q", got)
	}
	// pods is in the capacity but not requested: not compared.
	if got := Issues(&c, ptr(nodeFor("n", "", "8Gi"))); len(got) != 0 {
		t.Errorf("unrequested resource compared: %v", got)
	}
	if Issues(nil, nil) != nil {
		t.Error("nil input")
	}
}

func ptr[T any](v T) *T { return &v }

func TestPlanSkipsAndRechecks(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	small, ok := claim("small", "p-small", "8Gi"), claim("ok", "p-ok", "8Gi")
	notInit := claim("init", "p-init", "8Gi")
	notInit.Status.Conditions = nil
	deleting := claim("del", "p-del", "8Gi")
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	twice := claim("twice", "p-twice", "8Gi")
	nodes := []corev1.Node{nodeFor("n1", "p-small", "2Gi"), nodeFor("n2", "p-ok", "8Gi"), nodeFor("n3", "p-init", "1Gi"),
		nodeFor("n4", "p-del", "1Gi"), nodeFor("n5", "p-twice", "1Gi"), nodeFor("n6", "p-twice", "1Gi")}
	last := map[types.UID]time.Time{}
	got := Plan([]karpv1.NodeClaim{small, ok, notInit, deleting, twice}, nodes, last, t0)
	if len(got) != 2 || got[0].NodeClaim != "ok" || got[1].NodeClaim != "small" {
		t.Fatalf("findings %+v, want ok and small only", got)
	}
	if got[0].Condition != metav1.ConditionTrue || len(got[0].Issues) != 0 {
		t.Errorf("ok: %+v", got[0])
	}
	if got[1].Condition != metav1.ConditionFalse || len(got[1].Issues) != 1 {
		t.Errorf("small: %+v", got[1])
	}
	for _, f := range got {
		last[f.UID] = t0
	}
	if again := Plan([]karpv1.NodeClaim{small, ok}, nodes, last, t0.Add(ScanPeriod-time.Second)); len(again) != 0 {
		t.Errorf("rechecked within the scan period: %+v", again)
	}
	// Already marked: the issue is reported again, the condition not rewritten.
	small.SetFalse(karpv1.ConditionTypeConsistentStateFound, ReasonFailed, messageFailed)
	again := Plan([]karpv1.NodeClaim{small}, nodes, last, t0.Add(ScanPeriod))
	if len(again) != 1 || len(again[0].Issues) != 1 || again[0].Condition != "" {
		t.Errorf("after the scan period: %+v", again)
	}
}

func TestControllerRecordsEventAndCondition(t *testing.T) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := karpv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	small, ok := claim("small", "p-small", "8Gi"), claim("ok", "p-ok", "8Gi")
	n1, n2 := nodeFor("n1", "p-small", "2Gi"), nodeFor("n2", "p-ok", "8Gi")
	c := fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&karpv1.NodeClaim{}).
		WithObjects(&small, &ok, &n1, &n2).Build()
	rec := record.NewFakeRecorder(10)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctl := &Controller{C: c, Events: rec, Now: func() time.Time { return t0 }}
	if err := ctl.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-rec.Events:
		if !strings.HasPrefix(e, "Warning FailedConsistencyCheck expected 8Gi of resource memory, but found 2Gi") {
			t.Errorf("event %q", e)
		}
	default:
		t.Fatal("no FailedConsistencyCheck event")
	}
	select {
	case e := <-rec.Events:
		t.Errorf("unexpected event %q", e)
	default:
	}
	for name, want := range map[string]metav1.ConditionStatus{"small": metav1.ConditionFalse, "ok": metav1.ConditionTrue} {
		var got karpv1.NodeClaim
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, &got); err != nil {
			t.Fatal(err)
		}
		cond := got.GetCondition(karpv1.ConditionTypeConsistentStateFound)
		if cond == nil || cond.Status != want {
			t.Errorf("%s: ConsistentStateFound %v, want %s", name, cond, want)
		}
	}
}
