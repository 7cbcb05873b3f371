package disruption

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/coordinator/drifthash"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/podreq"
	"github.com/dovetail-dev/dovetail/report"
)

func TestBuildSnapshotFromAPI(t *testing.T) {
	sched := "CRON_TZ=Asia/Seoul 0 9 * * 1-5"
	np := &karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gp", Annotations: map[string]string{AnnotationMinSavings: "15%"}}}
	np.Spec.Disruption = karpv1.Disruption{ConsolidateAfter: karpv1.NewNillableDuration(time.Minute),
		Budgets: []karpv1.Budget{{Nodes: "0", Schedule: &sched, Duration: &metav1.Duration{Duration: 8 * time.Hour}, Reasons: []karpv1.DisruptionReason{karpv1.DisruptionReasonDrifted}}}}
	np.Spec.Template.Spec.NodeClassRef = &karpv1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
	np.Spec.Template.Spec.ExpireAfter = karpv1.NewNillableDuration(336 * time.Hour)
	np.Spec.Template.Spec.Requirements = []karpv1.NodeSelectorRequirementWithMinValues{{Key: LabelCapacity, Operator: corev1.NodeSelectorOpIn, Values: []string{"on-demand"}}}

	nc := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	nc.Status.AMIs = []awsv1.AMI{{ID: "ami-1", Requirements: []corev1.NodeSelectorRequirement{{Key: corev1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}}}}}
	nc.Status.Subnets = []awsv1.Subnet{{ID: "subnet-1", Zone: "us-east-1a"}}

	claim := &karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "gp-abc", Labels: map[string]string{karpv1.NodePoolLabelKey: "gp"},
		Annotations: map[string]string{AnnotationNodePoolHash: "1", AnnotationNodePoolHashVer: drifthash.HashVersion}}}
	claim.Status.NodeName = "ip-10-0-0-1"
	claim.Status.ImageID = "ami-0"
	claim.SetTrue(karpv1.ConditionTypeInitialized, "Initialized", "")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-1", Labels: map[string]string{
		karpv1.NodePoolLabelKey: "gp", corev1.LabelInstanceTypeStable: "m5.large", corev1.LabelTopologyZone: "us-east-1a", LabelCapacity: "on-demand"}}}
	node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1930m"), corev1.ResourceMemory: resource.MustParse("6903Mi"), corev1.ResourcePods: resource.MustParse("29")}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	unmanaged := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "byo"}}

	yes := true
	ds := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "ds-1", OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: "x", Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: "ip-10-0-0-1"}}
	app := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "app-1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "ip-10-0-0-1", Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}}}
	pending := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "app-2"}}
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}

	raftState := fsm.NewState()
	raftState.Nodes["ip-10-0-0-1"] = &fsm.NodeStatus{NodeName: "ip-10-0-0-1", Interruption: &report.Report{Kind: report.KindInterruption, ObservedAt: t0, Deadline: t0.Add(2 * time.Minute)}}

	s, errs := BuildSnapshot(ClusterState{NodePools: []*karpv1.NodePool{np}, NodeClasses: []*awsv1.EC2NodeClass{nc}, NodeClaims: []*karpv1.NodeClaim{claim},
		Nodes: []*corev1.Node{node, unmanaged}, Pods: []*corev1.Pod{ds, app, pending}, PDBs: []*policyv1.PodDisruptionBudget{pdb}, InstanceTypes: types(t), Raft: raftState})
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	p := s.Pools[0]
	if p.MinSavings != 0.15 || p.NodeClass != "default" || *p.ConsolidateAfter != time.Minute || *p.ExpireAfter != 336*time.Hour || p.TemplateHash == "" {
		t.Fatalf("pool %+v", p)
	}
	if len(p.Budgets) != 1 || p.Budgets[0].Schedule != sched || p.Budgets[0].Duration != 8*time.Hour || p.Budgets[0].Reasons[0] != ReasonDrifted {
		t.Fatalf("budgets %+v", p.Budgets)
	}
	if s.NodeClasses[0].AMIs[0] != (AMIRef{ID: "ami-1", Arch: "amd64"}) {
		t.Fatalf("nodeclass %+v", s.NodeClasses[0])
	}
	n := s.Nodes[0]
	if n.Pool != "gp" || n.NodeClaim != "gp-abc" || !n.Initialized || !n.Ready || n.Price != 0.096 || n.ImageID != "ami-0" || n.Annotations[AnnotationNodePoolHash] != "1" {
		t.Fatalf("node %+v", n)
	}
	if n.Interruption == nil || n.Interruption.Deadline != t0.Add(2*time.Minute) {
		t.Fatalf("interruption not carried: %+v", n.Interruption)
	}
	if len(n.Pods) != 2 || !n.Pods[0].Stays || n.Pods[1].Requests.MilliCPU != 250 || n.Pods[1].BlockingPDB != "web/web" {
		t.Fatalf("pods %+v", n.Pods)
	}
	if s.Nodes[1].Pool != "" {
		t.Fatalf("a node without NodeClaim must not be managed")
	}
	if len(s.PendingPods) != 1 {
		t.Fatalf("pending %+v", s.PendingPods)
	}
	// The drifted AMI and the interruption show up in a plan.
	plan := Decide(s, t0, Options{})
	if d := decisionFor(plan, "ip-10-0-0-1"); d == nil || d.Reason != ReasonInterrupted {
		t.Fatalf("want interruption decision, got %+v", d)
	}
}

