package nodepoolstatus

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/kubeclient"
)

func pool(name, class string) *karpv1.NodePool {
	return &karpv1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: karpv1.NodePoolSpec{Template: karpv1.NodeClaimTemplate{Spec: karpv1.NodeClaimTemplateSpec{
			NodeClassRef: &karpv1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: class},
			Requirements: []karpv1.NodeSelectorRequirementWithMinValues{{Key: karpv1.CapacityTypeLabelKey, Operator: "In", Values: []string{"on-demand"}}},
		}}},
	}
}

func claim(name, pool, cpu, mem string, registered bool) karpv1.NodeClaim {
	nc := karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{karpv1.NodePoolLabelKey: pool}}}
	nc.Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	nc.SetTrue(karpv1.ConditionTypeLaunched, "Launched", "")
	if registered {
		nc.SetTrue(karpv1.ConditionTypeRegistered, "Registered", "")
	}
	return nc
}

func readyClass(name string) *awsv1.EC2NodeClass {
	c := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 4}}
	c.SetTrue(awsv1.ConditionTypeReady, "Resolved", "")
	return c
}

func TestComputeSumsClaimsAndSummarisesConditions(t *testing.T) {
	np := pool("default", "default")
	st := Compute(np, []karpv1.NodeClaim{claim("a", "default", "2", "8Gi", true), claim("b", "default", "4", "16Gi", false)}, readyClass("default"))
	if st.Nodes == nil || *st.Nodes != 2 {
		t.Fatalf("status.nodes = %v, want 2", st.Nodes)
	}
	if cpu := st.Resources[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("6")) != 0 {
		t.Errorf("cpu = %s, want 6", cpu.String())
	}
	if mem := st.Resources[corev1.ResourceMemory]; mem.Cmp(resource.MustParse("24Gi")) != 0 {
		t.Errorf("memory = %s, want 24Gi", mem.String())
	}
	if n := st.Resources["nodes"]; n.Value() != 2 {
		t.Errorf("resources.nodes = %s, want 2", n.String())
	}
	np.Status = st
	for _, typ := range []string{karpv1.ConditionTypeReady, karpv1.ConditionTypeValidationSucceeded, karpv1.ConditionTypeNodeClassReady, karpv1.ConditionTypeNodeRegistrationHealthy} {
		if !np.IsTrue(typ) {
			t.Errorf("%s = %+v, want True", typ, np.GetCondition(typ))
		}
	}
	if st.NodeClassObservedGeneration != 4 {
		t.Errorf("nodeClassObservedGeneration = %d", st.NodeClassObservedGeneration)
	}
	if Changed(np, Compute(np, []karpv1.NodeClaim{claim("a", "default", "2", "8Gi", true), claim("b", "default", "4", "16Gi", false)}, readyClass("default"))) {
		t.Errorf("recomputing the same snapshot reports a change")
	}
}

func TestComputeNotReadyReasons(t *testing.T) {
	np := pool("p", "missing")
	np.Status = Compute(np, nil, nil)
	c := np.GetCondition(karpv1.ConditionTypeNodeClassReady)
	if c.Status != metav1.ConditionFalse || c.Reason != ReasonNodeClassNotFound || np.IsTrue(karpv1.ConditionTypeReady) {
		t.Fatalf("missing class: NodeClassReady=%+v Ready=%+v", c, np.GetCondition(karpv1.ConditionTypeReady))
	}
	if r := np.GetCondition(karpv1.ConditionTypeNodeRegistrationHealthy); r.Status != metav1.ConditionUnknown {
		t.Errorf("no claims: NodeRegistrationHealthy = %+v, want Unknown", r)
	}
	if *np.Status.Nodes != 0 {
		t.Errorf("nodes = %d", *np.Status.Nodes)
	}
	if cpu, ok := np.Status.Resources[corev1.ResourceCPU]; !ok || !cpu.IsZero() {
		t.Errorf("empty pool: resources.cpu = %v (present %v), want 0", cpu.String(), ok)
	}

	notReady := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "c"}}
	notReady.SetFalse(awsv1.ConditionTypeReady, "AMINotFound", "no AMI matches")
	np = pool("p", "c")
	np.Spec.Template.Labels = map[string]string{"spaces are not allowed": "x"}
	failed := claim("f", "p", "2", "1Gi", false)
	failed.SetFalse(karpv1.ConditionTypeLaunched, "InsufficientCapacity", "")
	np.Status = Compute(np, []karpv1.NodeClaim{failed}, notReady)
	if c := np.GetCondition(karpv1.ConditionTypeNodeClassReady); c.Reason != ReasonNodeClassNotReady {
		t.Errorf("NodeClassReady = %+v", c)
	}
	if c := np.GetCondition(karpv1.ConditionTypeValidationSucceeded); c.Status != metav1.ConditionFalse {
		t.Errorf("ValidationSucceeded with an invalid label key = %+v", c)
	}
	if c := np.GetCondition(karpv1.ConditionTypeNodeRegistrationHealthy); c.Status != metav1.ConditionFalse {
		t.Errorf("NodeRegistrationHealthy with only failed launches = %+v", c)
	}
	// Schedules the CRD pattern accepts but that can never be evaluated
	// (issue 10): flagged, with the reason, instead of crashing the leader.
	for _, sched := range []string{"CRON_TZ=UTC\t0\t9\t*\t*\t1-5", "0 0 30 2 *"} {
		np = pool("p", "c")
		np.Spec.Disruption.Budgets = []karpv1.Budget{{Nodes: "1", Schedule: &sched, Duration: &metav1.Duration{Duration: time.Hour}}}
		np.Status = Compute(np, nil, notReady)
		if c := np.GetCondition(karpv1.ConditionTypeValidationSucceeded); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "disruption budget 0") {
			t.Errorf("ValidationSucceeded with schedule %q = %+v", sched, c)
		}
	}
}

// The controller against a real API server: the status it writes passes the
// CRD's schema and the printer columns read it.
func TestControllerWritesStatusThroughTheAPIServer(t *testing.T) {
	cp := controlplane.StartForTest(t)
	ctx := context.Background()
	kc, err := kubeclient.New(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	np := pool("default", "default")
	if err := kc.Create(ctx, np); err != nil {
		t.Fatal(err)
	}
	nc := claim("default-abc", "default", "2", "8Gi", true)
	nc.Spec = karpv1.NodeClaimSpec{NodeClassRef: np.Spec.Template.Spec.NodeClassRef, Requirements: np.Spec.Template.Spec.Requirements}
	st := nc.Status
	if err := kc.Create(ctx, &nc); err != nil {
		t.Fatal(err)
	}
	nc.Status = st
	if err := kc.Status().Update(ctx, &nc); err != nil {
		t.Fatal(err)
	}
	ctl, err := New(Config{Client: kc, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	got := &karpv1.NodePool{}
	if err := kc.Get(ctx, client.ObjectKey{Name: "default"}, got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Nodes == nil || *got.Status.Nodes != 1 {
		t.Fatalf("status.nodes = %v", got.Status.Nodes)
	}
	if c := got.GetCondition(karpv1.ConditionTypeNodeClassReady); c == nil || c.Reason != ReasonNodeClassNotFound {
		t.Fatalf("NodeClassReady = %+v (no EC2NodeClass exists)", c)
	}
	if cpu := got.Status.Resources[corev1.ResourceCPU]; cpu.String() != "2" {
		t.Fatalf("status.resources.cpu = %s", cpu.String())
	}
}
