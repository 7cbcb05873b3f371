package disruption

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/drain"
	"github.com/dovetail-dev/dovetail/kubeclient"
)

// kubeCluster is the e2e snapshot source and launcher: it reads the real
// API server and makes replacement nodes as kwok Nodes with NodeClaims.
type kubeCluster struct {
	t      *testing.T
	kube   kubernetes.Interface
	c      client.Client
	ledger *raftLedger
	pool   string // NodePool of the nodes it makes
	ami    string // AMI of the nodes it launches

	mu       sync.Mutex
	launched []string // instance types launched, in order
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
		if nps.Items[i].Name == k.pool {
			cs.NodePools = append(cs.NodePools, &nps.Items[i])
		}
	}
	for i := range ncs.Items {
		if ncs.Items[i].Name == k.pool {
			cs.NodeClasses = append(cs.NodeClasses, &ncs.Items[i])
		}
	}
	for i := range claims.Items {
		cs.NodeClaims = append(cs.NodeClaims, &claims.Items[i])
	}
	for i := range nodes.Items {
		if nodes.Items[i].Labels[karpv1.NodePoolLabelKey] == k.pool {
			cs.Nodes = append(cs.Nodes, &nodes.Items[i])
		}
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

// makeNode creates a kwok node of instance type typ (labels and
// allocatable from the catalogue) and its initialized NodeClaim on ami.
func (k *kubeCluster) makeNode(ctx context.Context, name, typ, ami string) error {
	it := typeByName(k.t, typ)
	labels := map[string]string{}
	for key, v := range it.Labels {
		labels[key] = v
	}
	labels[corev1.LabelHostname] = name
	labels[corev1.LabelTopologyZone] = "us-east-1a"
	labels[karpv1.CapacityTypeLabelKey] = "on-demand"
	labels[karpv1.NodePoolLabelKey] = k.pool
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels,
			Annotations: map[string]string{controlplane.KwokNodeAnnotation: controlplane.KwokNodeValue}},
		Status: corev1.NodeStatus{Capacity: it.Capacity, Allocatable: it.Allocatable},
	}
	if _, err := k.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	claim := &karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{karpv1.NodePoolLabelKey: k.pool}}}
	claim.Spec.NodeClassRef = &karpv1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: k.pool}
	claim.Spec.Requirements = []karpv1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelInstanceTypeStable, Operator: corev1.NodeSelectorOpIn, Values: []string{typ}}}
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
	k.mu.Lock()
	k.launched = append(k.launched, typ)
	k.mu.Unlock()
	return nil
}

// Launch makes the replacement: the cheapest option's type, or a node like
// the one replaced (SameAs), on the current AMI.
func (k *kubeCluster) Launch(ctx context.Context, key string, r Replacement) (string, error) {
	name := k.pool + "-new-" + key[:8]
	var existing karpv1.NodeClaim
	if err := k.c.Get(ctx, client.ObjectKey{Name: name}, &existing); err == nil {
		return name, nil
	}
	typ := "m5.large"
	if len(r.Options) > 0 {
		typ = r.Options[0].InstanceType
	}
	return name, k.makeNode(ctx, name, typ, k.ami)
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

// e2eSetup gets the package's shared control plane and creates an
// EC2NodeClass named like the pool; k makes nodes of NodePool pool and its
// snapshots see only that pool, so tests sharing the cluster do not meet.
func e2eSetup(t *testing.T, pool string) (context.Context, *kubeCluster, *awsv1.EC2NodeClass) {
	cp := controlplane.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	c, err := kubeclient.New(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(cp.RESTConfig)
	k := &kubeCluster{t: t, kube: kube, c: c, ledger: newRaftLedger(), pool: pool, ami: "ami-new"}
	nc := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: pool}}
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}}
	nc.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "e2e"}}}
	nc.Spec.SecurityGroupSelectorTerms = []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "e2e"}}}
	nc.Spec.Role = "e2e-node"
	if err := c.Create(ctx, nc); err != nil {
		t.Fatalf("create nodeclass: %v", err)
	}
	return ctx, k, nc
}

