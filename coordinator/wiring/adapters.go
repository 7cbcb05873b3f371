package wiring

import (
	"context"
	"fmt"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/cloudmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/provisioning"
)

// cloudTypes is the provider's instance-type source with the questions the
// provisioner and the disruption planner ask besides the listing (per-class
// narrowing, reservation availability and counts) answered by the provider
// when it can, with neutral answers when it cannot. It applies no
// insufficient-capacity marking of its own: the provider reads the
// replicated cache itself (ec2.Config.Offerings = launcher.ICEStore, the
// only ICE store), so its listings and ReservationAvailable already skip
// what any leader was refused.
type cloudTypes struct {
	src provisioning.InstanceTypeProvider
}

// ReservationAvailable implements provisioning.ReservationAvailability:
// what the provider says (every reservation if it cannot tell).
func (t *cloudTypes) ReservationAvailable(id, instanceType, zone string) bool {
	if ra, ok := t.src.(provisioning.ReservationAvailability); ok {
		return ra.ReservationAvailable(id, instanceType, zone)
	}
	return true
}

// ReservationAvailability implements provisioning.ReservationCounter: the
// provider's count of the reservation's free instances (unknown when it
// cannot count).
func (t *cloudTypes) ReservationAvailability(id string) (int, bool) {
	if rc, ok := t.src.(provisioning.ReservationCounter); ok {
		return rc.ReservationAvailability(id)
	}
	return 0, false
}

// measuredTypes is the provisioner's instance-type source: listings are
// measured as Karpenter's GetInstanceTypes (cloudmetrics), and the
// questions the provisioner asks besides (per-class narrowing,
// reservation availability and counts) reach the provider. The
// metrics wrapper alone hid them: provisioning then planned every class
// from the shared list and every reservation as unlimited.
type measuredTypes struct {
	*cloudTypes
	measured *cloudmetrics.InstanceTypes
}

// InstanceTypes implements provisioning.InstanceTypeProvider (measured).
func (t *measuredTypes) InstanceTypes(ctx context.Context) ([]*cloud.InstanceType, error) {
	return t.measured.InstanceTypes(ctx)
}

// CompatibleInstanceTypes implements provisioning.NodeClassTypes by asking
// the provider (all types when it cannot tell).
func (t *cloudTypes) CompatibleInstanceTypes(ctx context.Context, nc *awsv1.EC2NodeClass, its []*cloud.InstanceType) ([]*cloud.InstanceType, error) {
	if nt, ok := t.src.(provisioning.NodeClassTypes); ok {
		return nt.CompatibleInstanceTypes(ctx, nc, its)
	}
	return its, nil
}

// InstanceTypes implements provisioning.InstanceTypeProvider.
func (t *cloudTypes) InstanceTypes(ctx context.Context) ([]*cloud.InstanceType, error) {
	return t.src.InstanceTypes(ctx)
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

// stateReader reads the replicated state (raftnode.Node).
type stateReader interface {
	View(func(*fsm.State))
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
