package ec2

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/dovetail-dev/dovetail/cloud"
)

// crTerm is one capacityReservationSelectorTerm.
type crTerm struct {
	ID                    string            `json:",omitempty"`
	OwnerID               string            `json:",omitempty"`
	Tags                  map[string]string `json:",omitempty"`
	InstanceMatchCriteria string            `json:",omitempty"`
}

// capacityBlockReclaimWindow is how long before its end a capacity block
// counts as expiring and takes no new launches: EC2 starts reclaiming its
// instances then (Karpenter v1.14 uses the same 40 minutes).
const capacityBlockReclaimWindow = 40 * time.Minute

// reservationQueries turns the terms into DescribeCapacityReservations
// inputs as Karpenter does: a term with an id is a query by id; a term
// with tags or instanceMatchCriteria is a filtered query (owner, tags,
// match criteria). Every query asks only for active reservations.
func reservationQueries(terms []crTerm) []*awsec2.DescribeCapacityReservationsInput {
	var out []*awsec2.DescribeCapacityReservationsInput
	active := ec2types.Filter{Name: aws.String("state"), Values: []string{string(ec2types.CapacityReservationStateActive)}}
	for _, t := range terms {
		if t.ID != "" {
			// EC2 refuses MaxResults together with ids.
			out = append(out, &awsec2.DescribeCapacityReservationsInput{CapacityReservationIds: []string{t.ID}, Filters: []ec2types.Filter{active}})
		}
		if len(t.Tags) == 0 && t.InstanceMatchCriteria == "" {
			continue
		}
		filters := []ec2types.Filter{active}
		if t.OwnerID != "" {
			filters = append(filters, ec2types.Filter{Name: aws.String("owner-id"), Values: []string{t.OwnerID}})
		}
		filters = append(filters, tagFilters(t.Tags)...)
		if t.InstanceMatchCriteria != "" {
			filters = append(filters, ec2types.Filter{Name: aws.String("instance-match-criteria"), Values: []string{t.InstanceMatchCriteria}})
		}
		out = append(out, &awsec2.DescribeCapacityReservationsInput{Filters: filters, MaxResults: aws.Int32(1000)})
	}
	return out
}

// resolveReservations lists the reservations the terms select, without
// duplicates and without expired ones, sorted by id. Reservations EC2
// describes with an instance match criteria or type Karpenter does not know
// are skipped (and logged), as Karpenter does.
func (p *Provider) resolveReservations(ctx context.Context, nc nodeClass) ([]cloud.CapacityReservation, error) {
	if len(nc.CRTerms) == 0 {
		return nil, nil
	}
	now := p.clock.Now()
	seen := map[string]cloud.CapacityReservation{}
	for _, in := range reservationQueries(nc.CRTerms) {
		pages := awsec2.NewDescribeCapacityReservationsPaginator(p.ec2, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				if isNotFoundCode(err) {
					break // a query by an id that does not exist: one page only
				}
				return nil, fmt.Errorf("describe capacity reservations: %w", err)
			}
			for _, r := range page.CapacityReservations {
				cr, err := reservationFromEC2(r, now)
				if err != nil {
					p.log.WarnContext(ctx, "capacity reservation skipped", "nodeClass", nc.Name, "err", err)
					continue
				}
				if cr.EndTime != nil && !cr.EndTime.After(now) {
					continue // expired: EC2 may still list it as active for a moment
				}
				seen[cr.ID] = cr
			}
		}
	}
	out := make([]cloud.CapacityReservation, 0, len(seen))
	for _, cr := range seen {
		out = append(out, cr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	p.reservations.sync(out, now)
	return out, nil
}

func reservationFromEC2(r ec2types.CapacityReservation, now time.Time) (cloud.CapacityReservation, error) {
	id := aws.ToString(r.CapacityReservationId)
	imc := string(r.InstanceMatchCriteria)
	if imc != "open" && imc != "targeted" {
		return cloud.CapacityReservation{}, fmt.Errorf("capacity reservation %s: unsupported instance match criteria %q", id, imc)
	}
	rt := string(r.ReservationType)
	if rt == "" {
		rt = cloud.ReservationTypeDefault
	}
	if rt != cloud.ReservationTypeDefault && rt != cloud.ReservationTypeCapacityBlock {
		return cloud.CapacityReservation{}, fmt.Errorf("capacity reservation %s: unsupported reservation type %q", id, rt)
	}
	cr := cloud.CapacityReservation{
		ID: id, InstanceType: aws.ToString(r.InstanceType), Zone: aws.ToString(r.AvailabilityZone), OwnerID: aws.ToString(r.OwnerId),
		InstanceMatchCriteria: imc, ReservationType: rt, Interruptible: aws.ToBool(r.Interruptible),
		State: cloud.ReservationStateActive, Available: int(aws.ToInt32(r.AvailableInstanceCount)),
	}
	if r.EndDate != nil {
		end := r.EndDate.UTC()
		cr.EndTime = &end
		if rt == cloud.ReservationTypeCapacityBlock && !now.Before(end.Add(-capacityBlockReclaimWindow)) {
			cr.State = cloud.ReservationStateExpiring
		}
	}
	return cr, nil
}

// reservationAvailability tracks how many instances each reservation can
// still take, between DescribeCapacityReservations answers: a sync sets
// the count EC2 reported, a launch into the reservation takes one, a
// refusal (ReservationCapacityExceeded) sets it to zero until the next
// sync. Like Karpenter it would rather overestimate than underestimate:
// a launch refused for an overestimate costs one fleet call.
type reservationAvailability struct {
	mu    sync.Mutex
	count map[string]int
}

func newReservationAvailability() *reservationAvailability {
	return &reservationAvailability{count: map[string]int{}}
}

func (a *reservationAvailability) sync(rs []cloud.CapacityReservation, _ time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range rs {
		a.count[r.ID] = r.Available
	}
}

func (a *reservationAvailability) launched(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n, ok := a.count[id]; ok && n > 0 {
		a.count[id] = n - 1
	}
}

func (a *reservationAvailability) exhausted(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.count[id]; ok {
		a.count[id] = 0
	}
}

// get returns the count and whether the reservation was ever synced.
func (a *reservationAvailability) get(id string) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, ok := a.count[id]
	return n, ok
}

