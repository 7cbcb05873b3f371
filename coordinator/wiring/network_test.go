package wiring

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/drifthash"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// networkCluster is one NodePool, its EC2NodeClass (status as the nodeclass
// controller writes it), and one launched node whose instance the ledger
// recorded in subnet-a with security group sg-1.
func networkCluster(t *testing.T, subnets []string, groups []string) disruption.ClusterState {
	t.Helper()
	ctx := context.Background()
	created := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

	np := &karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gp"}}
	np.Spec.Template.Spec.NodeClassRef = &karpv1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
	np.Spec.Disruption.Budgets = []karpv1.Budget{{Nodes: "100%"}}
	nc := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	nc.Status.AMIs = []awsv1.AMI{{ID: "ami-1"}}
	for _, s := range subnets {
		nc.Status.Subnets = append(nc.Status.Subnets, awsv1.Subnet{ID: s, Zone: "us-east-1a"})
	}
	for _, g := range groups {
		nc.Status.SecurityGroups = append(nc.Status.SecurityGroups, awsv1.SecurityGroup{ID: g})
	}

	inst := &cloud.Instance{ID: "i-0a1", ProviderID: cloud.ProviderID("us-east-1a", "i-0a1"), InstanceType: "m5.large",
		Zone: "us-east-1a", CapacityType: cloud.CapacityTypeOnDemand, ImageID: "ami-1", State: cloud.StateRunning,
		SubnetID: "subnet-a", SecurityGroupIDs: []string{"sg-1"}}
	store := newFSMStore()
	for _, c := range []fsm.Command{
		fsm.IntentCreate{Intent: fsm.Intent{Token: "tok-1", NodeClaim: "gp-abc", NodePool: "gp", NodeClass: "default",
			State: fsm.IntentPending, Term: 1, CreatedAt: created, UpdatedAt: created}},
		fsm.IntentResult{Token: "tok-1", State: fsm.IntentLaunched, Instance: inst, Term: 1, At: created},
	} {
		if err := store.ApplyInTerm(ctx, 1, c); err != nil {
			t.Fatalf("apply %T: %v", c, err)
		}
	}

	claim := &karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "gp-abc", Labels: map[string]string{karpv1.NodePoolLabelKey: "gp"},
		Annotations: drifthash.NodeClaimAnnotations(np, nc)}}
	claim.Status.NodeName = "ip-10-0-0-1"
	claim.Status.ProviderID = inst.ProviderID
	claim.Status.ImageID = "ami-1"
	claim.SetTrue(karpv1.ConditionTypeInitialized, "Initialized", "")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-1", CreationTimestamp: metav1.NewTime(created),
		Labels: map[string]string{karpv1.NodePoolLabelKey: "gp", corev1.LabelInstanceTypeStable: "m5.large",
			corev1.LabelTopologyZone: "us-east-1a", karpv1.CapacityTypeLabelKey: "on-demand"}},
		Spec: corev1.NodeSpec{ProviderID: inst.ProviderID}}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}

	st := store.State()
	return disruption.ClusterState{NodePools: []*karpv1.NodePool{np}, NodeClasses: []*awsv1.EC2NodeClass{nc},
		NodeClaims: []*karpv1.NodeClaim{claim}, Nodes: []*corev1.Node{node}, Raft: st,
		InstanceNetwork: instanceNetwork(st)}
}

// driftDecisions plans one pass and returns the drift decisions' messages.
func driftDecisions(t *testing.T, cs disruption.ClusterState) []string {
	t.Helper()
	snap, errs := disruption.BuildSnapshot(cs)
	if len(errs) != 0 {
		t.Fatalf("snapshot errors: %v", errs)
	}
	plan := disruption.Decide(snap, time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), disruption.Options{})
	var out []string
	for _, d := range plan.Decisions {
		if d.Reason == disruption.ReasonDrifted {
			out = append(out, d.Message)
		}
	}
	return out
}

func TestInstanceNetworkComesFromTheLedger(t *testing.T) {
	cs := networkCluster(t, []string{"subnet-a"}, []string{"sg-1"})
	got, ok := cs.InstanceNetwork[cloud.ProviderID("us-east-1a", "i-0a1")]
	if !ok || got.SubnetID != "subnet-a" || len(got.SecurityGroups) != 1 || got.SecurityGroups[0] != "sg-1" {
		t.Fatalf("instance network = %+v (found %v), want subnet-a [sg-1]", got, ok)
	}
	if instanceNetwork(nil) != nil {
		t.Fatal("a nil state has no instance network")
	}
	// An intent recorded before placement was known contributes nothing,
	// so it can never drift by subnet or security group.
	st := fsm.NewState()
	st.Intents["old"] = &fsm.Intent{Token: "old", State: fsm.IntentLaunched, Instance: &cloud.Instance{ID: "i-old", ProviderID: "aws:///us-east-1a/i-old"}}
	st.Intents["pending"] = &fsm.Intent{Token: "pending", State: fsm.IntentPending}
	if m := instanceNetwork(st); len(m) != 0 {
		t.Fatalf("instance network of placement-less intents = %v, want empty", m)
	}
}

func TestNodeDriftsWhenItsSubnetIsNoLongerResolved(t *testing.T) {
	// In line with the NodeClass: nothing drifts.
	cs := networkCluster(t, []string{"subnet-a", "subnet-b"}, []string{"sg-1"})
	if d := driftDecisions(t, cs); len(d) != 0 {
		t.Fatalf("node in a resolved subnet drifted: %v", d)
	}
	// The NodeClass's subnet selector now resolves only subnet-b.
	cs = networkCluster(t, []string{"subnet-b"}, []string{"sg-1"})
	d := driftDecisions(t, cs)
	if len(d) != 1 || !strings.Contains(d[0], string(disruption.DriftSubnet)) || !strings.Contains(d[0], "subnet-a") {
		t.Fatalf("drift decisions = %v, want one subnet drift naming subnet-a", d)
	}
	// Without the ledger's placement the same node cannot be seen to drift:
	// this is the gap instanceNetwork closes.
	cs.InstanceNetwork = nil
	if d := driftDecisions(t, cs); len(d) != 0 {
		t.Fatalf("drift without network placement: %v", d)
	}
}

func TestNodeDriftsWhenItsSecurityGroupsChange(t *testing.T) {
	cs := networkCluster(t, []string{"subnet-a"}, []string{"sg-1", "sg-2"})
	d := driftDecisions(t, cs)
	if len(d) != 1 || !strings.Contains(d[0], string(disruption.DriftSecurityGroup)) {
		t.Fatalf("drift decisions = %v, want one security-group drift", d)
	}
	// A NodeClass that resolved no groups is broken, not a reason to
	// replace the fleet.
	cs = networkCluster(t, []string{"subnet-a"}, nil)
	if d := driftDecisions(t, cs); len(d) != 0 {
		t.Fatalf("empty security-group resolution drifted the node: %v", d)
	}
}
