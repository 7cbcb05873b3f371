package wiring

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
	"github.com/dovetail-dev/dovetail/kubeclient"
)

type alwaysLeader struct{ notify chan bool }

func (a alwaysLeader) LeaderNotify() <-chan bool   { return a.notify }
func (alwaysLeader) Barrier(context.Context) error { return nil }
func (alwaysLeader) Term() uint64                  { return 4 }
func (alwaysLeader) IsLeader() bool                { return true }

// A component that panics while working on a NodePool: the leader loop
// survives, restarts it, and the NodePool gets a Warning Event
// LeaderComponentPanic in the API server naming the component.
func TestComponentPanicOnANodePoolBecomesAWarningEvent(t *testing.T) {
	cp := controlplane.StartForTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	crc, err := kubeclient.New(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	np := &karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "crashy"}, Spec: karpv1.NodePoolSpec{Template: karpv1.NodeClaimTemplate{Spec: karpv1.NodeClaimTemplateSpec{
		NodeClassRef: &karpv1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
		Requirements: []karpv1.NodeSelectorRequirementWithMinValues{{Key: karpv1.CapacityTypeLabelKey, Operator: "In", Values: []string{"on-demand"}}},
	}}}}
	if err := crc.Create(ctx, np); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	loop := &leader.Loop{
		Raft: alwaysLeader{notify: make(chan bool)}, Log: slog.Default(), CheckInterval: 10 * time.Millisecond,
		OnPanic: panicEvents(kube, crc, slog.Default(), time.Now),
		Components: []leader.Named{{Name: "nodepool-status", Component: leader.Func(func(ctx context.Context, _ uint64) error {
			if runs.Add(1) == 1 {
				_, done := leader.WorkingOn(ctx, leader.Object{Kind: "NodePool", Name: "crashy"})
				defer done()
				panic("cron: unexpected tab")
			}
			<-ctx.Done()
			return nil
		})}},
	}
	go func() { _ = loop.Run(ctx) }()

	var ev *corev1.Event
	deadline := time.Now().Add(15 * time.Second)
	for ev == nil && time.Now().Before(deadline) {
		list, err := kube.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			if e := &list.Items[i]; e.Reason == karpenterevents.LeaderComponentPanic {
				ev = e
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ev == nil {
		t.Fatal("no LeaderComponentPanic Event")
	}
	if err := crc.Get(ctx, client.ObjectKey{Name: "crashy"}, np); err != nil {
		t.Fatal(err)
	}
	if ev.Type != corev1.EventTypeWarning || ev.InvolvedObject.Kind != "NodePool" || ev.InvolvedObject.UID != np.UID ||
		!strings.Contains(ev.Message, "nodepool-status") || !strings.Contains(ev.Message, "cron: unexpected tab") {
		t.Fatalf("Event = %+v", ev)
	}
	deadline = time.Now().Add(10 * time.Second)
	for runs.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("component not restarted after its panic")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