// ReservationAvailability reports how many more instances the provider
// believes the capacity reservation takes (EC2's last AvailableInstanceCount
// minus launches since, zero after a refusal). ok is false for a
// reservation no resolution has seen.
func (p *Provider) ReservationAvailability(id string) (n int, ok bool) { return p.reservations.get(id) }

// ReservationAvailable reports whether the reservation can take another
// instance of the type in the zone: not while (type, zone, reserved) is in
// the insufficient-capacity store (Config.Offerings), nor when the count is
// known to be zero.
func (p *Provider) ReservationAvailable(id, instanceType, zone string) bool {
	if p.avoided(instanceType, zone, cloud.CapacityTypeReserved) {
		return false
	}
	n, ok := p.reservations.get(id)
	return !ok || n > 0
}

// reservationPartition orders reserved launches as Karpenter's
// capacity-reservation-type filter ranks them: ODCRs, then capacity
// blocks, then interruptible reservations. One CreateFleet call can carry
// only one market type, so each partition is its own call.
func reservationPartition(r cloud.CapacityReservation) int {
	switch {
	case r.ReservationType == cloud.ReservationTypeCapacityBlock:
		return 1
	case r.Interruptible:
		return 2
	}
	return 0
}

// marketType is the launch template's InstanceMarketOptions.MarketType for
// a launch into the reservation ("" for an ODCR).
func marketType(r cloud.CapacityReservation) string {
	switch {
	case r.ReservationType == cloud.ReservationTypeCapacityBlock:
		return string(ec2types.MarketTypeCapacityBlock)
	case r.Interruptible:
		return string(ec2types.MarketTypeInterruptibleCapacityReservation)
	}
	return ""
}

// targetCapacityType is the fleet's DefaultTargetCapacityType for a launch
// into the reservation, as Karpenter sends it.
func targetCapacityType(r cloud.CapacityReservation) ec2types.DefaultTargetCapacityType {
	switch {
	case r.ReservationType == cloud.ReservationTypeCapacityBlock:
		return ec2types.DefaultTargetCapacityTypeCapacityBlock
	case r.Interruptible:
		return ec2types.DefaultTargetCapacityTypeReservedCapacity
	}
	return ec2types.DefaultTargetCapacityTypeOnDemand
}
