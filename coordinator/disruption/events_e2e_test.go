package disruption

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/drain"
	"github.com/dovetail-dev/dovetail/kubeclient"
)

// stuckDrainer leaves pods behind on the nodes in stuck (a PDB that never
// allows the eviction), and drains the others.
type stuckDrainer struct{ stuck map[string]bool }

func (s stuckDrainer) Drain(_ context.Context, node string, deadline time.Time, reason string) (drain.Result, error) {
	if s.stuck[node] {
		return drain.Result{Node: node, Reason: reason, Deadline: deadline,
			Pods: []drain.PodResult{{Pod: drain.PodRef{Namespace: "default", Name: "guarded"}, Outcome: drain.OutcomeBlocked, Message: "Cannot evict pod as it would violate the pod's disruption budget."}}}, nil
	}
	return drain.Result{Node: node, Reason: reason, Deadline: deadline, Complete: true}, nil
}

func (stuckDrainer) MarkDisrupted(context.Context, string, string) error { return nil }

// poolVerifier refuses every decision of one pool, as the full scheduling
// simulation does when the pods would not fit after all.
type poolVerifier struct{ refuse string }

func (v poolVerifier) Verify(_ context.Context, _ *Snapshot, d Decision) error {
	if d.Pool == v.refuse {
		return errors.New("pod default/web-0 would not schedule: no node satisfies its topology spread")
	}
	return nil
}

