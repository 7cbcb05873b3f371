package nodeclass

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2"
)

// Condition reasons this controller writes.
const (
	ReasonResolved               = "Resolved"
	ReasonAMINotFound            = "AMINotFound"
	ReasonSubnetsNotFound        = "SubnetsNotFound"
	ReasonSecurityGroupsNotFound = "SecurityGroupsNotFound"
	// ReasonNotResolved is put on a condition that was never set when another
	// selector failed first (the provider stops at the first failure).
	ReasonNotResolved = "NotResolved"
	// ReasonPlacementGroupNotFound: the placementGroupSelector matches no
	// available placement group (Karpenter's reason).
	ReasonPlacementGroupNotFound = "PlacementGroupNotFound"
)

// maxMessage bounds condition messages: the API allows 32 KiB, a status
// that large helps nobody reading `kubectl describe`.
const maxMessage = 1024

// Outcome is what applying one resolution to a node class's status did.
type Outcome struct {
	// Status is the new status (a copy; the input is not modified).
	Status awsv1.EC2NodeClassStatus
	// Changed reports whether Status differs from the old one, i.e. whether
	// it must be written.
	Changed bool
	// OldAMIs and NewAMIs are the sorted AMI ids before and after; they
	// differ exactly when the resolved AMI set changed.
	OldAMIs, NewAMIs []string
	// Failed is the condition type (AMIsReady, SubnetsReady,
	// SecurityGroupsReady) of the selector that matched nothing, "" if none.
	Failed string
	// Message is the failing selector's message (which terms were tried).
	Message string
	// ReadyChanged reports whether the Ready condition's status or reason
	// changed (the moment to emit an Event about it).
	ReadyChanged bool
}

// AMIsChanged reports whether the resolved AMI set changed.
func (o Outcome) AMIsChanged() bool { return !slices.Equal(o.OldAMIs, o.NewAMIs) }

// ErrUnclassified wraps a resolution error that is not a selector matching
// nothing (an API error, throttling, a cancelled context): the status is
// left as it was, since the old resolution is still the best knowledge.
var ErrUnclassified = errors.New("node class resolution failed")

