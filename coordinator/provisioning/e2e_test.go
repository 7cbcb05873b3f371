package provisioning

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/prometheus/client_golang/prometheus/testutil"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/controlplane"
)

// kwokLauncher stands in for the coordinator's launcher in this test: it
// creates the NodeClaim in Kubernetes and, instead of calling EC2, a kwok
// Node of the first option's type, zone and capacity type.
type kwokLauncher struct {
	kube  kubernetes.Interface
	dyn   dynamic.Interface
	types map[string]*cloud.InstanceType

	mu       sync.Mutex
	launched []cloud.LaunchOption
}

func (k *kwokLauncher) Launch(ctx context.Context, nc *karpv1.NodeClaim, opts []cloud.LaunchOption) error {
	if len(opts) == 0 {
		return fmt.Errorf("no launch options")
	}
	o := opts[0]
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(nc)
	if err != nil {
		return err
	}
	created, err := k.dyn.Resource(NodeClaimsGVR).Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create nodeclaim: %w", err)
	}
	it := k.types[o.InstanceType]
	name := "kwok-" + nc.Name
	labels := map[string]string{}
	for k2, v := range it.Labels {
		labels[k2] = v
	}
	for k2, v := range nc.Labels {
		labels[k2] = v
	}
	labels[corev1.LabelHostname] = name
	labels[corev1.LabelTopologyZone] = o.Zone
	labels[karpv1.CapacityTypeLabelKey] = o.CapacityType
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: map[string]string{controlplane.KwokNodeAnnotation: "fake"}},
		Spec:       corev1.NodeSpec{ProviderID: cloud.ProviderID(o.Zone, "i-"+nc.Name)},
		Status:     corev1.NodeStatus{Capacity: it.Capacity, Allocatable: it.Allocatable},
	}
	if _, err := k.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	_ = unstructured.SetNestedField(created.Object, name, "status", "nodeName")
	_ = unstructured.SetNestedField(created.Object, node.Spec.ProviderID, "status", "providerID")
	if _, err := k.dyn.Resource(NodeClaimsGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("nodeclaim status: %w", err)
	}
	k.mu.Lock()
	k.launched = append(k.launched, o)
	k.mu.Unlock()
	return nil
}

type iceTypes struct{ types []*cloud.InstanceType }

func (i iceTypes) InstanceTypes(context.Context) ([]*cloud.InstanceType, error) { return i.types, nil }

func mustCreate(t *testing.T, dyn dynamic.Interface, obj runtime.Object, gvrRes string) {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	gvr := NodePoolsGVR
	if gvrRes == "ec2nodeclasses" {
		gvr = EC2NodeClassesGVR
	}
	if _, err := dyn.Resource(gvr).Create(context.Background(), &unstructured.Unstructured{Object: m}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", gvrRes, err)
	}
}

// TestEndToEndScaleUp: against a real API server, scheduler and kwok, a
// Deployment scaled from 0 to 300 replicas with mixed requests ends with
// every pod Running on launched nodes, no NodePool limit exceeded, and a
// pool whose spot capacity is exhausted launching on-demand instead.
func TestEndToEndScaleUp(t *testing.T) {
	cp := controlplane.StartForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kube := kubernetes.NewForConfigOrDie(cp.RESTConfig)
	dyn := dynamic.NewForConfigOrDie(cp.RESTConfig)

	all := catalog.MustLoad().InstanceTypes("us-east-1", []string{"us-east-1a", "us-east-1b", "us-east-1c"})
	byName := map[string]*cloud.InstanceType{}
	var its []*cloud.InstanceType
	for _, it := range all {
		byName[it.Name] = it
		// Spot is exhausted everywhere (the insufficient-capacity cache).
		c := *it
		c.Offerings = nil
		for _, o := range it.Offerings {
			if o.CapacityType == cloud.CapacityTypeSpot {
				o.Available = false
			}
			c.Offerings = append(c.Offerings, o)
		}
		its = append(its, &c)
	}

	nodeClass := map[string]any{"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": map[string]any{"name": "default"},
		"spec": map[string]any{"role": "NodeRole", "amiSelectorTerms": []any{map[string]any{"alias": "al2023@latest"}},
			"subnetSelectorTerms":        []any{map[string]any{"tags": map[string]any{"env": "test"}}},
			"securityGroupSelectorTerms": []any{map[string]any{"tags": map[string]any{"env": "test"}}}}}
	if _, err := dyn.Resource(EC2NodeClassesGVR).Create(ctx, &unstructured.Unstructured{Object: nodeClass}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ec2nodeclass: %v", err)
	}
	cpuLimit := resource.MustParse("300")
	pool := nodePool("default", corev1.ResourceList{corev1.ResourceCPU: cpuLimit},
		karpv1.NodeSelectorRequirementWithMinValues{Key: karpv1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"spot", "on-demand"}},
		karpv1.NodeSelectorRequirementWithMinValues{Key: "karpenter.k8s.aws/instance-category", Operator: corev1.NodeSelectorOpIn, Values: []string{"c", "m", "r"}},
		karpv1.NodeSelectorRequirementWithMinValues{Key: corev1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}})
	pool.UID = ""
	pool.Spec.Template.Spec.StartupTaints = nil
	mustCreate(t, dyn, pool, "nodepools")
	// A pool whose requirements no instance type meets: Karpenter's
	// NoCompatibleInstanceTypes on it, and the scale-up unaffected.
	none := nodePool("no-such-category", nil,
		karpv1.NodeSelectorRequirementWithMinValues{Key: "karpenter.k8s.aws/instance-category", Operator: corev1.NodeSelectorOpIn, Values: []string{"zz"}})
	none.UID = ""
	mustCreate(t, dyn, none, "nodepools")
	// A pod no pool can fit: Karpenter's FailedScheduling, once however
	// many passes it stays pending through.
	giant := pendingPod("giant", "1000")
	giant.UID, giant.Status = "", corev1.PodStatus{}
	giant.Spec.Containers[0].Image = "fake"
	if _, err := kube.CoreV1().Pods("default").Create(ctx, giant, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	l := &kwokLauncher{kube: kube, dyn: dyn, types: byName}
	c, err := New(Config{Kube: kube, Dynamic: dyn, InstanceTypes: iceTypes{its}, Launcher: l, Region: "us-east-1",
		IdleGap: 500 * time.Millisecond, MaxWindow: 3 * time.Second, Resync: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() { stop(); <-done }()

	shapes := []struct{ cpu, mem string }{{"250m", "512Mi"}, {"500m", "1Gi"}, {"1", "2Gi"}}
	for i, sh := range shapes {
		name := fmt.Sprintf("app-%d", i)
		zero := int32(0)
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: appsv1.DeploymentSpec{
			Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "c", Image: "fake", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse(sh.cpu), corev1.ResourceMemory: resource.MustParse(sh.mem)}}}}}}}}
		if _, err := kube.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: autoscalingv1.ScaleSpec{Replicas: 100}}
		if _, err := kube.AppsV1().Deployments("default").UpdateScale(ctx, name, scale, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	var running int
	for ctx.Err() == nil {
		pods, err := kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err == nil {
			running = 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && strings.HasPrefix(p.Spec.NodeName, "kwok-") {
					running++
				}
			}
			if running == 300 {
				break
			}
		}
		time.Sleep(time.Second)
	}
	if running != 300 {
		t.Fatalf("%d of 300 pods running on launched nodes", running)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var cpu resource.Quantity
	for _, o := range l.launched {
		if o.CapacityType != cloud.CapacityTypeOnDemand {
			t.Errorf("launched %s as %s although spot is exhausted", o.InstanceType, o.CapacityType)
		}
		q := byName[o.InstanceType].Capacity[corev1.ResourceCPU]
		cpu.Add(q)
	}
	if cpu.Cmp(cpuLimit) > 0 {
		t.Errorf("launched %s cpu, over the pool's limit %s", cpu.String(), cpuLimit.String())
	}
	t.Logf("300 pods running on %d launched nodes (%s cpu)", len(l.launched), cpu.String())
	checkProvisioningEvents(ctx, t, kube, func() float64 { return testutil.ToFloat64(c.metrics.batches) })
}

