// Package karpenterevents names the Kubernetes Event reasons Dovetail emits.
// Where Karpenter v1.14 (kubernetes-sigs/karpenter pkg/events and the
// controllers' events.go, aws/karpenter-provider-aws interruption events) has
// a reason for a situation, Dovetail uses the same reason on the same kind of
// object, so `kubectl get events --field-selector reason=...` and event-based
// alerts carry over. Reasons Karpenter lacks are listed apart as Dovetail's.
package karpenterevents

// Karpenter v1.14's reasons.
const (
	// Scheduling and provisioning.
	Nominated                 = "Nominated"                 // Pod, Normal: pod should schedule on a NodeClaim/Node
	FailedScheduling          = "FailedScheduling"          // Pod, Warning: no NodePool can fit the pod
	NoCompatibleInstanceTypes = "NoCompatibleInstanceTypes" // NodePool, Warning: requirements filter out every instance type

	// NodeClaim lifecycle.
	InsufficientCapacityError = "InsufficientCapacityError" // NodeClaim, Warning: every offering is out of capacity
	NodeClassNotReady         = "NodeClassNotReady"         // NodeClaim, Warning: its EC2NodeClass is not Ready
	FailedConsistencyCheck    = "FailedConsistencyCheck"    // NodeClaim, Warning: node and claim disagree
	UnregisteredTaintMissing  = "UnregisteredTaintMissing"  // NodeClaim, Warning: node registered without the unregistered taint

	// Voluntary disruption.
	DisruptionBlocked          = "DisruptionBlocked"          // Node, NodeClaim, NodePool, Normal
	Unconsolidatable           = "Unconsolidatable"           // Node, NodeClaim, Normal
	DisruptionLaunching        = "DisruptionLaunching"        // NodeClaim, Normal: replacement launched
	DisruptionWaitingReadiness = "DisruptionWaitingReadiness" // NodeClaim, Normal: waiting on the replacement
	DisruptionTerminating      = "DisruptionTerminating"      // Node, NodeClaim, Normal: candidate being terminated
	ConsolidationCandidate     = "ConsolidationCandidate"     // Node, NodeClaim, Normal: consolidation chose the node, validation pending
	ConsolidationRejected      = "ConsolidationRejected"      // Node, NodeClaim, Normal: validation dropped the consolidation
	ConsolidationApproved      = "ConsolidationApproved"      // Node, NodeClaim (NodePool for multi-node), Normal: a Balanced pool's score took the move

	// Termination.
	Disrupted                      = "Disrupted"                      // Pod, Normal: evicted by a disruption
	Evicted                        = "Evicted"                        // Pod, Normal
	FailedDraining                 = "FailedDraining"                 // Node, Warning: pods could not be evicted
	TerminationGracePeriodExpiring = "TerminationGracePeriodExpiring" // Node, NodeClaim, Warning
	AwaitingVolumeDetachment       = "AwaitingVolumeDetachment"       // Node, Normal

	// Node repair.
	NodeRepairBlocked = "NodeRepairBlocked" // Node, Warning: the repair limit holds the node's replacement back

	// Interruption (aws/karpenter-provider-aws).
	SpotInterrupted             = "SpotInterrupted"             // Node, NodeClaim, Warning
	SpotRebalanceRecommendation = "SpotRebalanceRecommendation" // Node, NodeClaim, Normal
	InstanceStopping            = "InstanceStopping"            // Node, NodeClaim, Warning
	InstanceTerminating         = "InstanceTerminating"         // Node, NodeClaim, Warning
	InstanceUnhealthy           = "InstanceUnhealthy"           // Node, NodeClaim, Warning: scheduled maintenance
	TerminatingOnInterruption   = "TerminatingOnInterruption"   // Node, NodeClaim, Warning: Dovetail acts on the notice
)

// Dovetail's own reasons, for situations Karpenter has no reason for.
const (
	// ReplacementNotReady: a drift replacement did not become Ready in
	// time; the rollout halts until `dovetail rollout resume`.
	ReplacementNotReady = "ReplacementNotReady"
	// NodeClassReady: the EC2NodeClass resolved its AMIs, subnets and
	// security groups.
	NodeClassReady = "Ready"
	// InvalidBudget: a NodePool disruption budget the evaluator refuses
	// (e.g. a tab-separated or never-firing schedule); next to
	// ValidationSucceeded=False.
	InvalidBudget = "InvalidBudget"
	// LeaderComponentPanic: a leader component panicked while working on
	// this object; it was recovered and the component restarted.
	LeaderComponentPanic = "LeaderComponentPanic"
)

// Info says what kind of Event a reason is and where it appears.
type Info struct {
	Type    string   // Normal or Warning
	Objects []string // kinds the Event is recorded on
	Karp    bool     // Karpenter v1.14 has this reason
}

// All is every reason Dovetail records, with its type and the objects it is
// recorded on; the README tables and the tests are built from it. The
// Karpenter reasons missing here are in NotEmitted, with the reason why.
var All = map[string]Info{
	Nominated:                      {"Normal", []string{"Pod"}, true},
	FailedScheduling:               {"Warning", []string{"Pod"}, true},
	NoCompatibleInstanceTypes:      {"Warning", []string{"NodePool"}, true},
	InsufficientCapacityError:      {"Warning", []string{"NodeClaim"}, true},
	NodeClassNotReady:              {"Warning", []string{"NodeClaim"}, true},
	FailedConsistencyCheck:         {"Warning", []string{"NodeClaim"}, true},
	DisruptionBlocked:              {"Normal", []string{"Node", "NodeClaim", "NodePool"}, true},
	Unconsolidatable:               {"Normal", []string{"Node", "NodeClaim"}, true},
	DisruptionLaunching:            {"Normal", []string{"NodeClaim"}, true},
	DisruptionWaitingReadiness:     {"Normal", []string{"NodeClaim"}, true},
	DisruptionTerminating:          {"Normal", []string{"Node", "NodeClaim"}, true},
	ConsolidationCandidate:         {"Normal", []string{"Node", "NodeClaim"}, true},
	ConsolidationRejected:          {"Normal", []string{"Node", "NodeClaim"}, true},
	ConsolidationApproved:          {"Normal", []string{"Node", "NodeClaim", "NodePool"}, true},
	Disrupted:                      {"Normal", []string{"Pod"}, true},
	Evicted:                        {"Normal", []string{"Pod"}, true},
	FailedDraining:                 {"Warning", []string{"Node"}, true},
	TerminationGracePeriodExpiring: {"Warning", []string{"Node", "NodeClaim"}, true},
	NodeRepairBlocked:              {"Warning", []string{"Node"}, true},
	SpotInterrupted:                {"Warning", []string{"Node", "NodeClaim"}, true},
	SpotRebalanceRecommendation:    {"Normal", []string{"Node", "NodeClaim"}, true},
	InstanceStopping:               {"Warning", []string{"Node", "NodeClaim"}, true},
	InstanceTerminating:            {"Warning", []string{"Node", "NodeClaim"}, true},
	InstanceUnhealthy:              {"Warning", []string{"Node", "NodeClaim"}, true},
	TerminatingOnInterruption:      {"Warning", []string{"Node", "NodeClaim"}, true},
	ReplacementNotReady:            {"Warning", []string{"Node"}, false},
	NodeClassReady:                 {"Normal", []string{"EC2NodeClass"}, false},
	InvalidBudget:                  {"Warning", []string{"NodePool"}, false},
	LeaderComponentPanic:           {"Warning", []string{"NodePool", "NodeClaim"}, false},
}