// Apply computes a node class's new status from one resolution: either a
// result or the provider's error. It is pure: nc is not modified. A
// selector matching nothing (ec2.ErrNoAMI, ErrNoSubnets,
// ErrNoSecurityGroups) clears that list and sets its condition False with
// the provider's message; any other error returns ErrUnclassified and
// leaves the status alone.
func Apply(nc *awsv1.EC2NodeClass, r *cloud.ResolvedNodeClass, resolveErr error) (Outcome, error) {
	work := nc.DeepCopy()
	old := nc.Status
	out := Outcome{OldAMIs: amiIDs(old.AMIs)}
	switch {
	case resolveErr == nil && r != nil:
		work.Status.AMIs = toAMIs(r.AMIs)
		work.Status.Subnets = toSubnets(r.Subnets)
		work.Status.SecurityGroups = toSecurityGroups(r.SecurityGroups)
		work.SetTrue(awsv1.ConditionTypeAMIsReady, ReasonResolved, amiMessage(work.Status.AMIs))
		work.SetTrue(awsv1.ConditionTypeSubnetsReady, ReasonResolved, subnetMessage(work.Status.Subnets))
		work.SetTrue(awsv1.ConditionTypeSecurityGroupsReady, ReasonResolved, sgMessage(work.Status.SecurityGroups))
		work.Status.InstanceProfile = instanceProfile(work)
		work.SetTrue(awsv1.ConditionTypeInstanceProfileReady, ReasonResolved, "instance profile "+work.Status.InstanceProfile)
		work.SetTrue(awsv1.ConditionTypeValidationSucceeded, ReasonResolved, "the node class resolved and its settings are valid")
		work.Status.CapacityReservations = toReservations(r.CapacityReservations)
		work.SetTrue(awsv1.ConditionTypeCapacityReservationsReady, ReasonResolved, reservationMessage(work.Status.CapacityReservations))
		work.SetTrue(awsv1.ConditionTypePlacementGroupReady, ReasonResolved, placementGroupMessage(r.PlacementGroup))
		work.SetTrue(awsv1.ConditionTypeReady, ReasonResolved, fmt.Sprintf("%d AMIs, %d subnets, %d security groups and %d capacity reservations resolved",
			len(work.Status.AMIs), len(work.Status.Subnets), len(work.Status.SecurityGroups), len(work.Status.CapacityReservations)))
	case resolveErr == nil:
		return Outcome{}, fmt.Errorf("%w: the provider returned neither a result nor an error", ErrUnclassified)
	default:
		var reason string
		switch {
		case errors.Is(resolveErr, ec2.ErrNoAMI):
			out.Failed, reason = awsv1.ConditionTypeAMIsReady, ReasonAMINotFound
			work.Status.AMIs = nil
		case errors.Is(resolveErr, ec2.ErrNoSubnets):
			out.Failed, reason = awsv1.ConditionTypeSubnetsReady, ReasonSubnetsNotFound
			work.Status.Subnets = nil
		case errors.Is(resolveErr, ec2.ErrNoSecurityGroups):
			out.Failed, reason = awsv1.ConditionTypeSecurityGroupsReady, ReasonSecurityGroupsNotFound
			work.Status.SecurityGroups = nil
		case errors.Is(resolveErr, ec2.ErrNoPlacementGroup):
			out.Failed, reason = awsv1.ConditionTypePlacementGroupReady, ReasonPlacementGroupNotFound
		default:
			return Outcome{}, fmt.Errorf("%w: %w", ErrUnclassified, resolveErr)
		}
		out.Message = truncate(resolveErr.Error())
		work.SetFalse(out.Failed, reason, out.Message)
		// The provider stops at the first failing selector: the others keep
		// what they last resolved to, and say so if they never did.
		for _, t := range []string{awsv1.ConditionTypeAMIsReady, awsv1.ConditionTypeSubnetsReady, awsv1.ConditionTypeSecurityGroupsReady} {
			if t != out.Failed && work.GetCondition(t) == nil {
				work.SetCondition(metav1.Condition{Type: t, Status: metav1.ConditionUnknown, Reason: ReasonNotResolved,
					Message: "not resolved yet: " + out.Failed + " failed first"})
			}
		}
		work.SetFalse(awsv1.ConditionTypeReady, reason, out.Message)
	}
	out.Status = work.Status
	out.NewAMIs = amiIDs(work.Status.AMIs)
	out.Changed = !equality.Semantic.DeepEqual(old, work.Status)
	before, after := nc.GetCondition(awsv1.ConditionTypeReady), work.GetCondition(awsv1.ConditionTypeReady)
	out.ReadyChanged = before == nil || before.Status != after.Status || before.Reason != after.Reason
	return out, nil
}

// instanceProfile is the profile instances are launched with: the named
// one, else a profile named after the role (Dovetail has no IAM access to
// create one, see cloud/ec2).
func instanceProfile(nc *awsv1.EC2NodeClass) string {
	if nc.Spec.InstanceProfile != nil && *nc.Spec.InstanceProfile != "" {
		return *nc.Spec.InstanceProfile
	}
	return nc.Spec.Role
}

