package launcher_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	corev1 "k8s.io/api/core/v1"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator/eventdedupe"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/launcher"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/kubeclient"
)

const cluster = "dovetail-launcher-kube"

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNodeClaimLifecycleOnKubernetes runs the launcher against a real API
// server and the EC2 simulator (which registers kwok nodes): the NodeClaim
// is created with the termination finalizer, gets providerID, capacity and
// the Launched condition, turns Registered and Initialized when its node is
// Ready, and deleting it terminates the instance before the finalizer goes.
func TestNodeClaimLifecycleOnKubernetes(t *testing.T) {
	cp := controlplane.StartForTest(t)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	sim := ec2sim.New(ec2sim.Config{DisableIMDS: true, ClusterName: cluster, RESTConfig: cp.RESTConfig})
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	prov, err := ec2.New(ctx, ec2.Config{Region: sim.Region(), Endpoint: sim.URL(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		ClusterName: cluster, ClusterEndpoint: "https://10.0.0.1:6443", ClusterCA: "Q0EK",
		KubernetesVersion: "1.37", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}

	kc, err := kubeclient.New(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	nodeClass := &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": cluster}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": cluster}}},
			Role:                       "KarpenterNodeRole-" + cluster,
		},
	}
	if err := kc.Create(ctx, nodeClass); err != nil {
		t.Fatal(err)
	}

	// A one-replica Raft is enough here: the protocol's fault tolerance is
	// tested in package coordinator; this test is about Kubernetes.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	node, err := raftnode.Start(ctx, raftnode.Config{ID: "solo", DataDir: filepath.Join(t.TempDir(), "raft"), BindAddr: addr,
		Peers: []raftnode.Peer{{ID: "solo", RaftAddr: addr}}, SegmentSize: 1 << 20, Logger: quiet,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Kill() })
	waitUntil(t, "leadership", 10*time.Second, func() (bool, string) { return node.IsLeader(), "not leader" })

	kube := kubernetes.NewForConfigOrDie(cp.RESTConfig)
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	t.Cleanup(bc.Shutdown)
	events := eventdedupe.New(bc.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "dovetail-launcher"}), nil)
	la, err := launcher.New(launcher.Config{Cloud: prov, Store: node, Claims: &launcher.KubeClaims{C: kc},
		Interval: 200 * time.Millisecond, NodeGrace: time.Millisecond, Log: quiet, Events: events})
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	term := node.Term()
	go func() { _ = la.Run(lctx, term) }()
	waitUntil(t, "launcher bound", 5*time.Second, func() (bool, string) { return la.Term() == term, "unbound" })

	nc := &karpv1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "default-abcde", Labels: map[string]string{karpv1.NodePoolLabelKey: "default"}},
		Spec: karpv1.NodeClaimSpec{
			NodeClassRef: &karpv1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
			Requirements: []karpv1.NodeSelectorRequirementWithMinValues{{Key: karpv1.LabelInstanceType, Operator: "In", Values: []string{"m5.large"}}},
		},
	}
	opts := []cloud.LaunchOption{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloud.CapacityTypeOnDemand, Price: 0.096}}
	if err := la.Launch(ctx, nc, opts); err != nil {
		t.Fatal(err)
	}
	// A repeated launch of the same NodeClaim is a no-op.
	if err := la.Launch(ctx, nc, opts); err != nil {
		t.Fatal(err)
	}
	got := &karpv1.NodeClaim{}
	if err := kc.Get(ctx, client.ObjectKey{Name: nc.Name}, got); err != nil {
		t.Fatal(err)
	}
	if len(got.Finalizers) != 1 || got.Finalizers[0] != karpv1.TerminationFinalizer {
		t.Fatalf("finalizers = %v", got.Finalizers)
	}
	if got.Status.ProviderID == "" || got.Status.ImageID == "" || !got.IsTrue(karpv1.ConditionTypeLaunched) {
		t.Fatalf("status after launch = %+v", got.Status)
	}
	if got.Labels[karpv1.LabelInstanceType] != "m5.large" || got.Labels[karpv1.LabelTopologyZone] != "us-east-1a" {
		t.Fatalf("labels = %v", got.Labels)
	}
	if got.GetCondition(karpv1.ConditionTypeReady) == nil {
		t.Fatalf("no root Ready condition after launch: %s", conditionsString(got))
	}
	instanceID := la.Intent(nc.Name).Instance.ID

	waitUntil(t, "Registered and Initialized", 60*time.Second, func() (bool, string) {
		if err := kc.Get(ctx, client.ObjectKey{Name: nc.Name}, got); err != nil {
			return false, err.Error()
		}
		in := node.State().IntentByNodeClaim(nc.Name)
		return got.IsTrue(karpv1.ConditionTypeRegistered) && got.IsTrue(karpv1.ConditionTypeInitialized) && got.Status.NodeName != "" &&
				got.IsTrue(karpv1.ConditionTypeReady) &&
				in != nil && in.Initialized,
			"conditions " + conditionsString(got)
	})
	for l, v := range map[string]string{karpv1.NodeRegisteredLabelKey: "true", karpv1.NodeInitializedLabelKey: "true",
		karpv1.LabelNodeClass: "default", karpv1.AWSGroup + "/instance-tenancy": "default"} {
		if got.Labels[l] != v {
			t.Errorf("NodeClaim label %s = %q, want %q (labels %v)", l, got.Labels[l], v, got.Labels)
		}
	}
	kn := &corev1.Node{}
	if err := kc.Get(ctx, client.ObjectKey{Name: got.Status.NodeName}, kn); err != nil {
		t.Fatal(err)
	}
	if kn.Labels[karpv1.NodeRegisteredLabelKey] != "true" || kn.Labels[karpv1.NodeInitializedLabelKey] != "true" {
		t.Errorf("Node labels %v lack karpenter.sh/registered and initialized", kn.Labels)
	}
	st := node.State()
	if in := st.IntentByNodeClaim(nc.Name); !in.Registered || !in.Initialized || in.NodeName != got.Status.NodeName {
		t.Fatalf("intent after registration = %+v", in)
	}
	if b := st.Bindings[instanceID]; b == nil || b.NodeName != got.Status.NodeName {
		t.Fatalf("binding = %+v", b)
	}

	// A claim whose EC2NodeClass does not exist is not launched and says
	// why, with Karpenter's Launched=Unknown reason.
	orphan := nc.DeepCopy()
	orphan.ObjectMeta = metav1.ObjectMeta{Name: "default-nocls", Labels: nc.Labels}
	orphan.Spec.NodeClassRef = &karpv1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "missing"}
	if err := la.Launch(ctx, orphan, opts); err == nil {
		t.Fatal("launch with a missing EC2NodeClass succeeded")
	}
	og := &karpv1.NodeClaim{}
	if err := kc.Get(ctx, client.ObjectKey{Name: orphan.Name}, og); err != nil {
		t.Fatal(err)
	}
	if c := og.GetCondition(karpv1.ConditionTypeLaunched); c == nil || c.Status != metav1.ConditionUnknown || c.Reason != launcher.ReasonNodeClassNotReady || !strings.Contains(c.Message, "missing") {
		t.Fatalf("Launched condition of a claim without its EC2NodeClass: %+v", c)
	}
	// Retried launches of it record Karpenter's NodeClassNotReady once.
	if err := la.Launch(ctx, orphan, opts); err == nil {
		t.Fatal("second launch with a missing EC2NodeClass succeeded")
	}
	claimEvent(ctx, t, kube, orphan.Name, "NodeClassNotReady", `NodeClaim default-nocls event: get EC2NodeClass "missing"`)
	_ = kc.Delete(ctx, og)

	// Every option out of capacity: Karpenter's InsufficientCapacityError
	// on the NodeClaim, naming the offerings EC2 refused.
	if err := sim.ExhaustPool("m5.xlarge", "us-east-1b", cloud.CapacityTypeOnDemand); err != nil {
		t.Fatal(err)
	}
	iced := nc.DeepCopy()
	iced.ObjectMeta = metav1.ObjectMeta{Name: "default-iced", Labels: nc.Labels}
	iceOpts := []cloud.LaunchOption{{InstanceType: "m5.xlarge", Zone: "us-east-1b", CapacityType: cloud.CapacityTypeOnDemand, Price: 0.192}}
	var ice *cloud.InsufficientCapacityError
	if err := la.Launch(ctx, iced, iceOpts); !errors.As(err, &ice) {
		t.Fatalf("launch into an exhausted pool: %v, want an insufficient-capacity error", err)
	}
	claimEvent(ctx, t, kube, iced.Name, "InsufficientCapacityError", "NodeClaim default-iced event: insufficient capacity for every launch option: m5.xlarge/us-east-1b/on-demand: InsufficientInstanceCapacity")

	if err := kc.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "NodeClaim gone and instance terminated", 30*time.Second, func() (bool, string) {
		err := kc.Get(ctx, client.ObjectKey{Name: nc.Name}, &karpv1.NodeClaim{})
		inst, _ := sim.Instance(instanceID)
		gone := apierrors.IsNotFound(err)
		terminated := inst.State == cloud.StateTerminated || inst.State == cloud.StateShuttingDown
		intents := 0
		node.View(func(s *fsm.State) { intents = len(s.Intents) })
		return gone && terminated && intents == 0, "claim gone=" + boolStr(gone) + " instance " + inst.State
	})
}

// claimEvent waits for exactly one Warning Event of reason on the NodeClaim
// whose message starts with prefix.
func claimEvent(ctx context.Context, t *testing.T, kube kubernetes.Interface, claim, reason, prefix string) {
	t.Helper()
	waitUntil(t, reason+" Event on NodeClaim "+claim, 15*time.Second, func() (bool, string) {
		evs, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + claim + ",reason=" + reason})
		if err != nil {
			return false, err.Error()
		}
		var got []string
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == "NodeClaim" && e.Type == corev1.EventTypeWarning && e.Count == 1 && strings.HasPrefix(e.Message, prefix) {
				return len(evs.Items) == 1, fmt.Sprintf("%d events", len(evs.Items))
			}
			got = append(got, fmt.Sprintf("%s x%d %q", e.Reason, e.Count, e.Message))
		}
		return false, fmt.Sprintf("events %v", got)
	})
}

func conditionsString(nc *karpv1.NodeClaim) string {
	s := ""
	for _, c := range nc.Status.Conditions {
		s += c.Type + "=" + string(c.Status) + " "
	}
	return s
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestSetReadySummarisesLaunchRegisterInitialize(t *testing.T) {
	nc := &karpv1.NodeClaim{}
	launcher.SetReady(nc)
	if c := nc.GetCondition(karpv1.ConditionTypeReady); c.Status != metav1.ConditionUnknown || c.Reason != "UnhealthyDependents" {
		t.Fatalf("fresh claim Ready = %+v", c)
	}
	nc.SetTrue(karpv1.ConditionTypeLaunched, "Launched", "")
	nc.SetFalse(karpv1.ConditionTypeRegistered, "NodeNotFound", "")
	launcher.SetReady(nc)
	if c := nc.GetCondition(karpv1.ConditionTypeReady); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "Registered=False") {
		t.Fatalf("Ready with Registered=False = %+v", c)
	}
	nc.SetTrue(karpv1.ConditionTypeRegistered, "Registered", "")
	nc.SetTrue(karpv1.ConditionTypeInitialized, "Initialized", "")
	launcher.SetReady(nc)
	if !nc.IsTrue(karpv1.ConditionTypeReady) {
		t.Fatalf("Ready with all dependents True = %+v", nc.GetCondition(karpv1.ConditionTypeReady))
	}
}
