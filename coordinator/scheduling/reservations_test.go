package scheduling

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

// withReservation returns a copy of it with a reserved offering of
// reservation id in zone, free instances n (0: not known).
func withReservation(it *cloud.InstanceType, id, zone string, n int) *cloud.InstanceType {
	c := *it
	c.Offerings = append(slices.Clone(it.Offerings), cloud.Offering{Zone: zone, CapacityType: cloud.CapacityTypeReserved,
		Price: 0.2 / 1e7, Available: true, ReservationID: id, ReservationCapacity: n})
	return &c
}

// TestReservationsCountedWithinOneBatch: Solve plans no more NodeClaims
// into a capacity reservation than it has free instances (Karpenter's
// reservation manager); the rest of the batch goes to spot in the plan
// itself, without a reserved option the provider would have to refuse.
func TestReservationsCountedWithinOneBatch(t *testing.T) {
	medium := fakeType("medium", 4, 8, 40, 0.2, nil, nil)
	only := func(name string, cts ...string) NodePool {
		return defaultPool(name,
			Requirement{Key: LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: cts},
			Requirement{Key: LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{"medium"}})
	}
	za, zb := testZones[0], testZones[1]
	cases := []struct {
		name    string
		pools   []NodePool
		types   map[string][]*cloud.InstanceType
		pods    []*corev1.Pod
		want    map[string]int // NodeClaims by reservation id, or capacity type when none
		unsched int
	}{
		{name: "batch bigger than the reservation: 2 reserved, 3 spot",
			pools: []NodePool{only("np", "reserved", "spot")},
			types: map[string][]*cloud.InstanceType{"": {withReservation(medium, "cr-a", za, 2)}},
			pods:  pods(5, "app", "3", "1Gi"),
			want:  map[string]int{"cr-a": 2, "spot": 3}},
		{name: "batch smaller than the reservation: all reserved",
			pools: []NodePool{only("np", "reserved", "spot")},
			types: map[string][]*cloud.InstanceType{"": {withReservation(medium, "cr-a", za, 10)}},
			pods:  pods(3, "app", "3", "1Gi"),
			want:  map[string]int{"cr-a": 3}},
		{name: "two reservations are each counted",
			pools: []NodePool{only("np", "reserved", "spot")},
			types: map[string][]*cloud.InstanceType{"": {withReservation(withReservation(medium, "cr-a", za, 1), "cr-b", zb, 2)}},
			pods:  pods(5, "app", "3", "1Gi"),
			want:  map[string]int{"cr-a": 1, "cr-b": 2, "spot": 2}},
		{name: "one reservation seen by two pools keeps the smaller count, shared by both",
			pools: []NodePool{only("p1", "reserved", "spot"), only("p2", "reserved", "spot")},
			types: map[string][]*cloud.InstanceType{"p1": {withReservation(medium, "cr-a", za, 3)}, "p2": {withReservation(medium, "cr-a", za, 2)}},
			pods: append(pods(2, "one", "3", "1Gi", withNodeSelector(LabelNodePool, "p1")),
				pods(2, "two", "3", "1Gi", withNodeSelector(LabelNodePool, "p2"))...),
			want: map[string]int{"cr-a": 2, "spot": 2}},
		{name: "reserved-only pool: pods past the reservation wait for the next batch",
			pools:   []NodePool{only("np", "reserved")},
			types:   map[string][]*cloud.InstanceType{"": {withReservation(medium, "cr-a", za, 2)}},
			pods:    pods(4, "app", "3", "1Gi"),
			want:    map[string]int{"cr-a": 2},
			unsched: 2},
		{name: "a reservation with no known count is not limited",
			pools: []NodePool{only("np", "reserved", "spot")},
			types: map[string][]*cloud.InstanceType{"": {withReservation(medium, "cr-a", za, 0)}},
			pods:  pods(3, "app", "3", "1Gi"),
			want:  map[string]int{"cr-a": 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := Solve(Snapshot{Pods: tc.pods, NodePools: tc.pools, InstanceTypes: tc.types}, Options{})
			got := map[string]int{}
			for _, nc := range res.NewNodeClaims {
				var ids []string
				for _, o := range nc.Options {
					if o.CapacityType == cloud.CapacityTypeReserved {
						ids = append(ids, o.ReservationID)
					}
				}
				if len(ids) > 1 {
					t.Errorf("claim %v lists reservations %v: a claim is planned into one", nc.PodNames, ids)
				}
				key := nc.CapacityType
				if len(ids) == 1 {
					key = ids[0]
					if nc.Options[0].ReservationID != key {
						t.Errorf("claim %v: reserved option not first: %+v", nc.PodNames, nc.Options)
					}
				}
				for _, r := range nc.Requirements {
					if r.Key == LabelCapacityType && len(ids) == 0 && slices.Contains(r.Values, cloud.CapacityTypeReserved) {
						t.Errorf("claim %v has no reserved option but allows capacity type %v", nc.PodNames, r.Values)
					}
				}
				got[key]++
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("claims by reservation/capacity type = %v, want %v", got, tc.want)
			}
			if len(res.Unschedulable) != tc.unsched {
				t.Errorf("%d unschedulable, want %d: %+v", len(res.Unschedulable), tc.unsched, res.Unschedulable)
			}
			for _, u := range res.Unschedulable {
				if u.Reasons["np"] != errReservationsFull {
					t.Errorf("pod %s: reasons %v", u.PodName, u.Reasons)
				}
			}
		})
	}
}
