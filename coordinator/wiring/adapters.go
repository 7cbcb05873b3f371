package wiring

import (
	"context"
	"fmt"
	"time"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/cloudmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/provisioning"
	"github.com/dovetail-dev/dovetail/drain"
)

// stateReader reads the replicated state (raftnode.Node).
type stateReader interface {
	View(func(*fsm.State))
}

// iceAwareTypes lists the provider's instance types with every offering in
// the replicated insufficient-capacity cache marked unavailable. The
// provider has its own cache, but a new leader's provider starts empty:
// the Raft copy is what the previous leader learned.
type iceAwareTypes struct {
	src   provisioning.InstanceTypeProvider
	store stateReader
	now   func() time.Time
}

// ReservationAvailable implements provisioning.ReservationAvailability: not
// while the replicated cache holds (type, zone, reserved) from a refused
// launch, else what the provider counts (every reservation if it cannot).
func (t *iceAwareTypes) ReservationAvailable(id, instanceType, zone string) bool {
	now := t.now()
	hit := false
	t.store.View(func(s *fsm.State) {
		if e, ok := s.ICE[fsm.OfferingKey(instanceType, zone, cloud.CapacityTypeReserved)]; ok && e.Until.After(now) {
			hit = true
		}
	})
	if hit {
		return false
	}
	if ra, ok := t.src.(provisioning.ReservationAvailability); ok {
		return ra.ReservationAvailable(id, instanceType, zone)
	}
	return true
}

// ReservationAvailability implements provisioning.ReservationCounter: the
// provider's count of the reservation's free instances (unknown when it
// cannot count).
func (t *iceAwareTypes) ReservationAvailability(id string) (int, bool) {
	if rc, ok := t.src.(provisioning.ReservationCounter); ok {
		return rc.ReservationAvailability(id)
	}
	return 0, false
}

// measuredTypes is the provisioner's instance-type source: listings are
// measured as Karpenter's GetInstanceTypes (cloudmetrics), and the
// questions the provisioner asks besides (per-class narrowing,
// reservation availability and counts) reach the ICE-aware source. The
// metrics wrapper alone hid them: provisioning then planned every class
// from the shared list and every reservation as unlimited.
type measuredTypes struct {
	*iceAwareTypes
	measured *cloudmetrics.InstanceTypes
}

// InstanceTypes implements provisioning.InstanceTypeProvider (measured).
func (t *measuredTypes) InstanceTypes(ctx context.Context) ([]*cloud.InstanceType, error) {
	return t.measured.InstanceTypes(ctx)
}

// CompatibleInstanceTypes implements provisioning.NodeClassTypes by asking
// the provider (all types when it cannot tell).
func (t *iceAwareTypes) CompatibleInstanceTypes(ctx context.Context, nc *awsv1.EC2NodeClass, its []*cloud.InstanceType) ([]*cloud.InstanceType, error) {
	if nt, ok := t.src.(provisioning.NodeClassTypes); ok {
		return nt.CompatibleInstanceTypes(ctx, nc, its)
	}
	return its, nil
}

// InstanceTypes implements provisioning.InstanceTypeProvider.
func (t *iceAwareTypes) InstanceTypes(ctx context.Context) ([]*cloud.InstanceType, error) {
	its, err := t.src.InstanceTypes(ctx)
	if err != nil {
		return nil, err
	}
	now := t.now()
	var ice map[string]fsm.ICEEntry
	t.store.View(func(s *fsm.State) {
		for k, e := range s.ICE {
			if e.Until.After(now) {
				if ice == nil {
					ice = map[string]fsm.ICEEntry{}
				}
				ice[k] = e
			}
		}
	})
	if len(ice) == 0 {
		return its, nil
	}
	out := make([]*cloud.InstanceType, len(its))
	for i, it := range its {
		marked := false
		for _, o := range it.Offerings {
			if _, ok := ice[fsm.OfferingKey(it.Name, o.Zone, o.CapacityType)]; ok && o.Available {
				marked = true
				break
			}
		}
		if !marked {
			out[i] = it
			continue
		}
		// Copy before changing: the provider's cache is shared.
		c := *it
		c.Offerings = append([]cloud.Offering(nil), it.Offerings...)
		for j := range c.Offerings {
			if _, ok := ice[fsm.OfferingKey(it.Name, c.Offerings[j].Zone, c.Offerings[j].CapacityType)]; ok {
				c.Offerings[j].Available = false
			}
		}
		out[i] = &c
	}
	return out, nil
}

// values returns the instance types as values (what disruption wants).
func values(its []*cloud.InstanceType) []cloud.InstanceType {
	out := make([]cloud.InstanceType, 0, len(its))
	for _, it := range its {
		if it != nil {
			out = append(out, *it)
		}
	}
	return out
}

// termLedger commits disruption ledger commands fenced to the term the
// controller was built for: a deposed leader's late write is refused.
type termLedger struct {
	store interface {
		ApplyInTerm(ctx context.Context, term uint64, c fsm.Command) error
	}
	term uint64
}

// Apply implements disruption.Ledger.
func (l termLedger) Apply(ctx context.Context, cmd fsm.Command) error {
	if err := l.store.ApplyInTerm(ctx, l.term, cmd); err != nil {
		return fmt.Errorf("ledger (term %d): %w", l.term, err)
	}
	return nil
}

// drainer is what the interruption-aware drainer wraps (*drain.Drainer).
type drainer interface {
	Drain(ctx context.Context, node string, deadline time.Time, reason string) (drain.Result, error)
	MarkDisrupted(ctx context.Context, node, reason string) error
}

// interruptionDrainer drains an interrupted node with a drainer that
// deletes still-refused pods just before the deadline (the instance is lost
// then anyway), so they stop cleanly instead of being killed with it. The
// deadline is the plan's (disruption.Decision.DrainUntil: the notice's own,
// computed once by the planner). Other drains pass through.
type interruptionDrainer struct {
	normal, forced drainer
}

// Drain implements disruption.Drainer.
func (d interruptionDrainer) Drain(ctx context.Context, node string, deadline time.Time, reason string) (drain.Result, error) {
	if reason != string(disruption.ReasonInterrupted) {
		return d.normal.Drain(ctx, node, deadline, reason)
	}
	return d.forced.Drain(ctx, node, deadline, reason)
}

// MarkDisrupted implements disruption.Drainer.
func (d interruptionDrainer) MarkDisrupted(ctx context.Context, node, reason string) error {
	return d.normal.MarkDisrupted(ctx, node, reason)
}

// agentDrainDone reports whether a node's agent has said its drain for the
// node's spot notice ended (disruption.Config.AgentDrainDone).
func agentDrainDone(store stateReader) func(node string) bool {
	return func(node string) bool {
		done := false
		store.View(func(s *fsm.State) {
			if n := s.Nodes[node]; n != nil {
				done = n.DrainEndedAfterNotice()
			}
		})
		return done
	}
}
