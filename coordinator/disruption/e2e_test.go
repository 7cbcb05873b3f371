package disruption

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/drain"
)

// kubeCluster is the e2e snapshot source and launcher: it reads the real
// API server and makes replacement nodes as kwok Nodes with NodeClaims.
type kubeCluster struct {
	t      *testing.T
	kube   kubernetes.Interface
	c      client.Client
	ledger *raftLedger
}

func (k *kubeCluster) Snapshot(ctx context.Context) (*Snapshot, error) {
	var nps karpv1.NodePoolList
	var ncs awsv1.EC2NodeClassList
	var claims karpv1.NodeClaimList
	if err := k.c.List(ctx, &nps); err != nil {
		return nil, err
	}
	if err := k.c.List(ctx, &ncs); err != nil {
		return nil, err
	}
	if err := k.c.List(ctx, &claims); err != nil {
		return nil, err
	}
	nodes, err := k.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	pods, err := k.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	pdbs, err := k.kube.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	cs := ClusterState{InstanceTypes: types(k.t), Raft: k.ledger.f.State()}
	for i := range nps.Items {
		cs.NodePools = append(cs.NodePools, &nps.Items[i])
	}
	for i := range ncs.Items {
		cs.NodeClasses = append(cs.NodeClasses, &ncs.Items[i])
	}
	for i := range claims.Items {
		cs.NodeClaims = append(cs.NodeClaims, &claims.Items[i])
	}
	for i := range nodes.Items {
		cs.Nodes = append(cs.Nodes, &nodes.Items[i])
	}
	for i := range pods.Items {
		cs.Pods = append(cs.Pods, &pods.Items[i])
	}
	for i := range pdbs.Items {
		cs.PDBs = append(cs.PDBs, &pdbs.Items[i])
	}
	s, errs := BuildSnapshot(cs)
	for _, err := range errs {
		k.t.Logf("snapshot: %v", err)
	}
	return s, nil
}

// makeNode creates a kwok node and its initialized NodeClaim on ami.
func (k *kubeCluster) makeNode(ctx context.Context, name, ami string) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Annotations: map[string]string{controlplane.KwokNodeAnnotation: controlplane.KwokNodeValue},
			Labels: map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64",
				corev1.LabelInstanceTypeStable: "m5.large", corev1.LabelTopologyZone: "us-east-1a",
				karpv1.CapacityTypeLabelKey: "on-demand", karpv1.NodePoolLabelKey: "e2e"}},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("29")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1930m"), corev1.ResourceMemory: resource.MustParse("6903Mi"), corev1.ResourcePods: resource.MustParse("29")},
		},
	}
	if _, err := k.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	claim := &karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{karpv1.NodePoolLabelKey: "e2e"}}}
	claim.Spec.NodeClassRef = &karpv1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: "e2e"}
	claim.Spec.Requirements = []karpv1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelInstanceTypeStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"m5.large"}}}
	if err := k.c.Create(ctx, claim); err != nil {
		return fmt.Errorf("create nodeclaim %s: %w", name, err)
	}
	claim.Status.NodeName = name
	claim.Status.ImageID = ami
	claim.Status.ProviderID = "aws:///us-east-1a/i-" + name
	claim.SetTrue(karpv1.ConditionTypeInitialized, "Initialized", "")
	if err := k.c.Status().Update(ctx, claim); err != nil {
		return fmt.Errorf("nodeclaim %s status: %w", name, err)
	}
	return nil
}

func (k *kubeCluster) Launch(ctx context.Context, key string, _ Replacement) (string, error) {
	name := "new-" + key[:8]
	var existing karpv1.NodeClaim
	if err := k.c.Get(ctx, client.ObjectKey{Name: name}, &existing); err == nil {
		return name, nil
	}
	return name, k.makeNode(ctx, name, "ami-new")
}

func (k *kubeCluster) Ready(ctx context.Context, claim string) (bool, error) {
	n, err := k.kube.CoreV1().Nodes().Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	c := nodeCondition(n, corev1.NodeReady)
	return c != nil && c.Status == corev1.ConditionTrue && len(n.Spec.Taints) == 0, nil
}

func (k *kubeCluster) Delete(ctx context.Context, claim string) error {
	if err := k.c.Delete(ctx, &karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: claim}}); client.IgnoreNotFound(err) != nil {
		return err
	}
	return client.IgnoreNotFound(k.kube.CoreV1().Nodes().Delete(ctx, claim, metav1.DeleteOptions{}))
}

