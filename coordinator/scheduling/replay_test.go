package scheduling

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

// replayNode is an existing 4-cpu node in a zone.
func replayNode(name, zone string, ps ...*corev1.Pod) Node {
	return Node{Name: name, Labels: map[string]string{LabelHostname: name, LabelZone: zone},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("20")},
		Pods:        ps}
}

func at(sec int64) podOpt {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(time.Unix(1_700_000_000+sec, 0)) }
}

func place(ps ...*corev1.Pod) func(node string) []Placement {
	return func(node string) []Placement {
		var out []Placement
		for _, p := range ps {
			out = append(out, Placement{Pod: p, PodName: p.Namespace + "/" + p.Name, Node: node})
		}
		return out
	}
}

func TestReplayFilters(t *testing.T) {
	// A plain pod created first with the label a hostname spread selects:
	// kube-scheduler binds it first, then refuses the spread pod beside it.
	plain := mkPod("plain", "100m", "100Mi", withLabels("tier", "x"), at(0))
	spread := mkPod("spread", "100m", "100Mi", withSpreadOn(LabelHostname, 1, "tier", "x"), withLabels("tier", "x"), at(1))
	snap := Snapshot{Pods: []*corev1.Pod{spread, plain}, Nodes: []Node{replayNode("n1", "a"), replayNode("n2", "b")}}
	got := Replay(snap, Result{Placements: place(plain, spread)("n1")})
	if len(got) != 1 || got[0].Pod != "default/spread" || !strings.Contains(got[0].Reason, "topology spread") {
		t.Fatalf("hostname spread behind a plain pod: %+v", got)
	}
	// Created the other way round the spread pod binds first and the plain
	// pod (no constraint of its own) is accepted.
	at(2)(plain)
	if got := Replay(snap, Result{Placements: place(plain, spread)("n1")}); len(got) != 0 {
		t.Fatalf("spread pod first: %+v", got)
	}
	// Priority beats creation time.
	prio := int32(10)
	plain.Spec.Priority = &prio
	if got := Replay(snap, Result{Placements: place(plain, spread)("n1")}); len(got) != 1 || got[0].Pod != "default/spread" {
		t.Fatalf("higher-priority plain pod: %+v", got)
	}

	// Symmetric anti-affinity: an existing pod's required anti-affinity repels a new pod.
	owner := mkPod("owner", "100m", "100Mi", withAntiAffinity(LabelZone))
	owner.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].LabelSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "y"}}
	victim := mkPod("victim", "100m", "100Mi", withLabels("tier", "y"))
	snap = Snapshot{Pods: []*corev1.Pod{victim}, Nodes: []Node{replayNode("n1", "a", owner), replayNode("n2", "a"), replayNode("n3", "b")}}
	if got := Replay(snap, Result{Placements: place(victim)("n2")}); len(got) != 1 || !strings.Contains(got[0].Reason, "existing pod's anti-affinity") {
		t.Fatalf("symmetric anti-affinity: %+v", got)
	}
	if got := Replay(snap, Result{Placements: place(victim)("n3")}); len(got) != 0 {
		t.Fatalf("other zone: %+v", got)
	}
	// namespaceSelector: the owner's term looks only at namespaces labelled team=a.
	owner.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	victim.Namespace = "other"
	snap.Namespaces = map[string]map[string]string{"default": {"team": "a"}, "other": {"team": "b"}}
	if got := Replay(snap, Result{Placements: place(victim)("n2")}); len(got) != 0 {
		t.Fatalf("namespace outside the selector: %+v", got)
	}
	snap.Namespaces["other"]["team"] = "a"
	if got := Replay(snap, Result{Placements: place(victim)("n2")}); len(got) != 1 {
		t.Fatalf("namespace inside the selector: %+v", got)
	}

	// Zone spread with minDomains 3 over two zones: the global minimum is 0.
	z1 := mkPod("z1", "100m", "100Mi", withLabels("tier", "z"), at(0))
	z2 := mkPod("z2", "100m", "100Mi", withLabels("tier", "z"), at(1), withSpreadOn(LabelZone, 1, "tier", "z"))
	bound := mkPod("bound", "100m", "100Mi", withLabels("tier", "z"))
	snap = Snapshot{Pods: []*corev1.Pod{z1, z2}, Nodes: []Node{replayNode("n1", "a", bound), replayNode("n2", "b")}}
	if got := Replay(snap, Result{Placements: append(place(z1)("n2"), place(z2)("n1")...)}); len(got) != 0 {
		t.Fatalf("skew 1 over two zones: %+v", got)
	}
	three := int32(3)
	z2.Spec.TopologySpreadConstraints[0].MinDomains = &three
	if got := Replay(snap, Result{Placements: append(place(z1)("n2"), place(z2)("n1")...)}); len(got) != 1 {
		t.Fatalf("minDomains 3 of 2 zones: global minimum 0: %+v", got)
	}
	z2.Spec.TopologySpreadConstraints[0].MinDomains = nil
	// nodeTaintsPolicy Honor leaves out a tainted node's zone.
	honor := corev1.NodeInclusionPolicyHonor
	z2.Spec.TopologySpreadConstraints[0].NodeTaintsPolicy = &honor
	tainted := replayNode("n3", "c")
	tainted.Taints = []corev1.Taint{{Key: "k", Value: "v", Effect: corev1.TaintEffectNoSchedule}}
	snap.Nodes = append(snap.Nodes, tainted)
	if got := Replay(snap, Result{Placements: append(place(z1)("n2"), place(z2)("n2")...)}); len(got) != 0 {
		t.Fatalf("tainted zone ignored under Honor: %+v", got)
	}
	z2.Spec.TopologySpreadConstraints[0].NodeTaintsPolicy = nil
	if got := Replay(snap, Result{Placements: append(place(z1)("n2"), place(z2)("n2")...)}); len(got) != 1 {
		t.Fatalf("tainted zone counted under Ignore: %+v", got)
	}

	// Resources and the new-claim model (first option, DaemonSet overhead).
	it := fakeType("small", 2, 4, 20, 0.1, nil, nil)
	big := mkPod("big", "1500m", "100Mi")
	nc := NewNodeClaim{NodePool: "p", Pods: []*corev1.Pod{big}, Options: []cloud.LaunchOption{{InstanceType: "small", Zone: "a", CapacityType: "spot"}},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2100m"), corev1.ResourceMemory: resource.MustParse("100Mi"), corev1.ResourcePods: resource.MustParse("2")}}
	snap = Snapshot{Pods: []*corev1.Pod{big}, InstanceTypes: map[string][]*cloud.InstanceType{"": {it}}}
	if got := Replay(snap, Result{NewNodeClaims: []NewNodeClaim{nc}}); len(got) != 1 || !strings.Contains(got[0].Reason, "insufficient cpu") {
		t.Fatalf("DaemonSet overhead: %+v", got)
	}
}
