package provisioning

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/drifthash"
)

// TestPlanExampleSnapshot runs the example under testdata end to end:
// YAML → inputs → snapshot → plan.
func TestPlanExampleSnapshot(t *testing.T) {
	in, notes, err := LoadInputs("testdata/snapshot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 0 {
		t.Errorf("notes: %v", notes)
	}
	if len(in.NodePools) != 2 || len(in.NodeClasses) != 1 || len(in.DaemonSets) != 1 || len(in.Nodes) != 1 {
		t.Fatalf("loaded %d pools %d classes %d daemonsets %d nodes", len(in.NodePools), len(in.NodeClasses), len(in.DaemonSets), len(in.Nodes))
	}
	in.Region = "us-east-1"
	in.InstanceTypes = catalog.MustLoad().InstanceTypes("us-east-1", []string{"us-east-1a", "us-east-1b", "us-east-1c"})
	in.RequireNodeClass = true
	snap, _ := Build(in, PendingForSimulation)
	if len(snap.Pods) != 18 {
		t.Fatalf("pending pods %d, want 18", len(snap.Pods))
	}
	d := Plan(snap, PlanOptions{Names: SequentialNames()})

	if len(d.Unschedulable) != 1 || d.Unschedulable[0].PodName != "ml/giant-0" {
		t.Fatalf("unschedulable: %+v", d.Unschedulable)
	}
	where := map[string]string{}
	zones := map[string]int{}
	for _, l := range d.Launches {
		nc := l.NodeClaim
		if !strings.HasPrefix(nc.Name, nc.Labels["karpenter.sh/nodepool"]+"-") {
			t.Errorf("claim name %s", nc.Name)
		}
		for _, p := range l.Pods {
			where[p.Namespace+"/"+p.Name] = nc.Name
		}
		var zone string
		for _, r := range nc.Spec.Requirements {
			if r.Key == corev1.LabelTopologyZone && len(r.Values) == 1 {
				zone = r.Values[0]
			}
		}
		for _, p := range l.Pods {
			if p.Labels["app"] == "web" {
				zones[zone]++
			}
		}
		// Every claim carries the DaemonSet's 100m on top of its pods.
		if q := nc.Spec.Resources.Requests[corev1.ResourceCPU]; q.MilliValue()%100 != 0 {
			t.Errorf("claim %s requests %s", nc.Name, q.String())
		}
	}
	for _, p := range d.Placements {
		where[p.PodName] = p.Node
		if strings.HasPrefix(p.PodName, "shop/web") {
			zones["us-east-1a"]++ // the existing node is in us-east-1a
		}
	}
	if !strings.HasPrefix(where["ml/trainer-0"], "gpu-") {
		t.Errorf("trainer on %q, want the gpu pool", where["ml/trainer-0"])
	}
	cacheNodes := map[string]bool{}
	for _, p := range []string{"shop/cache-0", "shop/cache-1", "shop/cache-2"} {
		cacheNodes[where[p]] = true
	}
	if len(cacheNodes) != 3 {
		t.Errorf("cache pods share nodes: %v", where)
	}
	if len(zones) != 3 || zones["us-east-1a"] != 4 || zones["us-east-1b"] != 4 || zones["us-east-1c"] != 4 {
		t.Errorf("web pods per zone %v, want 4/4/4", zones)
	}
	if !strings.Contains(d.Unschedulable[0].Reasons["default"], "cpu") || !strings.Contains(d.Unschedulable[0].Reasons["gpu"], "taint") {
		t.Errorf("reasons %v", d.Unschedulable[0].Reasons)
	}
}

func TestProvisionable(t *testing.T) {
	p := pendingPod("a", "1")
	if !Provisionable(p) {
		t.Fatal("unschedulable pod not provisionable")
	}
	q := p.DeepCopy()
	q.Status.Conditions = nil
	if Provisionable(q) || !PendingForSimulation(q) {
		t.Error("a pod kube-scheduler has not looked at is only pending for simulation")
	}
	q = p.DeepCopy()
	q.Spec.NodeName = "n"
	if Provisionable(q) {
		t.Error("bound pod")
	}
	q = p.DeepCopy()
	q.OwnerReferences = append(q.OwnerReferences, metaOwner("DaemonSet"))
	if Provisionable(q) {
		t.Error("daemonset pod")
	}
}

func TestLoadInputsRejectsGarbage(t *testing.T) {
	dir := t.TempDir()
	if err := writeFile(dir+"/bad.yaml", "apiVersion: v1\nkind: Pod\nspec: [this is not a pod spec\n"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadInputs(dir); err == nil {
		t.Fatal("want an error for malformed YAML")
	}
	if _, _, err := LoadInputs(dir + "/missing.yaml"); err == nil {
		t.Fatal("want an error for a missing file")
	}
}

func TestBuildIgnoresStartupTaintsUntilInitialized(t *testing.T) {
	np := nodePool("default", nil)
	taint := corev1.Taint{Key: "cni-not-ready", Effect: corev1.TaintEffectNoSchedule}
	np.Spec.Template.Spec.StartupTaints = []corev1.Taint{taint}
	booting := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "booting", Labels: map[string]string{"karpenter.sh/nodepool": "default"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint, {Key: "other", Effect: corev1.TaintEffectNoSchedule}}}}
	ready := booting.DeepCopy()
	ready.Name = "ready"
	ready.Labels["karpenter.sh/initialized"] = "true"
	snap, _ := Build(Inputs{NodePools: []*karpv1.NodePool{np}, Nodes: []*corev1.Node{booting, ready}}, nil)
	if len(snap.Nodes[0].Taints) != 1 || snap.Nodes[0].Taints[0].Key != "other" {
		t.Errorf("booting node taints %v", snap.Nodes[0].Taints)
	}
	if len(snap.Nodes[1].Taints) != 2 {
		t.Errorf("initialized node taints %v", snap.Nodes[1].Taints)
	}
}

