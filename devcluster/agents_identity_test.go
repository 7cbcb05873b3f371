package devcluster

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/drain"
)

// TestAgentsActAsTheirNode: on the dev cluster's real control plane (Node
// authorizer, NodeRestriction) each agent gets its node's own client
// certificate, system:node:<name>. On a spot notice it cordons its Node and
// records the Draining Event with that identity; the taints are refused to
// it, so the Node carries none.
func TestAgentsActAsTheirNode(t *testing.T) {
	cp := controlplane.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sim := ec2sim.New(ec2sim.Config{TerminateDelay: 100 * time.Millisecond, Logger: log})
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	in := launchSpot(ctx, t, sim, "agents-identity-test")
	admin, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: in.PrivateDNS}, Spec: corev1.NodeSpec{ProviderID: in.ProviderID},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Nodes().Delete(context.Background(), in.PrivateDNS, metav1.DeleteOptions{}) })

	var out bytes.Buffer
	cl := &Cluster{StateDir: t.TempDir(), Log: log, Out: &out, ControlPlane: cp, RESTConfig: cp.RESTConfig}
	a := &Agents{PollInterval: 50 * time.Millisecond, IMDSInterval: 100 * time.Millisecond}
	if err := a.start(ctx, cl, sim, nil); err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	eventually(t, 20*time.Second, "an agent for the node", func() bool {
		return strings.Join(a.Nodes(), ",") == in.PrivateDNS
	})
	if _, err := sim.InterruptSpot(in.ID); err != nil {
		t.Fatal(err)
	}
	var n *corev1.Node
	eventually(t, 20*time.Second, "the node cordoned by its agent", func() bool {
		n, err = admin.CoreV1().Nodes().Get(ctx, in.PrivateDNS, metav1.GetOptions{})
		return err == nil && n.Spec.Unschedulable && n.Annotations[drain.CordonedByAnnotation] == agentComponent
	})
	for _, taint := range n.Spec.Taints {
		if taint.Key == drain.DisruptedTaintKey || taint.Key == drain.InterruptionTaintKey {
			t.Errorf("a node identity put a disruption taint on its own Node: %v", n.Spec.Taints)
		}
	}
	var draining *corev1.Event
	eventually(t, 10*time.Second, "the agent's Draining Event", func() bool {
		evs, err := admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + in.PrivateDNS})
		if err != nil {
			return false
		}
		for i := range evs.Items {
			if evs.Items[i].Reason == "Draining" {
				draining = &evs.Items[i]
				return true
			}
		}
		return false
	})
	if !strings.Contains(draining.Message, "taints refused") {
		t.Errorf("Draining Event does not say the taints were refused: %q", draining.Message)
	}
}
