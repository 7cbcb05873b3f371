// Package cloud holds the value types that cross the boundary between the
// coordinator and a cloud provider: instance types with their offerings, launch
// requests and instances. The provider interface itself is declared by its
// consumer (coordinator/launcher); the EC2 implementation lives in cloud/ec2.
package cloud

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Capacity types, spelled as the karpenter.sh/capacity-type label values.
const (
	CapacityTypeSpot     = "spot"
	CapacityTypeOnDemand = "on-demand"
	// CapacityTypeReserved is capacity from an On-Demand Capacity
	// Reservation or a capacity block the node class selected.
	CapacityTypeReserved = "reserved"
)

// Tag keys Dovetail puts on every instance, volume and launch template.
const (
	TagCluster   = "dovetail.dev/cluster"
	TagNodePool  = "karpenter.sh/nodepool"
	TagNodeClaim = "karpenter.sh/nodeclaim"
	TagNodeClass = "karpenter.k8s.aws/ec2nodeclass"
	// TagLeaderTerm records the Raft term of the leader that launched the
	// instance, so a stale leader's launches can be recognised.
	TagLeaderTerm = "dovetail.dev/leader-term"
	TagName       = "Name"
)

// Offering is one way to buy an instance type: a zone and a capacity type at a price.
type Offering struct {
	Zone         string  `json:"zone"`
	CapacityType string  `json:"capacityType"`
	Price        float64 `json:"price"` // USD per hour
	Available    bool    `json:"available"`
	// ReservationID is the capacity reservation of a reserved offering.
	ReservationID string `json:"reservationID,omitempty"`
	// ReservationCapacity is how many more instances the reservation takes
	// (Karpenter's Offering.ReservationCapacity): the scheduler plans at
	// most that many NodeClaims into it per batch. 0 on an available
	// offering means not known, and then does not limit.
	ReservationCapacity int `json:"reservationCapacity,omitempty"`
}

// InstanceType is an instance type as the scheduler sees it.
type InstanceType struct {
	Name string `json:"name"`
	// Labels are the well-known labels a node of this type carries
	// (node.kubernetes.io/instance-type, kubernetes.io/arch,
	// karpenter.k8s.aws/instance-family, -category, -generation, -size, -cpu,
	// -memory, -gpu-* ...). Zone and capacity type come from the offering.
	Labels map[string]string `json:"labels"`
	// Capacity is the machine's raw capacity; Allocatable is what pods can use
	// after kube-reserved, system-reserved and eviction thresholds.
	Capacity    corev1.ResourceList `json:"capacity"`
	Allocatable corev1.ResourceList `json:"allocatable"`
	Offerings   []Offering          `json:"offerings"`
}

// LaunchOption is one acceptable (type, zone, capacity type) for a launch,
// with the subnet that serves the zone. Options are ordered cheapest first.
type LaunchOption struct {
	InstanceType string  `json:"instanceType"`
	Zone         string  `json:"zone"`
	SubnetID     string  `json:"subnetID,omitempty"`
	CapacityType string  `json:"capacityType"`
	Price        float64 `json:"price"`
	// ReservationID names the capacity reservation of a reserved option.
	ReservationID string `json:"reservationID,omitempty"`
}

// LaunchRequest asks the provider for exactly one instance. ClientToken makes
// the request idempotent: the same token never yields a second instance.
type LaunchRequest struct {
	ClientToken   string            `json:"clientToken"`
	NodeClaimName string            `json:"nodeClaimName"`
	NodePoolName  string            `json:"nodePoolName"`
	NodeClassName string            `json:"nodeClassName"`
	LeaderTerm    uint64            `json:"leaderTerm"`
	Options       []LaunchOption    `json:"options"`
	Labels        map[string]string `json:"labels,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	// Taints and StartupTaints are registered with the node by the kubelet
	// (--register-with-taints). Labels and taints should be the NodePool
	// template's, not per-NodeClaim values: the provider keys its launch
	// templates on them.
	Taints        []corev1.Taint `json:"taints,omitempty"`
	StartupTaints []corev1.Taint `json:"startupTaints,omitempty"`
}

// Instance states, as EC2 names them.
const (
	StatePending      = "pending"
	StateRunning      = "running"
	StateShuttingDown = "shutting-down"
	StateTerminated   = "terminated"
	StateStopping     = "stopping"
	StateStopped      = "stopped"
)

// Instance is a launched machine.
type Instance struct {
	ID           string            `json:"id"`
	ProviderID   string            `json:"providerID"` // aws:///<zone>/<instance-id>
	InstanceType string            `json:"instanceType"`
	Zone         string            `json:"zone"`
	CapacityType string            `json:"capacityType"`
	ImageID      string            `json:"imageID"`
	State        string            `json:"state"`
	PrivateIP    string            `json:"privateIP,omitempty"`
	LaunchTime   time.Time         `json:"launchTime"`
	Tags         map[string]string `json:"tags,omitempty"`
	// SubnetID and SecurityGroupIDs are where the instance runs on the
	// network; the disruption planner compares them with the EC2NodeClass's
	// resolved subnets and security groups to detect drift. Empty when
	// unknown (e.g. an instance recorded before these fields existed).
	SubnetID         string   `json:"subnetID,omitempty"`
	SecurityGroupIDs []string `json:"securityGroupIDs,omitempty"`
	// CapacityReservationID and CapacityReservationType are set for an
	// instance launched into a capacity reservation (CapacityType reserved).
	CapacityReservationID   string `json:"capacityReservationID,omitempty"`
	CapacityReservationType string `json:"capacityReservationType,omitempty"`
	// CapacityReservationInterruptible: the reservation may be reclaimed.
	CapacityReservationInterruptible bool `json:"capacityReservationInterruptible,omitempty"`
	// PlacementGroupID and PlacementGroupPartition say where the instance
	// was placed when its node class selects a placement group.
	PlacementGroupID        string `json:"placementGroupID,omitempty"`
	PlacementGroupPartition int32  `json:"placementGroupPartition,omitempty"`
}

// ProviderID formats the Kubernetes providerID of an EC2 instance.
func ProviderID(zone, instanceID string) string {
	return "aws:///" + zone + "/" + instanceID
}
