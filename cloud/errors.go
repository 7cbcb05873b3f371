package cloud

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotFound means the instance does not exist (or is long terminated).
var ErrNotFound = errors.New("instance not found")

// InsufficientCapacityError says that none of a launch's options could be
// fulfilled. Unavailable lists each option EC2 refused, with its error code,
// so the caller can mark those offerings unavailable for a while.
type InsufficientCapacityError struct {
	Unavailable []UnavailableOffering
}

// UnavailableOffering is one (type, zone, capacity type) EC2 could not fill.
type UnavailableOffering struct {
	InstanceType string `json:"instanceType"`
	Zone         string `json:"zone"`
	CapacityType string `json:"capacityType"`
	Code         string `json:"code"` // e.g. InsufficientInstanceCapacity
}

func (e *InsufficientCapacityError) Error() string {
	parts := make([]string, 0, len(e.Unavailable))
	for _, u := range e.Unavailable {
		parts = append(parts, fmt.Sprintf("%s/%s/%s: %s", u.InstanceType, u.Zone, u.CapacityType, u.Code))
	}
	return "insufficient capacity for every launch option: " + strings.Join(parts, ", ")
}

// CreateError is a launch failure with the reason Karpenter writes on the
// NodeClaim's Launched condition (e.g. SubnetResolutionFailed,
// LaunchTemplateNotFound, InstanceTypeResolutionFailed). Errors that are not
// a CreateError get Karpenter's generic reason, LaunchFailed.
type CreateError struct {
	Reason  string
	Message string
	Err     error
}

func (e *CreateError) Error() string {
	if e.Err == nil {
		return e.Message
	}
	return e.Err.Error()
}

func (e *CreateError) Unwrap() error { return e.Err }

// AMI is an image a NodeClass resolved to.
type AMI struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Arch         string `json:"arch"` // amd64 or arm64
	CreationDate string `json:"creationDate"`
	Deprecated   bool   `json:"deprecated,omitempty"`
}

// Subnet is a subnet a NodeClass resolved to.
type Subnet struct {
	ID           string `json:"id"`
	Zone         string `json:"zone"`
	ZoneID       string `json:"zoneID,omitempty"`
	AvailableIPs int32  `json:"availableIPs"`
}

// SecurityGroup is a security group a NodeClass resolved to.
type SecurityGroup struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Capacity reservation kinds and states, as Karpenter spells them in
// EC2NodeClass status and the karpenter.k8s.aws/capacity-reservation-type label.
const (
	ReservationTypeDefault       = "default"
	ReservationTypeCapacityBlock = "capacity-block"
	ReservationStateActive       = "active"
	// ReservationStateExpiring is a capacity block within EC2's reclaim
	// window before its end: it takes no new launches.
	ReservationStateExpiring = "expiring"
)

// CapacityReservation is a capacity reservation a NodeClass resolved to.
type CapacityReservation struct {
	ID                    string     `json:"id"`
	InstanceType          string     `json:"instanceType"`
	Zone                  string     `json:"zone"`
	OwnerID               string     `json:"ownerID"`
	InstanceMatchCriteria string     `json:"instanceMatchCriteria"` // open | targeted
	ReservationType       string     `json:"reservationType"`       // default | capacity-block
	Interruptible         bool       `json:"interruptible,omitempty"`
	EndTime               *time.Time `json:"endTime,omitempty"`
	State                 string     `json:"state"` // active | expiring
	// Available is EC2's AvailableInstanceCount at resolution time.
	Available int `json:"available"`
}

// ResolvedNodeClass is what an EC2NodeClass's selectors resolve to right now.
type ResolvedNodeClass struct {
	AMIs           []AMI           `json:"amis"`
	Subnets        []Subnet        `json:"subnets"`
	SecurityGroups []SecurityGroup `json:"securityGroups"`
	// CapacityReservations matched by capacityReservationSelectorTerms
	// (expired ones left out), sorted by id.
	CapacityReservations []CapacityReservation `json:"capacityReservations,omitempty"`
	// PlacementGroup matched by placementGroupSelector (nil: none selected).
	PlacementGroup *PlacementGroup `json:"placementGroup,omitempty"`
}

// PlacementGroup is the placement group a NodeClass resolved to.
type PlacementGroup struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Strategy       string `json:"strategy"` // cluster | partition | spread
	PartitionCount int32  `json:"partitionCount,omitempty"`
	SpreadLevel    string `json:"spreadLevel,omitempty"` // rack | host
}
