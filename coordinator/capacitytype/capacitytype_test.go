package capacitytype

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
)

func claim(name, ct, provider, node string) karpv1.NodeClaim {
	c := karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{karpv1.CapacityTypeLabelKey: ct}}}
	c.Status.ProviderID, c.Status.NodeName = provider, node
	return c
}

func node(name, ct string, registered bool) corev1.Node {
	l := map[string]string{karpv1.CapacityTypeLabelKey: ct}
	if registered {
		l[karpv1.NodeRegisteredLabelKey] = "true"
	}
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func TestPlanDemotesOnlyEndedReservations(t *testing.T) {
	now := metav1.Now()
	deleting := claim("deleting", "reserved", "aws:///a/i-4", "")
	deleting.DeletionTimestamp = &now
	claims := []karpv1.NodeClaim{
		claim("ended", "reserved", "aws:///a/i-1", "n1"), // EC2: on-demand now
		claim("still", "reserved", "aws:///a/i-2", "n2"), // EC2: still reserved
		claim("spot", "spot", "aws:///a/i-3", "n3"),      // never reserved
		deleting, // draining already
		claim("unregistered", "reserved", "aws:///a/i-5", "n5"), // node not registered yet
		claim("gone", "reserved", "aws:///a/i-6", ""),           // no instance listed
	}
	nodes := []corev1.Node{node("n1", "reserved", true), node("n2", "reserved", true), node("n3", "spot", true), node("n5", "reserved", false)}
	instances := []*cloud.Instance{
		{ProviderID: "aws:///a/i-1", CapacityType: cloud.CapacityTypeOnDemand},
		{ProviderID: "aws:///a/i-2", CapacityType: cloud.CapacityTypeReserved},
		{ProviderID: "aws:///a/i-3", CapacityType: cloud.CapacityTypeSpot},
		{ProviderID: "aws:///a/i-4", CapacityType: cloud.CapacityTypeOnDemand},
		{ProviderID: "aws:///a/i-5", CapacityType: cloud.CapacityTypeOnDemand},
	}
	got := Plan(claims, nodes, instances)
	want := []Demotion{{"Node", "n1"}, {"NodeClaim", "ended"}, {"NodeClaim", "unregistered"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Plan = %+v, want %+v", got, want)
	}
}
