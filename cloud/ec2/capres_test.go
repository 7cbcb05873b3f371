package ec2

import (
	"context"
	"strings"
	"testing"
	"time"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

func mustReserve(t *testing.T, sim *ec2sim.Sim, spec ec2sim.CapacityReservationSpec) string {
	t.Helper()
	id, err := sim.CreateCapacityReservation(spec)
	if err != nil {
		t.Fatalf("create reservation %+v: %v", spec, err)
	}
	return id
}

func reservationIDs(rs []cloud.CapacityReservation) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// capacityReservationSelectorTerms resolve as Karpenter resolves them: by
// id, or by tags + owner + match criteria; only active reservations, and
// none past their end date; a capacity block near its end is "expiring".
func TestResolveCapacityReservations(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	now := e.clock.Now()
	odcr := mustReserve(t, e.sim, ec2sim.CapacityReservationSpec{InstanceType: "m5.large", Zone: "us-east-1a", Count: 2,
		InstanceMatchCriteria: "targeted", Tags: map[string]string{"team": "ml"}})
	open := mustReserve(t, e.sim, ec2sim.CapacityReservationSpec{InstanceType: "c5.large", Zone: "us-east-1b", Count: 1,
		Tags: map[string]string{"team": "ml"}})
	shared := mustReserve(t, e.sim, ec2sim.CapacityReservationSpec{InstanceType: "m5.xlarge", Zone: "us-east-1a", Count: 1,
		OwnerID: "210987654321", Tags: map[string]string{"team": "ml"}})
	block := mustReserve(t, e.sim, ec2sim.CapacityReservationSpec{InstanceType: "p5.48xlarge", Zone: "us-east-1c", Count: 1,
		ReservationType: "capacity-block", EndDate: now.Add(2 * time.Hour)})
	ending := mustReserve(t, e.sim, ec2sim.CapacityReservationSpec{InstanceType: "m5.large", Zone: "us-east-1b", Count: 1,
		EndDate: now.Add(30 * time.Minute), Tags: map[string]string{"team": "ml"}})
	cancelled := mustReserve(t, e.sim, ec2sim.CapacityReservationSpec{InstanceType: "m5.large", Zone: "us-east-1c", Count: 1,
		Tags: map[string]string{"team": "ml"}})
	if err := e.sim.CancelCapacityReservation(cancelled); err != nil {
		t.Fatal(err)
	}

	resolve := func(terms ...awsv1.CapacityReservationSelectorTerm) []cloud.CapacityReservation {
		t.Helper()
		nc := testNodeClass("reserved")
		nc.Spec.CapacityReservationSelectorTerms = terms
		e.p.Refresh()
		r, err := e.p.ResolveNodeClass(ctx, nc)
		if err != nil {
			t.Fatalf("resolve %+v: %v", terms, err)
		}
		return r.CapacityReservations
	}
	eq := func(got []cloud.CapacityReservation, want ...string) {
		t.Helper()
		g := reservationIDs(got)
		if len(g) != len(want) {
			t.Fatalf("reservations %v, want %v", g, want)
		}
		for i := range g {
			if g[i] != want[i] {
				t.Fatalf("reservations %v, want %v", g, want)
			}
		}
	}
	// Tags select across owners; the cancelled one is not active.
	eq(resolve(awsv1.CapacityReservationSelectorTerm{Tags: map[string]string{"team": "ml"}}), odcr, open, shared, ending)
	eq(resolve(awsv1.CapacityReservationSelectorTerm{Tags: map[string]string{"team": "*"}, OwnerID: "123456789012"}), odcr, open, ending)
	eq(resolve(awsv1.CapacityReservationSelectorTerm{InstanceMatchCriteria: "targeted"}), odcr, block)
	// By id; a missing id is not an error, just nothing; terms are ORed and deduplicated.
	got := resolve(awsv1.CapacityReservationSelectorTerm{ID: odcr}, awsv1.CapacityReservationSelectorTerm{ID: "cr-0000000000000000f"},
		awsv1.CapacityReservationSelectorTerm{ID: block}, awsv1.CapacityReservationSelectorTerm{Tags: map[string]string{"team": "ml"}, InstanceMatchCriteria: "targeted"})
	eq(got, odcr, block)
	if r := got[0]; r.InstanceType != "m5.large" || r.Zone != "us-east-1a" || r.OwnerID != "123456789012" || r.InstanceMatchCriteria != "targeted" ||
		r.ReservationType != cloud.ReservationTypeDefault || r.State != cloud.ReservationStateActive || r.Available != 2 || r.EndTime != nil {
		t.Errorf("odcr resolved as %+v", r)
	}
	if r := got[1]; r.ReservationType != cloud.ReservationTypeCapacityBlock || r.State != cloud.ReservationStateActive || r.EndTime == nil || !r.EndTime.Equal(now.Add(2*time.Hour)) {
		t.Errorf("capacity block resolved as %+v", r)
	}

	// 85 minutes on: the capacity block is inside its 40-minute reclaim
	// window (expiring), the limited ODCR has expired and drops out.
	e.clock.Advance(85 * time.Minute)
	e.sim.Reconcile()
	got = resolve(awsv1.CapacityReservationSelectorTerm{ID: block}, awsv1.CapacityReservationSelectorTerm{Tags: map[string]string{"team": "ml"}})
	eq(got, odcr, open, shared, block)
	if got[3].State != cloud.ReservationStateExpiring {
		t.Errorf("capacity block 35 min before its end: state %q, want expiring", got[3].State)
	}
	if info, _ := e.sim.CapacityReservation(ending); info.State != "expired" {
		t.Errorf("ODCR past its end date: simulator state %q, want expired", info.State)
	}
	e.clock.Advance(time.Hour)
	e.sim.Reconcile()
	eq(resolve(awsv1.CapacityReservationSelectorTerm{ID: block}))
}

func reservedOpt(itype, zone, id string) cloud.LaunchOption {
	return cloud.LaunchOption{InstanceType: itype, Zone: zone, CapacityType: cloud.CapacityTypeReserved, Price: 0.096 / 1e7, ReservationID: id}
}

// A reservation is filled first, then launches fall back to spot: by the
// provider's own count once it is full, and, when the count was too
// optimistic, by EC2's ReservationCapacityExceeded within the same Create.
func TestReservedLaunchFillsThenFallsBackToSpot(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	id := mustReserve(t, e.sim, ec2sim.CapacityReservationSpec{InstanceType: "m5.large", Zone: "us-east-1a", Count: 2, InstanceMatchCriteria: "targeted"})
	nc := testNodeClass("reserved")
	nc.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: id}}
	opts := []cloud.LaunchOption{reservedOpt("m5.large", "us-east-1a", id), opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.04),
		opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096)}
	var got []*cloud.Instance
	for _, claim := range []string{"r-1", "r-2", "r-3"} {
		inst, err := e.p.Create(ctx, nc, request(claim, opts...))
		if err != nil {
			t.Fatalf("%s: %v", claim, err)
		}
		got = append(got, inst)
	}
	for i, inst := range got[:2] {
		if inst.CapacityType != cloud.CapacityTypeReserved || inst.CapacityReservationID != id || inst.CapacityReservationType != cloud.ReservationTypeDefault {
			t.Errorf("launch %d: %+v, want reserved in %s", i, inst, id)
		}
		info, _ := e.sim.Instance(inst.ID)
		if info.CapacityReservationID != id {
			t.Errorf("launch %d: simulator says reservation %q", i, info.CapacityReservationID)
		}
		for _, l := range []string{"karpenter.sh/capacity-type=reserved", "karpenter.k8s.aws/capacity-reservation-id=" + id, "karpenter.k8s.aws/capacity-reservation-type=default", "karpenter.k8s.aws/capacity-reservation-interruptible=false"} {
			if !strings.Contains(info.UserData, l) {
				t.Errorf("launch %d: user data lacks %s", i, l)
			}
		}
	}
	if got[2].CapacityType != cloud.CapacityTypeSpot || got[2].CapacityReservationID != "" {
		t.Errorf("third launch: %+v, want spot once the reservation is full", got[2])
	}
	if e.p.ReservationAvailable(id, "m5.large", "us-east-1a") {
		t.Errorf("reservation still reported available after two launches")
	}
	if info, _ := e.sim.CapacityReservation(id); info.Available != 0 {
		t.Errorf("simulator: %d available, want 0", info.Available)
	}
	// The reserved template targets the reservation; the spot one opts out of open reservations.
	prefs := map[string]int{}
	for _, name := range e.sim.LaunchTemplateNames() {
		d := e.sim.LaunchTemplateData(name)
		prefs[d["CapacityReservationSpecification.CapacityReservationPreference"]+"/"+d["CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId"]]++
	}
	if prefs["capacity-reservations-only/"+id] != 1 || prefs["none/"] != 1 {
		t.Errorf("launch templates' reservation settings: %v", prefs)
	}

	// Described back (a new leader's List), the reserved instances read as reserved.
	inst, err := e.p.Get(ctx, got[0].ID)
	if err != nil || inst.CapacityType != cloud.CapacityTypeReserved || inst.CapacityReservationID != id {
		t.Errorf("Get of a reserved instance: %+v %v", inst, err)
	}

	// A fresh provider believes the stale count (2 available once a
	// reserved instance is gone): EC2 refuses, the same Create goes spot and
	// the reservation is marked unavailable.
	if err := e.p.Delete(ctx, got[0].ID); err != nil {
		t.Fatal(err)
	}
	e.sim.Reconcile()
	p2, _ := newProvider(t, e)
	if _, err := p2.ResolveNodeClass(ctx, nc); err != nil {
		t.Fatal(err)
	}
	// Someone else takes the freed slot behind the provider's back.
	p3, _ := newProvider(t, e)
	if other, err := p3.Create(ctx, nc, request("other", reservedOpt("m5.large", "us-east-1a", id))); err != nil || other.CapacityType != cloud.CapacityTypeReserved {
		t.Fatalf("other launch into the freed slot: %+v %v", other, err)
	}
	inst, err = p2.Create(ctx, nc, request("r-4", opts...))
	if err != nil {
		t.Fatal(err)
	}
	if inst.CapacityType != cloud.CapacityTypeSpot {
		t.Errorf("launch into a full reservation: %+v, want the spot fallback", inst)
	}
	if p2.ReservationAvailable(id, "m5.large", "us-east-1a") {
		t.Errorf("reservation still available after ReservationCapacityExceeded")
	}
}