// TestE2EEventsOnTheAPIServer drives one controller pass over repair,
// consolidation and drain situations and checks Karpenter's Events on the
// API server's Node and NodeClaim objects (UIDs looked up, as the
// coordinator's informers do): NodeRepairBlocked past the repair limit,
// TerminationGracePeriodExpiring when a bounded drain starts,
// ConsolidationCandidate, ConsolidationRejected when validation's
// scheduling simulation refuses, FailedDraining when pods stay,
// ConsolidationApproved when a Balanced pool's score takes a move.
func TestE2EEventsOnTheAPIServer(t *testing.T) {
	cp := controlplane.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	kube := kubernetes.NewForConfigOrDie(cp.RESTConfig)
	c, err := kubeclient.New(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}

	tgp := time.Hour
	repair := noConsolidation(testPool("ev-repair"))
	repair.TerminationGracePeriod = &tgp
	sick := func(name string, since time.Time) Node {
		n := testNode(t, name, "ev-repair", "m5.large", od, pod(name+"-app", 100, 1))
		n.Unhealthy = &Unhealthy{Condition: "KubeletHealthy", Since: since, Message: "kubelet not responding"}
		return n
	}
	nodes := []Node{
		sick("ev-sick-1", t0.Add(-2*time.Hour)),
		sick("ev-sick-2", t0.Add(-time.Hour)),
		testNode(t, "ev-empty", "ev-drain", "m5.large", od, daemon("ds")),
		testNode(t, "ev-refused", "ev-verify", "m5.large", od, daemon("ds")),
		testNode(t, "ev-bal-a", "ev-balanced", "m5.xlarge", od, pod("one", 500, 0.5)),
		testNode(t, "ev-bal-b", "ev-balanced", "m5.xlarge", od, pod("b1", 3000, 1)),
		testNode(t, "ev-bal-c", "ev-balanced", "m5.xlarge", od, pod("c1", 3000, 1)),
	}
	balanced := testPool("ev-balanced")
	balanced.ConsolidationPolicy = Balanced
	// The objects the Events are about, on the API server.
	for _, n := range nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{karpv1.NodePoolLabelKey: n.Pool},
			Annotations: map[string]string{controlplane.KwokNodeAnnotation: controlplane.KwokNodeValue}}}
		if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		claim := &karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: n.NodeClaim, Labels: map[string]string{karpv1.NodePoolLabelKey: n.Pool}}}
		claim.Spec.NodeClassRef = &karpv1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
		claim.Spec.Requirements = []karpv1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelInstanceTypeStable, Operator: corev1.NodeSelectorOpIn, Values: []string{n.InstanceType}}}
		if err := c.Create(ctx, claim); err != nil {
			t.Fatal(err)
		}
	}

	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	t.Cleanup(bc.Shutdown)
	events := KubeEvents{Recorder: bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "dovetail-disruption"}),
		NodeUID: func(name string) ktypes.UID {
			n, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return ""
			}
			return n.UID
		},
		NodeClaimUID: func(name string) ktypes.UID {
			var nc karpv1.NodeClaim
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &nc); err != nil {
				return ""
			}
			return nc.UID
		}}

	l := newRaftLedger()
	cl := &cluster{base: snapshot(t, []Pool{repair, testPool("ev-drain"), testPool("ev-verify"), balanced}, nodes...), ledger: l}
	now := t0
	ctl, err := NewController(Config{ValidationDelay: -1, ReplacementTimeout: time.Second, PollInterval: 5 * time.Millisecond,
		Planner: Options{RepairMaxPercent: 20}, Registry: prometheus.NewRegistry(), Now: func() time.Time { return now }},
		cl, l, &fakeLauncher{}, stuckDrainer{stuck: map[string]bool{"ev-empty": true}}, events, poolVerifier{refuse: "ev-verify"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	ctl.Wait()

	// Repair: the longest-broken node goes (a 2-node pool may repair one at
	// a time); its drain is bounded by terminationGracePeriod.
	wantEvents(ctx, t, kube, "Node", "ev-sick-2", "repair limit reached: 1 of 2 nodes", karpenterevents.NodeRepairBlocked)
	wantEvents(ctx, t, kube, "Node", "ev-sick-1", "All pods will be deleted by 2026-11-23T04:00:00Z", karpenterevents.TerminationGracePeriodExpiring)
	wantEvents(ctx, t, kube, "NodeClaim", "ev-sick-1-claim", "terminationGracePeriod", karpenterevents.TerminationGracePeriodExpiring)
	// Consolidation of an empty node: candidate, then a drain that leaves a pod.
	wantEvents(ctx, t, kube, "Node", "ev-empty", "Consolidation candidate: Empty/Delete: nodepools=[ev-drain]: [ev-empty]", karpenterevents.ConsolidationCandidate)
	wantEvents(ctx, t, kube, "NodeClaim", "ev-empty-claim", "Consolidation candidate: Empty/Delete", karpenterevents.ConsolidationCandidate)
	wantEvents(ctx, t, kube, "Node", "ev-empty", "Failed to drain node, 1 pod(s) could not be evicted", karpenterevents.FailedDraining)
	// Consolidation the scheduling simulation refuses.
	wantEvents(ctx, t, kube, "Node", "ev-refused", "Consolidation rejected: Empty/Delete: nodepools=[ev-verify]: [ev-refused], reason: scheduling simulation refused: pod default/web-0", karpenterevents.ConsolidationRejected)
	wantEvents(ctx, t, kube, "NodeClaim", "ev-refused-claim", "reason: scheduling simulation refused", karpenterevents.ConsolidationRejected)

	// A Balanced pool's score takes the move.
	wantEvents(ctx, t, kube, "Node", "ev-bal-a", "score 1.00 >= threshold 0.50 (k: 2, savings 33.3%, disruption 33.3%)", karpenterevents.ConsolidationApproved)
	wantEvents(ctx, t, kube, "NodeClaim", "ev-bal-a-claim", "score 1.00 >= threshold 0.50", karpenterevents.ConsolidationApproved)

	// The Events name the real objects (kubectl describe finds them by UID).
	evs, err := kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=ev-sick-2,reason=" + karpenterevents.NodeRepairBlocked})
	if err != nil || len(evs.Items) == 0 {
		t.Fatalf("NodeRepairBlocked events: %v, %v", evs, err)
	}
	n, err := kube.CoreV1().Nodes().Get(ctx, "ev-sick-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e := evs.Items[0]; e.InvolvedObject.UID != n.UID || e.Type != corev1.EventTypeWarning {
		t.Errorf("NodeRepairBlocked on %s (type %s), want the Node's UID %s, Warning", e.InvolvedObject.UID, e.Type, n.UID)
	}
}