// checkProvisioningEvents reads the Events the provisioner recorded on the
// real API server: Nominated on launched-for pods, FailedScheduling on the
// pod no pool fits (naming each pool's reason) recorded once across several
// passes, NoCompatibleInstanceTypes on the pool that matches no type.
func checkProvisioningEvents(ctx context.Context, t *testing.T, kube kubernetes.Interface, passes func() float64) {
	t.Helper()
	type seen struct {
		count int32
		msg   string
	}
	read := func() (map[string]seen, int) {
		evs, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list events: %v", err)
		}
		out := map[string]seen{}
		nominated := 0
		for _, e := range evs.Items {
			if e.Source.Component != "dovetail-provisioner" {
				continue
			}
			k := e.Reason + " " + e.InvolvedObject.Kind + "/" + e.InvolvedObject.Name
			if e.Reason == "Nominated" {
				nominated++
				// A new or in-flight claim, or a node launched earlier.
				if !strings.HasPrefix(e.Message, "Pod should schedule on: nodeclaim/") && !strings.HasPrefix(e.Message, "Pod should schedule on: node/kwok-") {
					t.Errorf("Nominated message %q", e.Message)
				}
				continue
			}
			out[k] = seen{count: out[k].count + e.Count, msg: e.Message}
		}
		return out, nominated
	}
	var got map[string]seen
	var nominated int
	for ctx.Err() == nil {
		got, nominated = read()
		if got["FailedScheduling Pod/giant"].count > 0 && got["NoCompatibleInstanceTypes NodePool/no-such-category"].count > 0 && nominated > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	fs := got["FailedScheduling Pod/giant"]
	for _, want := range []string{"Failed to schedule pod, ", "nodepool default: no instance type has enough cpu", "nodepool no-such-category: "} {
		if !strings.Contains(fs.msg, want) {
			t.Errorf("FailedScheduling message %q lacks %q", fs.msg, want)
		}
	}
	if nc := got["NoCompatibleInstanceTypes NodePool/no-such-category"]; nc.msg != "NodePool requirements filtered out all compatible available instance types" {
		t.Errorf("NoCompatibleInstanceTypes message %q", nc.msg)
	}
	if _, ok := got["NoCompatibleInstanceTypes NodePool/default"]; ok {
		t.Error("NoCompatibleInstanceTypes on the pool that launched")
	}
	// Three more passes with the giant still pending (resync every 2 s):
	// still one FailedScheduling, as Karpenter dedupes for 5 minutes.
	for start := passes(); passes() < start+3 && ctx.Err() == nil; {
		time.Sleep(200 * time.Millisecond)
	}
	got, _ = read()
	if n := got["FailedScheduling Pod/giant"].count; n != 1 {
		t.Errorf("FailedScheduling recorded %d times on the still-pending pod, want 1 (deduped)", n)
	}
	t.Logf("events: %d Nominated, FailedScheduling %q", nominated, fs.msg)
}
