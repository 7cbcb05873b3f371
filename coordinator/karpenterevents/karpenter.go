package karpenterevents

// Upstream is one Event reason of Karpenter v1.14.1 as Karpenter records it.
type Upstream struct {
	Type    string   // Normal or Warning
	Objects []string // kinds Karpenter records it on
	Source  string   // where Karpenter defines it
}

// Karpenter is every Event reason Karpenter v1.14.1 defines:
// kubernetes-sigs/karpenter pkg/events/reason.go and each controller's
// events.go (plus pkg/utils/pod/events.go and the termination controller's
// literal reasons), and aws/karpenter-provider-aws pkg/**/events.go. Two AWS
// provider Events have no reason at all ("Failed resolving NodeClass", the
// spot service-linked role failure) and are not listed. The root README's
// Events table has one row per entry (TestRootReadmeListsKarpenterReasons).
var Karpenter = map[string]Upstream{
	DisruptionBlocked:                        {"Normal", []string{"Node", "NodeClaim", "NodePool"}, "core disruption"},
	DisruptionLaunching:                      {"Normal", []string{"NodeClaim"}, "core disruption"},
	DisruptionTerminating:                    {"Normal", []string{"Node", "NodeClaim"}, "core disruption"},
	DisruptionWaitingReadiness:               {"Normal", []string{"NodeClaim"}, "core disruption"},
	Unconsolidatable:                         {"Normal", []string{"Node", "NodeClaim"}, "core disruption"},
	ConsolidationCandidate:                   {"Normal", []string{"Node", "NodeClaim"}, "core disruption"},
	ConsolidationRejected:                    {"Normal", []string{"Node", "NodeClaim"}, "core disruption"},
	ConsolidationApproved:                    {"Normal", []string{"Node", "NodeClaim", "NodePool"}, "core disruption (Balanced)"},
	FailedScheduling:                         {"Warning", []string{"Pod"}, "core provisioning"},
	NoCompatibleInstanceTypes:                {"Warning", []string{"NodePool"}, "core provisioning"},
	Nominated:                                {"Normal", []string{"Pod"}, "core provisioning"},
	NodeRepairBlocked:                        {"Warning", []string{"Node"}, "core node/health"},
	Disrupted:                                {"Normal", []string{"Pod"}, "core termination"},
	Evicted:                                  {"Normal", []string{"Pod"}, "core termination"},
	FailedDraining:                           {"Warning", []string{"Node"}, "core termination"},
	TerminationGracePeriodExpiring:           {"Warning", []string{"Node", "NodeClaim"}, "core termination"},
	"FailedTermination":                      {"Warning", nil, "core termination (declared, never recorded)"},
	AwaitingVolumeDetachment:                 {"Normal", []string{"Node"}, "core termination"},
	FailedConsistencyCheck:                   {"Warning", []string{"NodeClaim"}, "core nodeclaim/consistency"},
	InsufficientCapacityError:                {"Warning", []string{"NodeClaim"}, "core nodeclaim/lifecycle"},
	UnregisteredTaintMissing:                 {"Warning", []string{"NodeClaim"}, "core nodeclaim/lifecycle"},
	NodeClassNotReady:                        {"Warning", []string{"NodeClaim"}, "core nodeclaim/lifecycle"},
	"InvalidDoNotDisruptAnnotation":          {"Warning", []string{"Pod"}, "core utils/pod"},
	"DoNotDisruptUntil":                      {"Normal", []string{"Pod"}, "core utils/pod"},
	"DoNotDisruptGracePeriodElapsed":         {"Normal", []string{"Pod"}, "core utils/pod"},
	SpotInterrupted:                          {"Warning", []string{"Node", "NodeClaim"}, "aws interruption"},
	"CapacityReservationInstanceInterrupted": {"Warning", []string{"Node", "NodeClaim"}, "aws interruption"},
	SpotRebalanceRecommendation:              {"Normal", []string{"Node", "NodeClaim"}, "aws interruption"},
	InstanceStopping:                         {"Warning", []string{"Node", "NodeClaim"}, "aws interruption"},
	InstanceTerminating:                      {"Warning", []string{"Node", "NodeClaim"}, "aws interruption"},
	InstanceUnhealthy:                        {"Warning", []string{"Node", "NodeClaim"}, "aws interruption"},
	TerminatingOnInterruption:                {"Warning", []string{"Node", "NodeClaim"}, "aws interruption"},
	"ZonalShiftActive":                       {"Warning", []string{"NodePool"}, "aws cloudprovider"},
	"ZonalShiftCleared":                      {"Normal", []string{"NodePool"}, "aws cloudprovider"},
	"WaitingOnNodeClaimTermination":          {"Normal", []string{"EC2NodeClass"}, "aws nodeclass"},
}

// NotEmitted says, for each Karpenter reason Dovetail does not record, why:
// Dovetail has no such situation (or not yet the feature behind it).
var NotEmitted = map[string]string{
	"FailedTermination":                      "Karpenter v1.14 declares it and records it nowhere",
	AwaitingVolumeDetachment:                 "Dovetail does not wait for VolumeAttachments before terminating (the EC2 termination detaches EBS volumes)",
	UnregisteredTaintMissing:                 "Dovetail's nodes do not register with the karpenter.sh/unregistered taint, so there is nothing to miss",
	"InvalidDoNotDisruptAnnotation":          "Dovetail honours karpenter.sh/do-not-disrupt: \"true\" only; duration values are not parsed",
	"DoNotDisruptUntil":                      "as InvalidDoNotDisruptAnnotation: no do-not-disrupt durations",
	"DoNotDisruptGracePeriodElapsed":         "as InvalidDoNotDisruptAnnotation: no do-not-disrupt durations",
	"CapacityReservationInstanceInterrupted": "interruptible capacity reservation notices arrive by EventBridge/SQS, which Dovetail's agents (IMDS) do not see",
	"ZonalShiftActive":                       "no ARC zonal shift integration",
	"ZonalShiftCleared":                      "no ARC zonal shift integration",
	"WaitingOnNodeClaimTermination":          "EC2NodeClass deletion is not held by a finalizer while NodeClaims use it",
}