// e2eEvents records the controller's Events on the test's API server, as
// the coordinator does (KubeEvents on a broadcaster).
func e2eEvents(t *testing.T, kube kubernetes.Interface) Events {
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	t.Cleanup(bc.Shutdown)
	return KubeEvents{Recorder: bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "dovetail-disruption"})}
}

// wantEvents waits (the broadcaster sends asynchronously) until the API
// server holds an Event of each reason on the object kind/name whose
// message contains part.
func wantEvents(ctx context.Context, t *testing.T, kube kubernetes.Interface, kind, name, part string, reasons ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		evs, err := kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name})
		missing := []string{}
		var have []string
		if err == nil {
			for _, r := range reasons {
				found := false
				for _, e := range evs.Items {
					if e.Reason == r && strings.Contains(e.Message, part) {
						found = true
					}
				}
				if !found {
					missing = append(missing, r)
				}
			}
			for _, e := range evs.Items {
				have = append(have, e.Reason+": "+e.Message)
			}
		}
		if err == nil && len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: no %v Event containing %q (err %v); has:\n%s", kind, name, missing, part, err, strings.Join(have, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readyPods counts Ready, not deleting pods matching selector in ns.
func readyPods(ctx context.Context, kube kubernetes.Interface, ns, selector string) int {
	pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
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

// TestE2ERollingAMIUpdateKeepsPDB runs the controller against a real API
// server, scheduler, controller manager and kwok: publishing a new AMI rolls
// every node of the pool, one at a time (budget "1"), replacement first,
// while a Deployment's PDB (minAvailable 2 of 3) holds throughout; a leader
// failover in the middle carries on from the Raft state.
func TestE2ERollingAMIUpdateKeepsPDB(t *testing.T) {
	ctx, k, nc := e2eSetup(t, "e2e")
	c, kube := k.c, k.kube
	setAMI := func(id string) {
		t.Helper()
		if err := c.Get(ctx, client.ObjectKey{Name: k.pool}, nc); err != nil {
			t.Fatal(err)
		}
		nc.Status.AMIs = []awsv1.AMI{{ID: id, Requirements: []corev1.NodeSelectorRequirement{{Key: corev1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}}}}}
		if err := c.Status().Update(ctx, nc); err != nil {
			t.Fatalf("nodeclass status: %v", err)
		}
	}
	setAMI("ami-old")
	np := &karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}}
	np.Spec.Template.Spec.NodeClassRef = &karpv1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: k.pool}
	np.Spec.Template.Spec.Requirements = []karpv1.NodeSelectorRequirementWithMinValues{{Key: karpv1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"on-demand"}}}
	np.Spec.Disruption = karpv1.Disruption{ConsolidateAfter: karpv1.NeverDuration(), ConsolidationPolicy: karpv1.ConsolidationPolicyWhenEmptyOrUnderutilized,
		Budgets: []karpv1.Budget{{Nodes: "1"}}}
	if err := c.Create(ctx, np); err != nil {
		t.Fatalf("create nodepool: %v", err)
	}
	for i := range 3 {
		if err := k.makeNode(ctx, fmt.Sprintf("old-%d", i), "m5.large", "ami-old"); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app": "web"}
	replicas := int32(3)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{karpv1.NodePoolLabelKey: k.pool},
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
	webReady := func() int { return readyPods(ctx, kube, "default", "app=web") }
	for webReady() < 3 {
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
			r := webReady()
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

	events := e2eEvents(t, kube)
	newController := func() *Controller {
		dr, err := drain.New(kube, drain.Options{RetryInterval: 200 * time.Millisecond, PollInterval: 100 * time.Millisecond, Registry: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		ctl, err := NewController(Config{ValidationDelay: -1, PollInterval: 200 * time.Millisecond, ReplacementTimeout: time.Minute,
			Planner: Options{SurgeTimeout: 30 * time.Second}, Registry: prometheus.NewRegistry(),
			Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}, k, k.ledger, k, dr, events, nil)
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
	nodes, _ := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: karpv1.NodePoolLabelKey + "=" + k.pool})
	var replacements []string
	for _, n := range nodes.Items {
		if len(n.Name) > 3 && n.Name[:4] == "old-" {
			t.Fatalf("old node %s still there", n.Name)
		}
		replacements = append(replacements, n.Name)
	}
	// Karpenter's Events, on the real API server: each old Node and its
	// NodeClaim was disrupted as Drifted; each replacement NodeClaim was
	// launched and waited for; the budget ("1") held the others back, on
	// the nodes and on the NodePool.
	for i := range 3 {
		name := fmt.Sprintf("old-%d", i)
		wantEvents(ctx, t, kube, "Node", name, "Disrupting Node: Drifted", karpenterevents.DisruptionTerminating)
		wantEvents(ctx, t, kube, "NodeClaim", name, "Disrupting NodeClaim: Drifted", karpenterevents.DisruptionTerminating)
	}
	wantEvents(ctx, t, kube, "Node", "old-1", "Drifted: Budget: ", karpenterevents.DisruptionBlocked)
	wantEvents(ctx, t, kube, "NodePool", k.pool, "No allowed disruptions for disruption reason Drifted due to blocking budget", karpenterevents.DisruptionBlocked)
	for _, name := range replacements {
		wantEvents(ctx, t, kube, "NodeClaim", name, "Drifted", karpenterevents.DisruptionLaunching, karpenterevents.DisruptionWaitingReadiness)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// TestE2EConsolidationBusinessHours: a Deployment scaled down leaves two
// empty nodes and one underutilized m5.2xlarge. At Monday 10:00 UTC the
// business-hours budget lets the empty nodes go and holds the
// underutilized one; at 18:00 it is replaced by a cheaper type and its pod
// moves there.
func TestE2EConsolidationBusinessHours(t *testing.T) {
	ctx, k, nc := e2eSetup(t, "cons")
	c, kube := k.c, k.kube
	nc.Status.AMIs = []awsv1.AMI{{ID: "ami-1", Requirements: []corev1.NodeSelectorRequirement{{Key: corev1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}}}}}
	if err := c.Status().Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	k.ami = "ami-1"
	sched := "0 9 * * 1-5"
	np := &karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "cons"}}
	np.Spec.Template.Spec.NodeClassRef = &karpv1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: k.pool}
	for _, r := range testPool("x").Requirements {
		np.Spec.Template.Spec.Requirements = append(np.Spec.Template.Spec.Requirements, karpv1.NodeSelectorRequirementWithMinValues{Key: r.Key, Operator: r.Operator, Values: r.Values})
	}
	np.Spec.Disruption = karpv1.Disruption{ConsolidateAfter: karpv1.NewNillableDuration(30 * time.Second), ConsolidationPolicy: karpv1.ConsolidationPolicyWhenEmptyOrUnderutilized,
		Budgets: []karpv1.Budget{
			{Nodes: "0", Reasons: []karpv1.DisruptionReason{karpv1.DisruptionReasonUnderutilized, karpv1.DisruptionReasonDrifted}, Schedule: &sched, Duration: &metav1.Duration{Duration: 8 * time.Hour}},
			{Nodes: "100%", Reasons: []karpv1.DisruptionReason{karpv1.DisruptionReasonEmpty}},
			{Nodes: "10%"},
		}}
	if err := c.Create(ctx, np); err != nil {
		t.Fatalf("create nodepool: %v", err)
	}
	for _, name := range []string{"big-a", "big-b", "big-c"} {
		if err := k.makeNode(ctx, name, "m5.2xlarge", "ami-1"); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app": "api"}
	replicas := int32(3)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "api"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{karpv1.NodePoolLabelKey: k.pool},
				Containers: []corev1.Container{{Name: "api", Image: "api", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("2Gi")}}}},
				Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					LabelSelector: &metav1.LabelSelector{MatchLabels: labels}, TopologyKey: corev1.LabelHostname}}}}}}}}
	if _, err := kube.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("3 api pods", func() bool { return readyPods(ctx, kube, "default", "app=api") == 3 })
	// Scale down to one replica.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := kube.AppsV1().Deployments("default").Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			return err
		}
		one := int32(1)
		d.Spec.Replicas = &one
		_, err = kube.AppsV1().Deployments("default").Update(ctx, d, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	waitFor("1 api pod", func() bool {
		pods, err := kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
		return err == nil && len(pods.Items) == 1 && readyPods(ctx, kube, "default", "app=api") == 1
	})

	// Next Monday (after the nodes' creation, so consolidateAfter has passed).
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for now.Before(time.Now()) {
		now = now.AddDate(0, 0, 7)
	}
	evening := now.Add(8 * time.Hour)
	dr, err := drain.New(kube, drain.Options{RetryInterval: 200 * time.Millisecond, PollInterval: 100 * time.Millisecond, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := NewController(Config{ValidationDelay: -1, PollInterval: 200 * time.Millisecond, ReplacementTimeout: time.Minute,
		Registry: prometheus.NewRegistry(), Now: func() time.Time { return now }}, k, k.ledger, k, dr, e2eEvents(t, kube), nil)
	if err != nil {
		t.Fatal(err)
	}
	nodeNames := func() []string {
		nodes, _ := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: karpv1.NodePoolLabelKey + "=" + k.pool})
		var out []string
		for _, n := range nodes.Items {
			out = append(out, n.Name)
		}
		return out
	}
	if err := ctl.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	ctl.Wait()
	if got := nodeNames(); len(got) != 1 {
		t.Fatalf("in business hours the two empty nodes go and the busy one stays; nodes now %v", got)
	}
	busy := nodeNames()[0]
	p, _, _ := ctl.LatestPlan()
	if e := ExplainNode(p, mustSnapshot(t, k), busy); len(e.Skipped) == 0 || e.Skipped[0].Code != SkipBudget {
		t.Fatalf("the underutilized node should be held by the budget: %+v", e)
	}
	if len(k.launched) != 3 {
		t.Fatalf("nothing should be launched in business hours: %v", k.launched)
	}
	// Karpenter's Events for both: the empty nodes disrupted as Empty, the
	// held one blocked by the budget (on the Node, its NodeClaim and the
	// NodePool).
	for _, name := range []string{"big-a", "big-b", "big-c"} {
		if name != busy {
			wantEvents(ctx, t, kube, "Node", name, "Disrupting Node: Empty", karpenterevents.DisruptionTerminating)
		}
	}
	wantEvents(ctx, t, kube, "Node", busy, "Underutilized: Budget: ", karpenterevents.DisruptionBlocked)
	wantEvents(ctx, t, kube, "NodeClaim", busy, "Underutilized: Budget: ", karpenterevents.DisruptionBlocked)
	wantEvents(ctx, t, kube, "NodePool", k.pool, "No allowed disruptions for disruption reason Underutilized due to blocking budget", karpenterevents.DisruptionBlocked)

	now = evening
	if err := ctl.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	ctl.Wait()
	got := nodeNames()
	if len(got) != 1 || got[0] == busy {
		p, _, _ := ctl.LatestPlan()
		t.Fatalf("after hours the m5.2xlarge should be replaced; nodes now %v; plan %+v", got, p)
	}
	newType := k.launched[len(k.launched)-1]
	if priceOf(types(t), newType, "us-east-1a", "on-demand") >= priceOf(types(t), "m5.2xlarge", "us-east-1a", "on-demand") || newType == "m5.2xlarge" {
		t.Fatalf("replacement %s is not cheaper than m5.2xlarge", newType)
	}
	waitFor("the api pod on the new node", func() bool {
		pods, err := kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
		return err == nil && len(pods.Items) == 1 && pods.Items[0].Spec.NodeName == got[0] && readyPods(ctx, kube, "default", "app=api") == 1
	})
	wantEvents(ctx, t, kube, "NodeClaim", got[0], "Launching NodeClaim: Underutilized", karpenterevents.DisruptionLaunching)
	wantEvents(ctx, t, kube, "Node", busy, "Disrupting Node: Underutilized", karpenterevents.DisruptionTerminating)
	t.Logf("m5.2xlarge replaced by %s", newType)
}

func mustSnapshot(t *testing.T, k *kubeCluster) *Snapshot {
	s, err := k.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }
