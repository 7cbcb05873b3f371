package ec2

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
)

// The "done when": an instance the provider launches through the SDK
// becomes a Ready Node in the local control plane, carrying the labels and
// taints of its user data, and goes away when the provider terminates it.
func TestLaunchedInstanceBecomesReadyNode(t *testing.T) {
	cp := controlplane.StartForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	sim := ec2sim.New(ec2sim.Config{ClusterName: testCluster, RESTConfig: cp.RESTConfig, DisableIMDS: true})
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	p, err := New(ctx, Config{
		Region: sim.Region(), Endpoint: sim.URL(), Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		ClusterName: testCluster, ClusterEndpoint: cp.APIServerURL, ClusterCA: "Q0EK",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := p.Create(ctx, testNodeClass("default"), request("claim-node", opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.03)))
	if err != nil {
		t.Fatal(err)
	}
	kc := kubernetes.NewForConfigOrDie(cp.RESTConfig)

	node := waitNode(ctx, t, kc, inst.ProviderID, func(n *corev1.Node) bool {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	for k, want := range map[string]string{
		"team": "infra", "karpenter.sh/capacity-type": "spot", "karpenter.sh/nodepool": "default",
		"node.kubernetes.io/instance-type": "m5.large", "topology.kubernetes.io/zone": "us-east-1a",
	} {
		if node.Labels[k] != want {
			t.Errorf("node label %s = %q, want %q", k, node.Labels[k], want)
		}
	}
	found := false
	for _, tn := range node.Spec.Taints {
		if tn.Key == "dedicated" && tn.Value == "infra" && tn.Effect == corev1.TaintEffectNoSchedule {
			found = true
		}
	}
	if !found {
		t.Errorf("node taints = %v, want dedicated=infra:NoSchedule", node.Spec.Taints)
	}

	if err := p.Delete(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := p.Get(ctx, inst.ID); errors.Is(err, cloud.ErrNotFound) {
			break
		}
		if !sleepOrDone(ctx) {
			t.Fatal("instance never terminated")
		}
	}
	for {
		_, err := kc.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if !sleepOrDone(ctx) {
			t.Fatalf("node %s still there after termination", node.Name)
		}
	}
}

func waitNode(ctx context.Context, t *testing.T, kc kubernetes.Interface, providerID string, ok func(*corev1.Node) bool) *corev1.Node {
	t.Helper()
	for {
		nodes, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range nodes.Items {
				if n := &nodes.Items[i]; n.Spec.ProviderID == providerID && ok(n) {
					return n
				}
			}
		}
		if !sleepOrDone(ctx) {
			t.Fatalf("no ready node with providerID %s (last error %v)", providerID, err)
		}
	}
}

func sleepOrDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(200 * time.Millisecond):
		return true
	}
}
