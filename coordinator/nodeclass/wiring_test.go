package nodeclass_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud/ec2"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/coordinator/wiring"
	"github.com/dovetail-dev/dovetail/kubeclient"
)

// TestWiredComponent runs the component wiring.Components builds — what the
// coordinator binary runs on the leader — and checks it writes status, and
// that it is left out without a cloud or when turned off.
func TestWiredComponent(t *testing.T) {
	cp := controlplane.Shared(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sim := ec2sim.New(ec2sim.Config{DisableIMDS: true, ClusterName: "nc-wired", Logger: quiet})
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	prov, err := ec2.New(context.Background(), ec2.Config{
		Region: sim.Region(), Endpoint: sim.URL(), Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		ClusterName: "nc-wired", KubernetesVersion: "1.37", Logger: quiet, MaxAttempts: 3, MaxBackoff: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	// A cloud but no launcher: the EC2NodeClass status controller and the
	// capacity-type relabeller (ended reservations) are the cloud components
	// (the NodePool status controller runs whenever there is Kubernetes).
	rt := &coordinator.Runtime{Store: &raftnode.Node{}, Cloud: prov, Log: quiet, Registry: reg}
	o := wiring.Options{RESTConfig: cp.RESTConfig}
	o.NodeClass.Interval = 100 * time.Millisecond
	names := func(comps []leader.Named) []string {
		var out []string
		for _, c := range comps {
			out = append(out, c.Name)
		}
		return out
	}
	comps, err := wiring.Components(rt, o)
	if got := names(comps); err != nil || !slices.Equal(got, []string{"nodeclass-status", "capacity-type", "nodepool-status", "nodeclaim-consistency", "karpenter-metrics"}) {
		t.Fatalf("components %v, %v", got, err)
	}
	o.NoNodeClass = true
	if off, err := wiring.Components(rt, o); err != nil || slices.Contains(names(off), "nodeclass-status") {
		t.Fatalf("NoNodeClass: %v, %v", names(off), err)
	}
	if none, err := wiring.Components(&coordinator.Runtime{Store: &raftnode.Node{}}, wiring.Options{RESTConfig: cp.RESTConfig}); err != nil || slices.Contains(names(none), "nodeclass-status") {
		t.Fatalf("without a cloud: %v, %v", names(none), err)
	}

	c, err := kubeclient.New(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	nc := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "nc-wired"}, Spec: awsv1.EC2NodeClassSpec{
		AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "bottlerocket@latest"}},
		SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "nc-wired"}}},
		SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "nc-wired"}}},
		Role:                       "node-role",
	}}
	if err := c.Create(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), nc) })

	// Two terms in a row: the second must be able to register its metrics again.
	for term := uint64(1); term <= 2; term++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- comps[0].Run(ctx, term) }()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := &awsv1.EC2NodeClass{}
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(nc), got); err != nil {
				t.Fatal(err)
			}
			if got.IsTrue(awsv1.ConditionTypeReady) && len(got.Status.AMIs) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("term %d: status never filled: %+v", term, got.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("term %d: Run: %v", term, err)
		}
		if term == 1 {
			// The status stays; clear it so term 2 has to write it again.
			got := &awsv1.EC2NodeClass{}
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(nc), got); err != nil {
				t.Fatal(err)
			}
			got.Status = awsv1.EC2NodeClassStatus{}
			if err := c.Status().Update(context.Background(), got); err != nil {
				t.Fatal(err)
			}
		}
	}
}