// TestE2ERollingAMIUpdateKeepsPDB runs the controller against a real API
// server, scheduler, controller manager and kwok: publishing a new AMI rolls
// every node of the pool, one at a time (budget "1"), replacement first,
// while a Deployment's PDB (minAvailable 2 of 3) holds throughout; a leader
// failover in the middle carries on from the Raft state.
func TestE2ERollingAMIUpdateKeepsPDB(t *testing.T) {
	cp := controlplane.StartForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, karpv1.AddToScheme, awsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cp.RESTConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(cp.RESTConfig)
	k := &kubeCluster{t: t, kube: kube, c: c, ledger: newRaftLedger()}

	nc := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}}
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}}
	nc.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "e2e"}}}
	nc.Spec.SecurityGroupSelectorTerms = []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "e2e"}}}
	nc.Spec.Role = "e2e-node"
	if err := c.Create(ctx, nc); err != nil {
		t.Fatalf("create nodeclass: %v", err)
	}
	setAMI := func(id string) {
		t.Helper()
		if err := c.Get(ctx, client.ObjectKey{Name: "e2e"}, nc); err != nil {
			t.Fatal(err)
		}
		nc.Status.AMIs = []awsv1.AMI{{ID: id, Requirements: []corev1.NodeSelectorRequirement{{Key: corev1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}}}}}
		if err := c.Status().Update(ctx, nc); err != nil {
			t.Fatalf("nodeclass status: %v", err)
		}
	}
	setAMI("ami-old")
	np := &karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}}
	np.Spec.Template.Spec.NodeClassRef = &karpv1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: "e2e"}
	np.Spec.Template.Spec.Requirements = []karpv1.NodeSelectorRequirementWithMinValues{{Key: karpv1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"on-demand"}}}
	np.Spec.Disruption = karpv1.Disruption{ConsolidateAfter: karpv1.NeverDuration(), ConsolidationPolicy: karpv1.ConsolidationPolicyWhenEmptyOrUnderutilized,
		Budgets: []karpv1.Budget{{Nodes: "1"}}}
	if err := c.Create(ctx, np); err != nil {
		t.Fatalf("create nodepool: %v", err)
	}
	for i := range 3 {
		if err := k.makeNode(ctx, fmt.Sprintf("old-%d", i), "ami-old"); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app": "web"}
	replicas := int32(3)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "web", Image: "nginx", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("512Mi")}}}},
				TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelHostname,
					WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}}}}}}
	if _, err := kube.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	minAvail := intstr.FromInt32(2)
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &minAvail, Selector: &metav1.LabelSelector{MatchLabels: labels}}}
	if _, err := kube.PolicyV1().PodDisruptionBudgets("default").Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	readyPods := func() int {
		pods, err := kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return -1
		}
		n := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					n++
				}
			}
		}
		return n
	}
	for readyPods() < 3 {
		if ctx.Err() != nil {
			t.Fatal("web pods never became Ready")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Watch availability and concurrency for the whole rollout.
	var mu sync.Mutex
	minReady, maxBusy := 3, 0
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for watchCtx.Err() == nil {
			r := readyPods()
			busy := len(k.ledger.f.State().Disruptions)
			mu.Lock()
			if r >= 0 && r < minReady {
				minReady = r
			}
			maxBusy = max(maxBusy, busy)
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()

	newController := func() *Controller {
		dr, err := drain.New(kube, drain.Options{RetryInterval: 200 * time.Millisecond, PollInterval: 100 * time.Millisecond, Registry: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		ctl, err := NewController(Config{ValidationDelay: -1, PollInterval: 200 * time.Millisecond, ReplacementTimeout: time.Minute,
			Planner: Options{SurgeTimeout: 30 * time.Second}, Registry: prometheus.NewRegistry(),
			Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}, k, k.ledger, k, dr, &fakeEvents{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ctl
	}
	setAMI("ami-new") // a new release behind al2023@latest
	ctl := newController()
	failedOver := false
	for {
		if ctx.Err() != nil {
			t.Fatalf("rollout did not finish: %+v", k.ledger.f.State().Rollouts["e2e"])
		}
		if err := ctl.Pass(ctx); err != nil {
			t.Logf("pass: %v", err)
		}
		ctl.Wait()
		r := k.ledger.f.State().Rollouts["e2e"]
		if r != nil && len(r.Done) == 1 && !failedOver {
			ctl = newController() // leader failover mid-rollout
			failedOver = true
		}
		if r != nil {
			if done, total, state := RolloutProgress(*r); state == "Complete" && done == 3 && total == 3 {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	stopWatch()
	mu.Lock()
	defer mu.Unlock()
	if minReady < 2 {
		t.Fatalf("PDB minAvailable 2 violated: only %d web pod(s) Ready at one point", minReady)
	}
	if maxBusy > 1 {
		t.Fatalf("budget \"1\" allows one node at a time, saw %d", maxBusy)
	}
	nodes, _ := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	for _, n := range nodes.Items {
		if len(n.Name) > 3 && n.Name[:4] == "old-" {
			t.Fatalf("old node %s still there", n.Name)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