// toReservations renders the resolved reservations as Karpenter writes
// status.capacityReservations: sorted by id, with state active or expiring
// (a capacity block inside EC2's reclaim window).
func toReservations(in []cloud.CapacityReservation) []awsv1.CapacityReservation {
	if len(in) == 0 {
		return nil
	}
	out := make([]awsv1.CapacityReservation, 0, len(in))
	for _, r := range in {
		cr := awsv1.CapacityReservation{
			AvailabilityZone: r.Zone, ID: r.ID, InstanceMatchCriteria: r.InstanceMatchCriteria, InstanceType: r.InstanceType,
			OwnerID: r.OwnerID, ReservationType: awsv1.CapacityReservationType(r.ReservationType), Interruptible: r.Interruptible,
			State: awsv1.CapacityReservationState(r.State),
		}
		if r.EndTime != nil {
			t := metav1.NewTime(r.EndTime.UTC().Truncate(time.Second))
			cr.EndTime = &t
		}
		out = append(out, cr)
	}
	slices.SortFunc(out, func(a, b awsv1.CapacityReservation) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func reservationMessage(rs []awsv1.CapacityReservation) string {
	if len(rs) == 0 {
		return "no capacity reservation selected"
	}
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s (%s %s, %s)", r.ID, r.InstanceType, r.AvailabilityZone, r.ReservationType))
	}
	return truncate("resolved " + strings.Join(parts, ", "))
}

func placementGroupMessage(pg *cloud.PlacementGroup) string {
	if pg == nil {
		return "no placement group selected"
	}
	return fmt.Sprintf("resolved %s (%s, %s)", pg.ID, pg.Name, pg.Strategy)
}

// toAMIs converts the provider's AMIs to status entries, each with the
// architecture requirement Karpenter writes, sorted by id so that an
// unchanged set never reads as a change.
func toAMIs(in []cloud.AMI) []awsv1.AMI {
	if len(in) == 0 {
		return nil
	}
	out := make([]awsv1.AMI, 0, len(in))
	for _, a := range in {
		reqs := []corev1.NodeSelectorRequirement{}
		if a.Arch != "" {
			reqs = append(reqs, corev1.NodeSelectorRequirement{Key: corev1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{a.Arch}})
		}
		out = append(out, awsv1.AMI{ID: a.ID, Name: a.Name, Deprecated: a.Deprecated, Requirements: reqs})
	}
	slices.SortFunc(out, func(a, b awsv1.AMI) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// toSubnets sorts by zone then id: the provider orders a zone's subnets by
// free addresses, which move with every launch and would churn the status.
func toSubnets(in []cloud.Subnet) []awsv1.Subnet {
	if len(in) == 0 {
		return nil
	}
	out := make([]awsv1.Subnet, 0, len(in))
	for _, s := range in {
		out = append(out, awsv1.Subnet{ID: s.ID, Zone: s.Zone, ZoneID: s.ZoneID})
	}
	slices.SortFunc(out, func(a, b awsv1.Subnet) int {
		if c := strings.Compare(a.Zone, b.Zone); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

func toSecurityGroups(in []cloud.SecurityGroup) []awsv1.SecurityGroup {
	if len(in) == 0 {
		return nil
	}
	out := make([]awsv1.SecurityGroup, 0, len(in))
	for _, g := range in {
		out = append(out, awsv1.SecurityGroup{ID: g.ID, Name: g.Name})
	}
	slices.SortFunc(out, func(a, b awsv1.SecurityGroup) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func amiIDs(amis []awsv1.AMI) []string {
	ids := make([]string, 0, len(amis))
	for _, a := range amis {
		ids = append(ids, a.ID)
	}
	slices.Sort(ids)
	return ids
}

func amiMessage(amis []awsv1.AMI) string {
	parts := make([]string, 0, len(amis))
	for _, a := range amis {
		arch := ""
		for _, r := range a.Requirements {
			if r.Key == corev1.LabelArchStable && len(r.Values) > 0 {
				arch = " (" + strings.Join(r.Values, ",") + ")"
			}
		}
		parts = append(parts, a.ID+arch)
	}
	return truncate("resolved " + strings.Join(parts, ", "))
}

func subnetMessage(subnets []awsv1.Subnet) string {
	parts := make([]string, 0, len(subnets))
	for _, s := range subnets {
		parts = append(parts, s.ID+" ("+s.Zone+")")
	}
	return truncate("resolved " + strings.Join(parts, ", "))
}

func sgMessage(groups []awsv1.SecurityGroup) string {
	parts := make([]string, 0, len(groups))
	for _, g := range groups {
		if g.Name != "" {
			parts = append(parts, g.ID+" ("+g.Name+")")
		} else {
			parts = append(parts, g.ID)
		}
	}
	return truncate("resolved " + strings.Join(parts, ", "))
}

// AMIChangeMessage is the Event and log text for an AMI set change.
func AMIChangeMessage(old, next []string) string {
	from := strings.Join(old, ", ")
	if from == "" {
		from = "none"
	}
	to := strings.Join(next, ", ")
	if to == "" {
		to = "none"
	}
	return truncate("AMIs changed: " + from + " → " + to)
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	// Cut on a rune boundary.
	cut := maxMessage - len("…")
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
