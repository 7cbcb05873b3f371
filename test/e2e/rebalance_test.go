package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/coordinator/wiring"
)

// rebalance is TestAutoMode's rebalance-recommendation subtest (issue 15):
//
//   - A spot node with pods gets a rebalance recommendation in its IMDS;
//     its agent reports it; the leader launches a replacement NodeClaim on
//     another offering than the recommended one (type × zone × capacity
//     type), waits for it to be Ready, and only then taints, cordons and
//     drains the old node and deletes its NodeClaim (instance terminated).
//     The order is read from one watch of Nodes, so it is the API server's.
//   - With the NodePool annotated dovetail.dev/rebalance=ignore, another
//     spot node's recommendation is announced (Event) as not acted on, and
//     over the next passes nothing is launched, cordoned or deleted.
func (e *env) rebalance(t *testing.T) {
	marks := e.watchNodeMarks(t)
	f := e.fleet(ns)
	victim, inst := spotVictim(f, nil)
	if victim == "" {
		t.Fatal("no schedulable spot node with pods for a rebalance recommendation")
	}
	oldClaim := claimOfNode(f, victim, inst)
	pods := podsOn(f, victim)
	e.startAgent(victim, inst.ID)
	before := replacementClaims(f)
	at := time.Now()
	if err := e.sim.RebalanceRecommendation(inst.ID); err != nil {
		t.Fatalf("rebalance recommendation for %s: %v", inst.ID, err)
	}
	t.Logf("rebalance recommendation for %s (node %s, nodeclaim %s, %s %s %s, %d pods)",
		inst.ID, victim, oldClaim, inst.InstanceType, inst.Zone, inst.CapacityType, pods)

	var replClaim string
	var repl ec2sim.InstanceInfo
	e.eventually("a replacement NodeClaim launched for the recommendation", time.Minute, func() (bool, string) {
		f := e.fleet(ns)
		for name, c := range f.claims {
			if before[name] || c.Annotations[wiring.AnnotationDisruptionKey] == "" || len(f.byClaim[name]) == 0 {
				continue
			}
			replClaim, repl = name, f.byClaim[name][0]
			return true, ""
		}
		return false, fmt.Sprintf("%d nodeclaims, no new launched replacement", len(f.claims))
	})
	launched := time.Since(at)
	t.Logf("replacement %s on %s %s %s", replClaim, repl.InstanceType, repl.Zone, repl.CapacityType)
	if repl.InstanceType == inst.InstanceType && repl.Zone == inst.Zone && repl.CapacityType == inst.CapacityType {
		t.Errorf("replacement %s launched on the recommended offering %s/%s/%s", replClaim, inst.InstanceType, inst.Zone, inst.CapacityType)
	}
	if repl.Tags[cloud.TagNodePool] != poolName {
		t.Errorf("replacement instance in pool %q, want %s", repl.Tags[cloud.TagNodePool], poolName)
	}
	e.eventually("the old node drained, its NodeClaim gone and its instance terminated", 90*time.Second, func() (bool, string) {
		f := e.fleet(ns)
		if n := podsOn(f, victim); n > 0 {
			return false, fmt.Sprintf("%d pods still on %s", n, victim)
		}
		if _, ok := f.claims[oldClaim]; ok {
			return false, "nodeclaim " + oldClaim + " still exists"
		}
		if _, ok := f.live[inst.ID]; ok {
			return false, "instance " + inst.ID + " still " + f.live[inst.ID].State
		}
		return true, ""
	})
	gone := time.Since(at)
	replNode := e.fleet(ns).nodeByProv[repl.ProviderID]
	ready, cordoned := marks.get(replNode, victim)
	switch {
	case replNode == "" || ready.seq == 0:
		t.Errorf("replacement %s (node %q) never seen Ready", replClaim, replNode)
	case cordoned.seq == 0:
		t.Errorf("old node %s never seen cordoned or tainted %s", victim, karpv1.DisruptedTaintKey)
	case cordoned.seq < ready.seq:
		t.Errorf("old node %s cordoned (watch event %d) before replacement %s was Ready (event %d)", victim, cordoned.seq, replNode, ready.seq)
	}
	// The figure for coordinator/disruption/README.md.
	// Ready and cordoned come from the Node watch; launched and gone from
	// this test's 0.5 s polls (so "launched" can read later than "Ready").
	t.Logf("rebalance recommendation → replacement Node Ready %s, → old node cordoned %s, → old NodeClaim gone and instance terminated %s (%d pods moved; launch seen by the poll at %s)",
		ready.at.Sub(at).Round(time.Millisecond), cordoned.at.Sub(at).Round(time.Millisecond), gone.Round(time.Millisecond), pods, launched.Round(time.Millisecond))
	e.eventually("SpotRebalanceRecommendation and DisruptionTerminating (RebalanceRecommended) Events on "+victim, 30*time.Second, func() (bool, string) {
		evs, err := e.nodeEvents(victim)
		if err != nil {
			return false, err.Error()
		}
		if len(evs[karpenterevents.SpotRebalanceRecommendation]) == 0 {
			return false, fmt.Sprintf("no %s Event (have %v)", karpenterevents.SpotRebalanceRecommendation, evs)
		}
		for _, m := range evs[karpenterevents.DisruptionTerminating] {
			if strings.Contains(m, string(disruption.ReasonRebalance)) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no %s Event naming %s (have %v)", karpenterevents.DisruptionTerminating, disruption.ReasonRebalance, evs)
	})
	e.eventually("all 300 pods Running again", 2*time.Minute, func() (bool, string) {
		run, elsewhere := e.fleet(ns).running()
		return run == 300, fmt.Sprintf("%d Running on launched nodes, %d elsewhere", run, elsewhere)
	})

	// Opt-out: the same signal on another spot node of an annotated pool.
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, karpv1.RebalanceAnnotationKey, karpv1.RebalanceIgnore)
	if err := e.c.Patch(e.ctx, &karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: poolName}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatalf("annotate nodepool: %v", err)
	}
	// The leader must plan with the annotation before the report arrives,
	// or it would rightly act on it.
	e.eventually("the leader's snapshot has the pool's opt-out", 30*time.Second, func() (bool, string) {
		s, err := e.disruptionSnapshot()
		if err != nil {
			return false, err.Error()
		}
		for _, p := range s.Pools {
			if p.Name == poolName {
				return p.IgnoreRebalance, fmt.Sprintf("pool %s ignoreRebalance=%v", poolName, p.IgnoreRebalance)
			}
		}
		return false, "pool " + poolName + " not in the snapshot"
	})
	f = e.fleet(ns)
	kept, keptInst := spotVictim(f, map[string]bool{victim: true})
	if kept == "" {
		t.Fatal("no second schedulable spot node with pods for the opt-out check")
	}
	keptClaim := claimOfNode(f, kept, keptInst)
	e.startAgent(kept, keptInst.ID)
	before = replacementClaims(f)
	if err := e.sim.RebalanceRecommendation(keptInst.ID); err != nil {
		t.Fatalf("rebalance recommendation for %s: %v", keptInst.ID, err)
	}
	e.eventually("a SpotRebalanceRecommendation Event on "+kept+" saying it is not acted on", 30*time.Second, func() (bool, string) {
		evs, err := e.nodeEvents(kept)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range evs[karpenterevents.SpotRebalanceRecommendation] {
			if strings.Contains(m, disruption.SkipRebalanceIgnored) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("Events on %s: %v", kept, evs)
	})
	// The Event came from a pass that skipped the node; later passes (one a
	// second here) must keep skipping it.
	for i := 0; i < 8; i++ {
		f := e.fleet(ns)
		for name, c := range f.claims {
			if !before[name] && c.Annotations[wiring.AnnotationDisruptionKey] != "" {
				t.Fatalf("replacement %s launched although pool %s is annotated %s=%s", name, poolName, karpv1.RebalanceAnnotationKey, karpv1.RebalanceIgnore)
			}
		}
		if c, ok := f.claims[keptClaim]; !ok || c.DeletionTimestamp != nil {
			t.Fatalf("nodeclaim %s of the opted-out node deleted", keptClaim)
		}
		if _, c := marks.get("", kept); c.seq != 0 {
			t.Fatalf("opted-out node %s cordoned or tainted", kept)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("opt-out: %s (%s) kept its node through 4 s of passes after the recommendation", kept, keptInst.ID)
}

// spotVictim picks a live, schedulable spot node with pods, not in skip.
func spotVictim(f fleet, skip map[string]bool) (string, ec2sim.InstanceInfo) {
	for _, in := range f.live {
		name := f.nodeByProv[in.ProviderID]
		if in.CapacityType != cloud.CapacityTypeSpot || in.State != cloud.StateRunning || name == "" || skip[name] {
			continue
		}
		if n := f.nodes[name]; n.Spec.Unschedulable || n.DeletionTimestamp != nil {
			continue
		}
		if podsOn(f, name) > 0 {
			return name, in
		}
	}
	return "", ec2sim.InstanceInfo{}
}

func claimOfNode(f fleet, node string, in ec2sim.InstanceInfo) string {
	for name, c := range f.claims {
		if c.Status.NodeName == node || c.Status.ProviderID == in.ProviderID {
			return name
		}
	}
	return in.Tags[cloud.TagNodeClaim]
}

// replacementClaims are the NodeClaims the disruption controller launched.
func replacementClaims(f fleet) map[string]bool {
	out := map[string]bool{}
	for name, c := range f.claims {
		if c.Annotations[wiring.AnnotationDisruptionKey] != "" {
			out[name] = true
		}
	}
	return out
}

// nodeEvents are the Events on a Node by reason, as `kubectl get events` shows them.
func (e *env) nodeEvents(node string) (map[string][]string, error) {
	evs, err := e.kube.CoreV1().Events("").List(e.ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + node})
	if err != nil {
		return nil, fmt.Errorf("list events of %s: %w", node, err)
	}
	out := map[string][]string{}
	for _, ev := range evs.Items {
		out[ev.Reason] = append(out[ev.Reason], ev.Message)
	}
	return out, nil
}

// disruptionSnapshot is the leader's latest disruption snapshot (any
// replica forwards the request to the leader).
func (e *env) disruptionSnapshot() (*disruption.Snapshot, error) {
	r := e.replica(e.leader())
	if r == nil {
		return nil, fmt.Errorf("leader gone")
	}
	resp, err := e.get(r.HTTPAddr(), disruption.SnapshotPath)
	if err != nil {
		return nil, fmt.Errorf("get snapshot: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get snapshot: %s", resp.Status)
	}
	var s disruption.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	return &s, nil
}

// nodeMarks records, in the order of one watch of Nodes (the API server's
// order for them), when each node was first seen Ready and first seen
// cordoned or tainted karpenter.sh/disrupted.
type nodeMarks struct {
	mu              sync.Mutex
	seq             int
	ready, cordoned map[string]mark
}

type mark struct {
	seq int // 0: not seen
	at  time.Time
}

func (m *nodeMarks) get(readyOf, cordonedOf string) (ready, cordoned mark) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ready[readyOf], m.cordoned[cordonedOf]
}

// watchNodeMarks starts a Node informer for the rest of t.
func (e *env) watchNodeMarks(t *testing.T) *nodeMarks {
	m := &nodeMarks{ready: map[string]mark{}, cordoned: map[string]mark{}}
	see := func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.seq++
		now := mark{seq: m.seq, at: time.Now()}
		if _, seen := m.ready[n.Name]; !seen && nodeIsReady(n) {
			m.ready[n.Name] = now
		}
		if _, seen := m.cordoned[n.Name]; !seen && (n.Spec.Unschedulable || hasNodeTaint(n, karpv1.DisruptedTaintKey)) {
			m.cordoned[n.Name] = now
		}
	}
	fac := informers.NewSharedInformerFactory(e.kube, 0)
	inf := fac.Core().V1().Nodes().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: see, UpdateFunc: func(_, n any) { see(n) }}); err != nil {
		t.Fatalf("node informer: %v", err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	t.Cleanup(func() { cancel(); fac.Shutdown() })
	fac.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("node informer did not sync")
	}
	return m
}

func nodeIsReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasNodeTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}
