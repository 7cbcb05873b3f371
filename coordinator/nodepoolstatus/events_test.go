package nodepoolstatus

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/kubeclient"
)

// countingRecorder passes Events on to the real recorder and counts them,
// so the test can tell one Event per problem from one per pass.
type countingRecorder struct {
	next record.EventRecorder
	mu   sync.Mutex
	n    map[string]int
}

func (c *countingRecorder) Event(o runtime.Object, typ, reason, msg string) {
	c.mu.Lock()
	c.n[reason]++
	c.mu.Unlock()
	c.next.Event(o, typ, reason, msg)
}

// A budget whose schedule is tab-separated passes the API server; the
// controller must say so on the NodePool twice over: ValidationSucceeded=False
// and one Warning Event InvalidBudget naming the budget and the reason,
// not one per pass.
func TestInvalidBudgetGetsAWarningEventOnce(t *testing.T) {
	cp := controlplane.StartForTest(t)
	ctx := context.Background()
	kc, err := kubeclient.New(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	np := pool("tabbed", "default")
	good, bad := "0 9 * * 1-5", "CRON_TZ=UTC\t0\t9\t*\t*\t1-5"
	np.Spec.Disruption.Budgets = []karpv1.Budget{
		{Nodes: "10%"},
		{Nodes: "0", Schedule: &good, Duration: &metav1.Duration{Duration: time.Hour}},
		{Nodes: "0", Schedule: &bad, Duration: &metav1.Duration{Duration: 8 * time.Hour}},
	}
	if err := kc.Create(ctx, np); err != nil {
		t.Fatalf("the API server refused the tab-separated schedule (the CRD must let it through for this test): %v", err)
	}
	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer bc.Shutdown()
	rec := &countingRecorder{next: bc.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "dovetail-nodepool-status"}), n: map[string]int{}}
	ctl, err := New(Config{Client: kc, Interval: time.Hour, Events: rec})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := ctl.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := &karpv1.NodePool{}
	if err := kc.Get(ctx, client.ObjectKey{Name: "tabbed"}, got); err != nil {
		t.Fatal(err)
	}
	if c := got.GetCondition(karpv1.ConditionTypeValidationSucceeded); c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("ValidationSucceeded = %+v", c)
	}
	if n := rec.n[karpenterevents.InvalidBudget]; n != 1 {
		t.Fatalf("%d InvalidBudget Events in 3 passes, want 1", n)
	}
	var ev *corev1.Event
	deadline := time.Now().Add(10 * time.Second)
	for ev == nil && time.Now().Before(deadline) {
		list, err := kube.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			e := &list.Items[i]
			if e.Reason == karpenterevents.InvalidBudget && e.InvolvedObject.Kind == "NodePool" && e.InvolvedObject.Name == "tabbed" {
				ev = e
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ev == nil {
		t.Fatal("no InvalidBudget Event reached the API server")
	}
	if ev.Type != corev1.EventTypeWarning || ev.InvolvedObject.UID != got.UID || !strings.Contains(ev.Message, "disruption budget 2") || !strings.Contains(ev.Message, "CRON_TZ=UTC") {
		t.Fatalf("Event = %s %s uid=%s %q", ev.Type, ev.Reason, ev.InvolvedObject.UID, ev.Message)
	}
}
