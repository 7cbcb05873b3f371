package provisioning

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
)

type availMap map[string]bool

func (a availMap) ReservationAvailable(id, _, _ string) bool { return a[id] }

func reservedInputs(t *testing.T, capacityTypes ...string) Inputs {
	t.Helper()
	pool := &karpv1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "res"}}
	pool.Spec.Template.Spec.NodeClassRef = &karpv1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "res"}
	pool.Spec.Template.Spec.Requirements = []karpv1.NodeSelectorRequirementWithMinValues{
		{Key: karpv1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: capacityTypes},
		{Key: corev1.LabelInstanceTypeStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"m5.large", "m6i.large"}},
	}
	class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "res"}}
	class.Status.CapacityReservations = []awsv1.CapacityReservation{
		{ID: "cr-a", InstanceType: "m5.large", AvailabilityZone: "us-east-1a", InstanceMatchCriteria: "targeted", OwnerID: "123456789012",
			ReservationType: awsv1.CapacityReservationTypeDefault, State: awsv1.CapacityReservationStateActive},
		{ID: "cr-b", InstanceType: "m5.large", AvailabilityZone: "us-east-1b", InstanceMatchCriteria: "targeted", OwnerID: "123456789012",
			ReservationType: awsv1.CapacityReservationTypeCapacityBlock, State: awsv1.CapacityReservationStateExpiring},
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p", UID: "p"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}}}
	return Inputs{
		Now: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC), Region: "us-east-1", Pods: []*corev1.Pod{pod},
		NodePools: []*karpv1.NodePool{pool}, NodeClasses: []*awsv1.EC2NodeClass{class}, RequireNodeClass: true,
		InstanceTypes: catalog.MustLoad().InstanceTypes("us-east-1", []string{"us-east-1a", "us-east-1b", "us-east-1c"}),
	}
}

// A pool that allows reserved capacity launches into the class's active
// reservation first (reserved > spot > on-demand); an expiring capacity
// block is not offered; once the reservation has no room the claim goes
// spot; a pool that does not allow reserved never sees it.
func TestReservedOfferingsComeFirst(t *testing.T) {
	plan := func(in Inputs) Launch {
		t.Helper()
		snap, _ := Build(in, PendingForSimulation)
		d := Plan(snap, PlanOptions{Names: SequentialNames()})
		if len(d.Launches) != 1 {
			t.Fatalf("launches %d, unschedulable %+v", len(d.Launches), d.Unschedulable)
		}
		return d.Launches[0]
	}
	in := reservedInputs(t, karpv1.CapacityTypeReserved, karpv1.CapacityTypeSpot, karpv1.CapacityTypeOnDemand)
	in.Reservations = availMap{"cr-a": true, "cr-b": true}
	l := plan(in)
	first := l.Options[0]
	if first.CapacityType != cloud.CapacityTypeReserved || first.ReservationID != "cr-a" || first.InstanceType != "m5.large" || first.Zone != "us-east-1a" {
		t.Fatalf("first option %+v, want the reservation", first)
	}
	reserved := 0
	seenSpot := false
	for _, o := range l.Options {
		switch o.CapacityType {
		case cloud.CapacityTypeReserved:
			reserved++
			if seenSpot {
				t.Errorf("reserved option after spot: %+v", l.Options)
			}
			if o.ReservationID == "cr-b" {
				t.Errorf("expiring capacity block offered: %+v", o)
			}
		case cloud.CapacityTypeSpot:
			seenSpot = true
		case cloud.CapacityTypeOnDemand:
			if !seenSpot {
				t.Errorf("on-demand before spot: %+v", l.Options)
			}
		}
	}
	if reserved != 1 || !seenSpot {
		t.Errorf("options %+v: want 1 reserved then spot then on-demand", l.Options)
	}
	if in.InstanceTypes[0].Offerings[len(in.InstanceTypes[0].Offerings)-1].CapacityType == cloud.CapacityTypeReserved {
		t.Errorf("the shared instance types were modified")
	}

	in.Reservations = availMap{}
	if l := plan(in); l.Options[0].CapacityType != cloud.CapacityTypeSpot {
		t.Errorf("full reservation: first option %+v, want spot", l.Options[0])
	}
	in = reservedInputs(t, karpv1.CapacityTypeSpot)
	in.Reservations = availMap{"cr-a": true}
	for _, o := range plan(in).Options {
		if o.CapacityType != cloud.CapacityTypeSpot {
			t.Errorf("spot-only pool got %+v", o)
		}
	}
}

// counted is a provider that counts each reservation's free instances.
type counted map[string]int

func (c counted) ReservationAvailable(id, _, _ string) bool { return c[id] > 0 }
func (c counted) ReservationAvailability(id string) (int, bool) {
	n, ok := c[id]
	return n, ok
}

// The provider's count reaches the plan: with 2 free instances in cr-a, a
// batch of 3 one-per-node pods gets 2 claims into the reservation and one
// spot claim that does not list it.
func TestReservationCountLimitsTheBatch(t *testing.T) {
	in := reservedInputs(t, karpv1.CapacityTypeReserved, karpv1.CapacityTypeSpot)
	base := in.Pods[0]
	in.Pods = nil
	for _, n := range []string{"a", "b", "c"} {
		p := base.DeepCopy()
		p.Name, p.UID = n, types.UID("uid-"+n)
		p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("1500m")
		in.Pods = append(in.Pods, p)
	}
	in.Reservations = counted{"cr-a": 2}
	snap, _ := Build(in, PendingForSimulation)
	d := Plan(snap, PlanOptions{Names: SequentialNames()})
	byCT := map[string]int{}
	for _, l := range d.Launches {
		byCT[l.Options[0].CapacityType+"/"+l.Options[0].ReservationID]++
		if l.Options[0].CapacityType != cloud.CapacityTypeReserved {
			for _, o := range l.Options {
				if o.CapacityType == cloud.CapacityTypeReserved {
					t.Errorf("spot claim lists reserved option %+v", o)
				}
			}
		}
	}
	if byCT["reserved/cr-a"] != 2 || byCT["spot/"] != 1 || len(d.Launches) != 3 {
		t.Fatalf("launches by first option %v (%d), want 2 into cr-a and 1 spot", byCT, len(d.Launches))
	}
}