func TestParseMinSavings(t *testing.T) {
	for in, want := range map[string]float64{"15%": 0.15, "0.2": 0.2, " 5% ": 0.05, "0%": 0} {
		if got, err := ParseMinSavings(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"abc", "100%", "-1%", "1.5"} {
		if _, err := ParseMinSavings(in); err == nil {
			t.Errorf("%q should fail", in)
		}
	}
}

func TestNodeClaimAnnotationsDriveHashDrift(t *testing.T) {
	np := &karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gp"}}
	np.Spec.Template.Labels = map[string]string{"team": "a"}
	nc := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	ann := drifthash.NodeClaimAnnotations(np, nc)
	n := Node{Name: "n", Annotations: ann}
	pool, _ := PoolFromAPI(np)
	class := NodeClassFromAPI(nc)
	if k, why := Drift(&n, &pool, &class); k != "" {
		t.Fatalf("fresh claim drifted: %s %s", k, why)
	}
	np.Spec.Template.Labels["team"] = "b"
	pool, _ = PoolFromAPI(np)
	if k, _ := Drift(&n, &pool, &class); k != DriftTemplateHash {
		t.Fatalf("label change should drift by hash, got %q", k)
	}
	pool, _ = PoolFromAPI(&karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gp"}, Spec: karpv1.NodePoolSpec{Template: karpv1.NodeClaimTemplate{ObjectMeta: karpv1.ObjectMeta{Labels: map[string]string{"team": "a"}}}}})
	role := "other-role"
	nc.Spec.Role = role
	class = NodeClassFromAPI(nc)
	if k, _ := Drift(&n, &pool, &class); k != DriftNodeClassHash {
		t.Fatalf("nodeclass change should drift by hash, got %q", k)
	}
}

// Issue 12: a new instance that reuses an old instance's hostname must not
// inherit the old one's Interruption / ReplaceRequested (it would be
// force-replaced while healthy); the join is by instance identity.
func TestBuildSnapshotDoesNotJoinStatusOfEarlierInstanceWithSameName(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-1"}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-new"}}
	old := &fsm.NodeStatus{NodeName: "ip-10-0-0-1", InstanceID: "i-old", ProviderID: "aws:///us-east-1a/i-old", ReplaceRequested: true,
		Interruption: &report.Report{Kind: report.KindInterruption, ObservedAt: t0, Deadline: t0.Add(2 * time.Minute)}}
	for _, tc := range []struct {
		name    string
		status  *fsm.NodeStatus
		inherit bool
	}{
		{"earlier instance", old, false},
		{"earlier instance, instance ID only", &fsm.NodeStatus{NodeName: old.NodeName, InstanceID: "i-old", ReplaceRequested: true, Interruption: old.Interruption}, false},
		{"this instance", &fsm.NodeStatus{NodeName: old.NodeName, InstanceID: "i-new", ProviderID: "aws:///us-east-1a/i-new", ReplaceRequested: true, Interruption: old.Interruption}, true},
	} {
		raftState := fsm.NewState()
		raftState.Nodes[node.Name] = tc.status
		s, _ := BuildSnapshot(ClusterState{Nodes: []*corev1.Node{node}, Raft: raftState})
		if len(s.Nodes) != 1 {
			t.Fatalf("%s: nodes %d", tc.name, len(s.Nodes))
		}
		n := s.Nodes[0]
		if got := n.Interruption != nil || n.ReplaceRequested; got != tc.inherit {
			t.Errorf("%s: interruption=%v replaceRequested=%v, want inherited=%v", tc.name, n.Interruption, n.ReplaceRequested, tc.inherit)
		}
	}
}

// A native sidecar (init container with restartPolicy Always) runs beside
// the app for the pod's life: the kubelet, kube-scheduler and the
// provisioner count 1 CPU app + 1 CPU sidecar as 2 CPU, and consolidation
// must too, or it packs a node past what fits.
func TestPodFromAPICountsNativeSidecars(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	cpu := func(v string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(v)}}
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "app"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "proxy", RestartPolicy: &always, Resources: cpu("1")}},
			Containers:     []corev1.Container{{Name: "app", Resources: cpu("1")}},
		},
	}
	got := PodFromAPI(p, nil).Requests.MilliCPU
	if got != 2000 {
		t.Fatalf("PodFromAPI counts %dm CPU, want 2000m (app + native sidecar)", got)
	}
	sched := podreq.Requests(p)[corev1.ResourceCPU]
	if got != sched.MilliValue() {
		t.Fatalf("PodFromAPI counts %dm, the scheduler's rule %dm", got, sched.MilliValue())
	}
}
