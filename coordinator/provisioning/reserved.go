package provisioning

import (
	"context"
	"fmt"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
)

// ReservationAvailability answers whether a capacity reservation can take
// another instance of the type in the zone (the provider's count since
// EC2's last answer, and the insufficient-capacity cache). The cloud
// provider or its wrapper implements it; without it every active
// reservation counts as available.
type ReservationAvailability interface {
	ReservationAvailable(id, instanceType, zone string) bool
}

// ReservationCounter gives how many more instances a capacity reservation
// takes as the provider counts them (EC2's AvailableInstanceCount minus its
// launches since); ok is false when the provider has not seen it.
// cloud/ec2.Provider implements it. The scheduler plans at most that many
// NodeClaims into the reservation per batch.
type ReservationCounter interface {
	ReservationAvailability(id string) (n int, ok bool)
}

// NodeClassTypes narrows instance types to those that can serve an
// EC2NodeClass (OS, EFA interfaces, nested virtualization, placement
// strategy) and gives them the class's OS labels; cloud/ec2.Provider
// implements it.
type NodeClassTypes interface {
	CompatibleInstanceTypes(ctx context.Context, nc *awsv1.EC2NodeClass, its []*cloud.InstanceType) ([]*cloud.InstanceType, error)
}

// reservedPriceDivisor makes a reserved offering all but free, as
// Karpenter prices it (on-demand / 10,000,000): the capacity is paid for
// already, and the tiny price keeps types ordered for consolidation.
const reservedPriceDivisor = 10_000_000.0

// withReservedOfferings returns the instance types with one reserved
// offering added per capacity reservation of the node class (its status,
// as the nodeclass controller resolved it). Types without a reservation
// are shared, not copied. A reservation is available when it is active
// (not an expiring capacity block), its type is offered in its zone and
// avail says it has room; count gives its free instances
// (ReservationCapacity, the scheduler's per-batch limit; unknown: 0).
func withReservedOfferings(types []*cloud.InstanceType, rs []awsv1.CapacityReservation, avail func(id, itype, zone string) bool, count func(id string) (int, bool)) []*cloud.InstanceType {
	if len(rs) == 0 {
		return types
	}
	byType := map[string][]awsv1.CapacityReservation{}
	for _, r := range rs {
		byType[r.InstanceType] = append(byType[r.InstanceType], r)
	}
	out := make([]*cloud.InstanceType, len(types))
	for i, it := range types {
		if it == nil || len(byType[it.Name]) == 0 {
			out[i] = it
			continue
		}
		mine := byType[it.Name]
		zones := map[string]bool{}
		od := 0.0
		for _, o := range it.Offerings {
			zones[o.Zone] = true
			if o.CapacityType == cloud.CapacityTypeOnDemand && (od == 0 || o.Price < od) {
				od = o.Price
			}
		}
		c := *it
		c.Offerings = append([]cloud.Offering(nil), it.Offerings...)
		for _, r := range mine {
			ok := zones[r.AvailabilityZone] && r.State != awsv1.CapacityReservationStateExpiring
			if ok && avail != nil {
				ok = avail(r.ID, r.InstanceType, r.AvailabilityZone)
			}
			n := 0
			if ok && count != nil {
				if free, known := count(r.ID); known {
					n, ok = free, free > 0
				}
			}
			c.Offerings = append(c.Offerings, cloud.Offering{Zone: r.AvailabilityZone, CapacityType: cloud.CapacityTypeReserved,
				Price: od / reservedPriceDivisor, Available: ok, ReservationID: r.ID, ReservationCapacity: n})
		}
		out[i] = &c
	}
	return out
}

// ClassInstanceTypes narrows its for every EC2NodeClass through src's
// NodeClassTypes (Windows x86_64 only, AL2023 without a1, EFA interfaces,
// nested virtualization, placement strategy, connection tracking on
// Nitro), keyed by class name. Provisioning, consolidation and drift
// replacement all take their per-class lists from here, so a type a class
// cannot run is never launched for it by any path. nil when src cannot
// narrow (every class then uses its).
func ClassInstanceTypes(ctx context.Context, src any, classes []*awsv1.EC2NodeClass, its []*cloud.InstanceType) (map[string][]*cloud.InstanceType, error) {
	nt, ok := src.(NodeClassTypes)
	if !ok {
		return nil, nil
	}
	out := make(map[string][]*cloud.InstanceType, len(classes))
	for _, nc := range classes {
		if nc == nil {
			continue
		}
		narrowed, err := nt.CompatibleInstanceTypes(ctx, nc, its)
		if err != nil {
			return nil, fmt.Errorf("instance types for EC2NodeClass %s: %w", nc.Name, err)
		}
		out[nc.Name] = narrowed
	}
	return out, nil
}

// PoolInstanceTypes gives each pool its EC2NodeClass's type list: the
// types compatible with the class (Inputs.ClassTypes, from
// ClassInstanceTypes) plus reserved offerings for the class's capacity
// reservations; pools of classes with neither use the shared list (key
// ""). It is the scheduling.Snapshot.InstanceTypes of every Solve that
// may plan a launch.
func PoolInstanceTypes(in Inputs, pools []*karpv1.NodePool) map[string][]*cloud.InstanceType {
	out := map[string][]*cloud.InstanceType{"": in.InstanceTypes}
	classes := map[string]*awsv1.EC2NodeClass{}
	for _, c := range in.NodeClasses {
		if c != nil && c.DeletionTimestamp == nil {
			classes[c.Name] = c
		}
	}
	var avail func(id, itype, zone string) bool
	var count func(id string) (int, bool)
	if in.Reservations != nil {
		avail = in.Reservations.ReservationAvailable
		if rc, ok := in.Reservations.(ReservationCounter); ok {
			count = rc.ReservationAvailability
		}
	}
	perClass := map[string][]*cloud.InstanceType{}
	for _, np := range pools {
		if np == nil || np.Spec.Template.Spec.NodeClassRef == nil {
			continue
		}
		c := classes[np.Spec.Template.Spec.NodeClassRef.Name]
		if c == nil {
			continue
		}
		if _, narrowed := in.ClassTypes[c.Name]; !narrowed && len(c.Status.CapacityReservations) == 0 {
			continue
		}
		list, ok := perClass[c.Name]
		if !ok {
			base, narrowed := in.ClassTypes[c.Name]
			if !narrowed {
				base = in.InstanceTypes
			}
			list = withReservedOfferings(base, c.Status.CapacityReservations, avail, count)
			perClass[c.Name] = list
		}
		out[np.Name] = list
	}
	return out
}
