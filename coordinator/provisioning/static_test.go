package provisioning

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/catalog"
)

func staticInputs(t *testing.T, replicas int64) Inputs {
	t.Helper()
	in, _, err := LoadInputs("testdata/snapshot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in.Region = "us-east-1"
	in.InstanceTypes = catalog.MustLoad().InstanceTypes("us-east-1", []string{"us-east-1a", "us-east-1b", "us-east-1c"})
	for _, np := range in.NodePools {
		if np.Name == "default" {
			np.Spec.Replicas = &replicas
		}
	}
	return in
}

// A static pool gets exactly the NodeClaims it lacks, built from its
// template (requirements, DaemonSet overhead), and never any for pending pods.
func TestStaticLaunches(t *testing.T) {
	in := staticInputs(t, 3)
	existing := &karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "default-old", Labels: map[string]string{karpv1.NodePoolLabelKey: "default"}}}
	gone := existing.DeepCopy()
	gone.Name, gone.DeletionTimestamp = "default-gone", &metav1.Time{}
	in.NodeClaims = append(in.NodeClaims, existing, gone)
	ls, deficits, notes := StaticLaunches(in, PlanOptions{Names: SequentialNames()})
	if len(notes) != 0 {
		t.Fatalf("notes %v", notes)
	}
	if len(deficits) != 1 || deficits[0].Live != 1 || deficits[0].Create != 2 {
		t.Fatalf("deficits %+v, want 1 live (the deleting one does not count), 2 to create", deficits)
	}
	if len(ls) != 2 || ls[0].NodeClaim.Name == ls[1].NodeClaim.Name {
		t.Fatalf("launches %d", len(ls))
	}
	for _, l := range ls {
		nc := l.NodeClaim
		if nc.Labels[karpv1.NodePoolLabelKey] != "default" || len(l.Options) == 0 || len(l.Pods) != 0 {
			t.Fatalf("claim %s labels %v options %d pods %d", nc.Name, nc.Labels, len(l.Options), len(l.Pods))
		}
		if q := nc.Spec.Resources.Requests[corev1.ResourceCPU]; q.MilliValue() != 100 {
			t.Errorf("claim requests cpu %s, want the DaemonSet's 100m", q.String())
		}
		for _, o := range l.Options {
			if o.CapacityType != "on-demand" && o.CapacityType != "spot" {
				t.Errorf("option %+v", o)
			}
		}
	}

	// limits.nodes counts every claim, deleting ones included.
	for _, np := range in.NodePools {
		if np.Name == "default" {
			np.Spec.Limits = karpv1.Limits{"nodes": resource.MustParse("3")}
		}
	}
	_, deficits, _ = StaticLaunches(in, PlanOptions{Names: SequentialNames()})
	if deficits[0].Create != 1 || !strings.Contains(deficits[0].Blocked, "limits.nodes 3") {
		t.Fatalf("with limits.nodes 3: %+v", deficits)
	}

	// Pending pods never get a node from the static pool.
	snap, _ := Build(in, PendingForSimulation)
	d := Plan(snap, PlanOptions{Names: SequentialNames()})
	for _, l := range d.Launches {
		if l.NodeClaim.Labels[karpv1.NodePoolLabelKey] == "default" {
			t.Fatalf("pending pods provisioned a static pool's node: %s", l.NodeClaim.Name)
		}
	}
	found := false
	for _, u := range d.Unschedulable {
		if strings.Contains(u.Reasons["default"], "static NodePool") {
			found = true
		}
	}
	if !found {
		t.Errorf("no unschedulable pod names the static pool as the reason: %+v", d.Unschedulable)
	}

	// At replicas: nothing to do.
	in = staticInputs(t, 1)
	in.NodeClaims = append(in.NodeClaims, existing)
	if ls, deficits, _ := StaticLaunches(in, PlanOptions{}); len(ls) != 0 || len(deficits) != 0 {
		t.Fatalf("at replicas: %d launches %+v", len(ls), deficits)
	}
}
