package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/controlplane/manifest"
	"github.com/dovetail-dev/dovetail/daemon/agent"
	"github.com/dovetail-dev/dovetail/daemon/imds"
	"github.com/dovetail-dev/dovetail/drain"
)

// agentPolicyFile is the chart's ValidatingAdmissionPolicy for agents, as
// templates/agent-own-node-policy.yaml includes it.
var agentPolicyFile = filepath.Join("..", "..", "packaging", "helm", "dovetail-coordinator", "files", "agent-own-node-policy.yaml")

// agentPolicies are the chart's agent policies (and their bindings).
var agentPolicies = []string{"dovetail-agent-own-node", "dovetail-agent-own-pods"}

// applyAgentPolicy installs the chart's agent policies and waits until the
// API server enforces them (policies load asynchronously): each probe is a
// dry-run request the named policy refuses. Then it checks that the API
// server type-checked every expression without a warning.
func applyAgentPolicy(t *testing.T, cp *controlplane.ControlPlane, probes map[string]func() error) {
	t.Helper()
	data, err := os.ReadFile(agentPolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Decode(agentPolicyFile, data)
	if err != nil {
		t.Fatal(err)
	}
	a, err := manifest.NewApplier(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ApplyAll(t.Context(), objs); err != nil {
		t.Fatalf("apply %s: %v", agentPolicyFile, err)
	}
	admin, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, name := range agentPolicies {
			_ = admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
			_ = admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for policy, probe := range probes {
		for {
			err := probe()
			if err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policy+"'") {
				break
			}
			if err != nil && !apierrors.IsForbidden(err) {
				t.Fatalf("probe of %s: %v", policy, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not enforced after 30s (last probe: %v)", policy, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The API server type-checks every expression against the schema of
	// the kinds a policy matches; a warning is an expression that may fail
	// at run time.
	for _, name := range agentPolicies {
		for {
			vap, err := admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if vap.Status.ObservedGeneration == vap.Generation && vap.Status.TypeChecking != nil {
				for _, w := range vap.Status.TypeChecking.ExpressionWarnings {
					t.Errorf("%s: %s: %s", name, w.FieldRef, w.Warning)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never type-checked: %+v", name, vap.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// dryRun makes a write a server-side dry run: admission runs, nothing
// changes.
var dryRun = []string{metav1.DryRunAll}

// TestAttackAgentTouchesAnotherNode runs the real drain code with node A's
// own credentials (system:node:A, group system:nodes: what the agent reads
// from the kubelet's kubeconfig) against the real API server with the Node
// authorizer, NodeRestriction and the chart's agent policy: A cordons and
// drains itself; everything it tries on node B, or on the Karpenter labels
// of its own Node, is refused with a message naming the rule, and B is left
// as it was.
func TestAttackAgentTouchesAnotherNode(t *testing.T) {
	cp := controlplane.Shared(t)
	admin, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	nodeA, nodeB, ns := "agent-a-"+suffix, "agent-b-"+suffix, "agent-attack-"+suffix
	q := resource.MustParse
	for _, name := range []string{nodeA, nodeB} {
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{controlplane.KwokNodeAnnotation: controlplane.KwokNodeValue}},
			Spec:       corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-" + name},
			Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{"cpu": q("8"), "memory": q("32Gi"), "pods": q("110")},
				Capacity: corev1.ResourceList{"cpu": q("8"), "memory": q("32Gi"), "pods": q("110")}},
		}
		if _, err := admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	grace := int64(1)
	bindPods(t, ctx, admin, ns, []string{nodeA, nodeB}, 3, &grace)

	agentA := nodeClient(t, cp, nodeA)
	// The policy's own rule (NodeRestriction lets a node set any label
	// outside kubernetes.io and k8s.io): A may not put itself in a NodePool.
	steal := func(opts metav1.PatchOptions) error {
		patch := []byte(`{"metadata":{"labels":{"karpenter.sh/nodepool":"gpu"}}}`)
		_, err := agentA.CoreV1().Nodes().Patch(ctx, nodeA, types.StrategicMergePatchType, patch, opts)
		return err
	}
	applyAgentPolicy(t, cp, map[string]func() error{
		"dovetail-agent-own-node": func() error { return steal(metav1.PatchOptions{DryRun: dryRun}) },
		// Under NodeRestriction a node may delete only its own pods, so
		// only its own pod reaches this policy: the probe is that the
		// policy is type-checked, below; NodeRestriction answers first.
	})
	err = steal(metav1.PatchOptions{})
	wantRefused(t, "A labels itself into a NodePool", err,
		"dovetail: node "+nodeA+" may not change its Karpenter or Dovetail labels (karpenter.sh/nodepool)")

	// The agent finds its Node from its identity: the hostname IMDS gives
	// names B, which A may not even read.
	self, err := agent.ResolveNode(ctx, agentA, "", imds.Identity{InstanceID: "i-" + nodeA, AvailabilityZone: "us-east-1a", Hostname: nodeB})
	if err != nil || self.Name != nodeA {
		t.Fatalf("agent A resolved its node as %v (%v), want %s", self, err, nodeA)
	}

	d, err := drain.New(agentA, drain.Options{Component: "dovetail-agent", Logger: slog.New(slog.DiscardHandler),
		RetryInterval: 100 * time.Millisecond, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	// Node B: every request is refused and B is unchanged. The drain code
	// reads a Node before it writes it, and the Node authorizer lets a node
	// read only its own Node; a blind patch meets NodeRestriction.
	cannotRead := fmt.Sprintf("node '%s' cannot read '%s', only its own Node object", nodeA, nodeB)
	_, err = d.Cordon(ctx, nodeB)
	wantRefused(t, "A cordons B", err, cannotRead)
	_, err = d.Taint(ctx, nodeB, drain.DisruptionTaints(drain.InterruptionTaintKey, "spot")...)
	wantRefused(t, "A taints B", err, cannotRead)
	for what, patch := range map[string]string{
		"A cordons B blindly": `{"spec":{"unschedulable":true}}`,
		"A taints B blindly":  `{"spec":{"taints":[{"key":"karpenter.sh/disrupted","effect":"NoSchedule"}]}}`,
	} {
		_, err = agentA.CoreV1().Nodes().Patch(ctx, nodeB, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		wantRefused(t, what, err, fmt.Sprintf("node %q is not allowed to modify node %q", nodeA, nodeB))
	}
	podB := nodeB + "-0"
	err = agentA.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podB}})
	wantRefused(t, "A evicts a pod of B", err, fmt.Sprintf("node %s can only evict pods with spec.nodeName set to itself", nodeA))
	err = agentA.CoreV1().Pods(ns).Delete(ctx, podB, metav1.DeleteOptions{})
	wantRefused(t, "A deletes a pod of B", err, fmt.Sprintf("node %q can only delete pods with spec.nodeName set to itself", nodeA))
	res, err := d.Drain(ctx, nodeB, time.Now().Add(10*time.Second), "spot")
	wantRefused(t, "A drains B", err, cannotRead)
	if res.Accepted() != 0 {
		t.Fatalf("drain of B by A had %d evictions accepted", res.Accepted())
	}
	b, err := admin.CoreV1().Nodes().Get(ctx, nodeB, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Spec.Unschedulable || len(b.Spec.Taints) > 0 {
		t.Fatalf("node B changed by A's refused requests: unschedulable=%v taints=%v", b.Spec.Unschedulable, b.Spec.Taints)
	}
	if pods := podsBoundTo(t, admin, ns, nodeB); len(pods) != 3 {
		t.Fatalf("node B has %d pods after A's refused evictions, want 3", len(pods))
	}

	// Node A: taints are the API server's to refuse even on A itself
	// (NodeRestriction); cordon and drain go through.
	_, err = d.Taint(ctx, nodeA, drain.DisruptionTaints(drain.InterruptionTaintKey, "spot")...)
	wantRefused(t, "A taints A", err, fmt.Sprintf("node %q is not allowed to modify taints", nodeA))
	res, err = d.Drain(ctx, nodeA, time.Now().Add(45*time.Second), "spot")
	if err != nil {
		t.Fatalf("A drains A: %v", err)
	}
	if !res.Complete || res.Accepted() != 3 || res.TaintRefused == "" {
		t.Fatalf("A drains A: complete=%v accepted=%d taintRefused=%q stopped=%q", res.Complete, res.Accepted(), res.TaintRefused, res.Stopped)
	}
	a, err := admin.CoreV1().Nodes().Get(ctx, nodeA, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Spec.Unschedulable || a.Annotations[drain.CordonedByAnnotation] != "dovetail-agent" {
		t.Fatalf("node A not cordoned by its agent: unschedulable=%v annotations=%v", a.Spec.Unschedulable, a.Annotations)
	}
	if pods := podsBoundTo(t, admin, ns, nodeA); len(pods) != 0 {
		t.Fatalf("node A still has %d pods after its drain", len(pods))
	}
	if _, err := d.Uncordon(ctx, nodeA, false); err != nil {
		t.Fatalf("A uncordons A: %v", err)
	}
	if pods := podsBoundTo(t, admin, ns, nodeB); len(pods) != 3 {
		t.Fatalf("node B has %d pods after A drained itself, want 3", len(pods))
	}
}

func wantRefused(t *testing.T, what string, err error, msg string) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Fatalf("%s: want 403 Forbidden, got %v", what, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: refusal %q does not say %q", what, err, msg)
	}
	t.Logf("%s: refused: %v", what, err)
}

func podsBoundTo(t *testing.T, kc kubernetes.Interface, ns, node string) []corev1.Pod {
	t.Helper()
	list, err := kc.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// TestAgentPolicyBacksUpNodeRestriction: on an API server without
// NodeRestriction (the Node authorizer still on), the chart's policy alone
// keeps node A off node B and B's pods, with its own messages. What it
// cannot do is shown too: an Eviction names only the pod, which a
// ValidatingAdmissionPolicy cannot read, so without NodeRestriction A's
// eviction of B's pod goes through — the reason the chart's README requires
// NodeRestriction (on in EKS and kubeadm clusters).
func TestAgentPolicyBacksUpNodeRestriction(t *testing.T) {
	cp := controlplane.StartForTestWith(t, controlplane.Options{NoNodeRestriction: true, SkipKwok: true})
	admin, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	nodeA, nodeB, ns := "policy-a", "policy-b", "policy-attack"
	for _, name := range []string{nodeA, nodeB} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bindPods(t, ctx, admin, ns, []string{nodeA, nodeB}, 2, nil)
	agentA := nodeClient(t, cp, nodeA)
	patchNode := func(node, patch string) error {
		_, err := agentA.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	}
	applyAgentPolicy(t, cp, map[string]func() error{
		"dovetail-agent-own-node": func() error {
			_, err := agentA.CoreV1().Nodes().Patch(ctx, nodeB, types.StrategicMergePatchType, []byte(`{"spec":{"unschedulable":true}}`),
				metav1.PatchOptions{DryRun: dryRun})
			return err
		},
		"dovetail-agent-own-pods": func() error {
			return agentA.CoreV1().Pods(ns).Delete(ctx, nodeB+"-0", metav1.DeleteOptions{DryRun: dryRun})
		},
	})

	wantRefused(t, "A cordons B", patchNode(nodeB, `{"spec":{"unschedulable":true}}`),
		fmt.Sprintf("dovetail: system:node:%s may change only its own Node %s, not node %s", nodeA, nodeA, nodeB))
	wantRefused(t, "A taints B", patchNode(nodeB, `{"spec":{"taints":[{"key":"karpenter.sh/disrupted","effect":"NoSchedule"}]}}`),
		fmt.Sprintf("may change only its own Node %s, not node %s", nodeA, nodeB))
	wantRefused(t, "A marks itself do-not-disrupt", patchNode(nodeA, `{"metadata":{"annotations":{"karpenter.sh/do-not-disrupt":"true"}}}`),
		fmt.Sprintf("dovetail: node %s may not change its Karpenter or Dovetail annotations (karpenter.sh/do-not-disrupt)", nodeA))
	err = agentA.CoreV1().Pods(ns).Delete(ctx, nodeB+"-0", metav1.DeleteOptions{})
	wantRefused(t, "A deletes a pod of B", err,
		fmt.Sprintf("dovetail: node %s may delete only pods bound to it; pod %s/%s-0 is bound to node %s", nodeA, ns, nodeB, nodeB))

	// A's own Node and pods stay A's to act on.
	if err := patchNode(nodeA, `{"spec":{"unschedulable":true},"metadata":{"annotations":{"dovetail.dev/cordoned-by":"dovetail-agent"}}}`); err != nil {
		t.Fatalf("A cordons A: %v", err)
	}
	zero := int64(0)
	if err := agentA.CoreV1().Pods(ns).Delete(ctx, nodeA+"-0", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("A deletes its own pod: %v", err)
	}
	b, err := admin.CoreV1().Nodes().Get(ctx, nodeB, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Spec.Unschedulable || len(b.Spec.Taints) > 0 {
		t.Fatalf("node B changed by A's refused requests: unschedulable=%v taints=%v", b.Spec.Unschedulable, b.Spec.Taints)
	}
	// The limit: an Eviction carries no node, and the policy cannot look
	// the pod up.
	err = agentA.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: nodeB + "-1"}})
	if err != nil {
		t.Fatalf("without NodeRestriction A's eviction of B's pod was refused (%v): the README's requirement is out of date", err)
	}
	t.Logf("without NodeRestriction, A evicted %s/%s-1 of node B: NodeRestriction is required", ns, nodeB)
}

// bindPods creates n pods bound to each node directly (no scheduler), named
// <node>-<i>, with the given termination grace (nil: the default).
func bindPods(t *testing.T, ctx context.Context, c kubernetes.Interface, ns string, nodes []string, n int, grace *int64) {
	t.Helper()
	for _, node := range nodes {
		for i := range n {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", node, i)},
				Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: grace,
					Containers: []corev1.Container{{Name: "c", Image: "x.invalid/app:1"}}}}
			if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// nodeClient is a clientset authenticated as node's kubelet identity
// (system:node:<node> in system:nodes), as the agent on that node acts.
func nodeClient(t *testing.T, cp *controlplane.ControlPlane, node string) kubernetes.Interface {
	t.Helper()
	cfg, err := cp.NodeClientConfig(node)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