// Every planned NodeClaim carries its NodePool's and EC2NodeClass's drift
// hashes from the snapshot it was planned on (no read of the live objects
// at launch); without its pool it carries none.
func TestPlanStampsDriftHashesFromTheSnapshot(t *testing.T) {
	in, _, err := LoadInputs("testdata/snapshot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in.Region = "us-east-1"
	in.InstanceTypes = catalog.MustLoad().InstanceTypes("us-east-1", []string{"us-east-1a", "us-east-1b", "us-east-1c"})
	in.RequireNodeClass = true
	snap, _ := Build(in, PendingForSimulation)
	pools := map[string]*karpv1.NodePool{}
	for _, np := range in.NodePools {
		pools[np.Name] = np
	}
	d := Plan(snap, PlanOptions{Names: SequentialNames(), Pools: pools, NodeClasses: in.NodeClasses})
	if len(d.Launches) == 0 {
		t.Fatal("no launches")
	}
	for _, l := range d.Launches {
		nc := l.NodeClaim
		want := drifthash.NodeClaimAnnotations(pools[nc.Labels[karpv1.NodePoolLabelKey]], ClassOf(in.NodeClasses, nc.Spec.NodeClassRef.Name))
		if len(want) != 3 {
			t.Fatalf("claim %s: expected pool and class hashes, got %v", nc.Name, want)
		}
		for k, v := range want {
			if nc.Annotations[k] != v {
				t.Errorf("claim %s: %s=%q, want %q", nc.Name, k, nc.Annotations[k], v)
			}
		}
	}
	bare := Plan(snap, PlanOptions{Names: SequentialNames()})
	if ann := bare.Launches[0].NodeClaim.Annotations; ann[drifthash.AnnotationNodePoolHash] != "" {
		t.Errorf("claim without its pool object carries a hash: %v", ann)
	}
}

// TestJoinedClaimIsItsNode: a NodeClaim whose Node has joined but which
// the launcher has not marked registered (no status.nodeName yet) is that
// Node, found by provider ID. Counted as an empty in-flight claim besides
// the Node, it took the second pod of a hostname anti-affinity pair that
// the Node itself refuses, and no NodeClaim was launched for it.
func TestJoinedClaimIsItsNode(t *testing.T) {
	anti := func(p *corev1.Pod) *corev1.Pod {
		p.Labels = map[string]string{"app": "nginx"}
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			TopologyKey: corev1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}}}}}}
		return p
	}
	zones := []string{"us-east-1a", "us-east-1b", "us-east-1c"}
	its := catalog.MustLoad().InstanceTypes("us-east-1", zones)
	var large *cloud.InstanceType
	for _, it := range its {
		if it.Name == "m5.large" {
			large = it
		}
	}
	if large == nil {
		t.Fatal("m5.large not in the catalogue")
	}
	const providerID = "aws:///us-east-1a/i-0123456789abcdef0"
	labels := map[string]string{karpv1.NodePoolLabelKey: "default", corev1.LabelInstanceTypeStable: "m5.large",
		corev1.LabelTopologyZone: "us-east-1a", karpv1.CapacityTypeLabelKey: "on-demand"}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-1.ec2.internal", Labels: map[string]string{corev1.LabelHostname: "ip-10-0-0-1.ec2.internal"}},
		Spec:   corev1.NodeSpec{ProviderID: providerID},
		Status: corev1.NodeStatus{Allocatable: large.Allocatable, Capacity: large.Capacity}}
	for k, v := range labels {
		node.Labels[k] = v
	}
	bound := anti(pendingPod("nginx-0", "100m"))
	bound.Spec.NodeName = node.Name
	bound.Status = corev1.PodStatus{Phase: corev1.PodRunning}
	claim := &karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "default-abcde", Labels: labels},
		Status: karpv1.NodeClaimStatus{ProviderID: providerID, Allocatable: large.Allocatable, Capacity: large.Capacity}}
	in := Inputs{Region: "us-east-1", InstanceTypes: its, NodePools: []*karpv1.NodePool{nodePool("default", nil)},
		Pods: []*corev1.Pod{bound, anti(pendingPod("nginx-1", "100m"))}, Nodes: []*corev1.Node{node}, NodeClaims: []*karpv1.NodeClaim{claim}}
	snap, _ := Build(in, nil)
	if len(snap.Nodes) != 1 || len(snap.NodeClaims) != 0 {
		t.Fatalf("snapshot has %d nodes and %d in-flight claims, want the joined claim once, as its node", len(snap.Nodes), len(snap.NodeClaims))
	}
	d := Plan(snap, PlanOptions{Names: SequentialNames()})
	if len(d.Placements) != 0 || len(d.Launches) != 1 {
		t.Fatalf("placements %+v, %d launches: want nginx-1 on a new NodeClaim", d.Placements, len(d.Launches))
	}

	// Until the Node joins, the claim is in flight and takes the pod.
	in.Nodes, in.Pods = nil, in.Pods[1:]
	snap, _ = Build(in, nil)
	if d := Plan(snap, PlanOptions{Names: SequentialNames()}); len(d.Placements) != 1 || d.Placements[0].NodeClaim != claim.Name || len(d.Launches) != 0 {
		t.Fatalf("before the node joined: placements %+v, %d launches", d.Placements, len(d.Launches))
	}
}
