// Package fsm is the coordinator's replicated memory: a deterministic state
// machine of typed commands applied through Raft. Kubernetes objects stay the
// user's interface; this state is what a new leader needs to carry on exactly
// where the old one stopped (open launches, disruptions, rollouts, reports).
//
// Determinism: Apply never reads the clock or any other local input. Every
// time a command needs comes inside the command, stamped by the leader.
//
// Encoding: one type byte followed by a JSON body. A type with the
// FlagIgnorable bit set may be skipped by a replica that does not know it,
// so a rolling upgrade can introduce new optional commands; an unknown type
// without the bit is a hard error (the replica must be upgraded first).
package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/report"
)

// Type identifies a command on the wire. Values are stable forever: never
// renumber, only add.
type Type uint8

// FlagIgnorable marks a command type that an older replica may skip.
const FlagIgnorable Type = 0x80

// Command types. Core commands (without FlagIgnorable) are ones whose loss
// would corrupt state; newer optional ones should carry the flag.
const (
	TypeIntentCreate    Type = 1  // IntentCreate
	TypeIntentResult    Type = 2  // IntentResult
	TypeIntentDelete    Type = 3  // IntentDelete
	typeRetired4        Type = 4  // was NodeBind: IntentUpdate{NodeName} records the binding
	typeRetired5        Type = 5  // was NodeUnbind: IntentDelete drops the binding
	TypeICEMark         Type = 6  // ICEMark
	TypeICEExpire       Type = 7  // ICEExpire
	TypeDisruptionBegin Type = 8  // DisruptionBegin
	TypeDisruptionEnd   Type = 9  // DisruptionEnd
	TypeRolloutSet      Type = 10 // RolloutSet
	TypeRolloutDelete   Type = 11 // RolloutDelete
	TypeReport          Type = 12 // ReportReceived
	typeRetired13       Type = 13 // was NodeForget: IntentDelete forgets the instance's node state
	TypeLeaderEpoch     Type = 14 // LeaderEpoch
	TypeIntentUpdate    Type = 15 // IntentUpdate
	TypeAttestBind      Type = 16 // AttestBind
	TypeAttestReset     Type = 17 // AttestReset
	TypeNoop            Type = FlagIgnorable | 1
)

// Command is one typed state change. Implementations are plain values.
type Command interface {
	CommandType() Type
}

// Intent states. An intent is open while Pending; Launched and Failed resolve
// it. Deleting means the NodeClaim is gone and the instance must be terminated.
const (
	IntentPending  = "Pending"
	IntentLaunched = "Launched"
	IntentFailed   = "Failed"
	IntentDeleting = "Deleting"
)

// Intent is a launch the leader committed to before calling the cloud.
type Intent struct {
	// Token is the EC2 client token, derived from the NodeClaim UID; the key.
	Token        string               `json:"token"`
	NodeClaim    string               `json:"nodeClaim"`
	NodeClaimUID string               `json:"nodeClaimUID"`
	NodePool     string               `json:"nodePool"`
	NodeClass    string               `json:"nodeClass"`
	Options      []cloud.LaunchOption `json:"options"`
	Labels       map[string]string    `json:"labels,omitempty"`
	// Taints and StartupTaints are registered by the kubelet with the node
	// (the NodePool template's); they travel in the instance's user data.
	Taints         []corev1.Taint  `json:"taints,omitempty"`
	StartupTaints  []corev1.Taint  `json:"startupTaints,omitempty"`
	State          string          `json:"state"`
	Term           uint64          `json:"term"` // leader term that created the intent
	Attempts       int             `json:"attempts"`
	CreatedAt      time.Time       `json:"createdAt"`
	UpdatedAt      time.Time       `json:"updatedAt"`
	Instance       *cloud.Instance `json:"instance,omitempty"`
	Error          string          `json:"error,omitempty"`
	ICE            bool            `json:"ice,omitempty"` // failed for lack of capacity
	Registered     bool            `json:"registered,omitempty"`
	Initialized    bool            `json:"initialized,omitempty"`
	NodeName       string          `json:"nodeName,omitempty"`
	LaunchedByTerm uint64          `json:"launchedByTerm,omitempty"`
}

// Open reports whether the intent still needs the cloud to act.
func (i *Intent) Open() bool { return i.State == IntentPending || i.State == IntentDeleting }

// IntentCreate records a launch intent. Idempotent: a second create with the
// same token leaves the first untouched.
type IntentCreate struct {
	Intent Intent `json:"intent"`
}

// IntentResult records what the cloud did for an intent. State is
// IntentLaunched (Instance set) or IntentFailed (Error set). Idempotent: a
// result for an already-resolved intent is ignored, so a retried apply whose
// outcome was unknown is harmless.
type IntentResult struct {
	Token    string          `json:"token"`
	State    string          `json:"state"`
	Instance *cloud.Instance `json:"instance,omitempty"`
	Error    string          `json:"error,omitempty"`
	ICE      bool            `json:"ice,omitempty"`
	Term     uint64          `json:"term"`
	At       time.Time       `json:"at"`
}

// IntentUpdate advances the lifecycle of a launched intent (Registered,
// Initialized, node name — which also records the instance's node
// binding), or moves it to Deleting, or counts an attempt.
// Fields left zero are not changed.
type IntentUpdate struct {
	Token       string    `json:"token"`
	Registered  bool      `json:"registered,omitempty"`
	Initialized bool      `json:"initialized,omitempty"`
	NodeName    string    `json:"nodeName,omitempty"`
	Deleting    bool      `json:"deleting,omitempty"`
	Attempt     bool      `json:"attempt,omitempty"`
	Error       string    `json:"error,omitempty"`
	At          time.Time `json:"at"`
}

// IntentDelete forgets an intent (its NodeClaim and instance are gone).
type IntentDelete struct {
	Token string `json:"token"`
}

// NodeBinding maps an instance to its Kubernetes node and NodeClaim.
type NodeBinding struct {
	InstanceID string    `json:"instanceID"`
	ProviderID string    `json:"providerID"`
	NodeName   string    `json:"nodeName,omitempty"`
	NodeClaim  string    `json:"nodeClaim,omitempty"`
	NodePool   string    `json:"nodePool,omitempty"`
	Since      time.Time `json:"since"`
}

// ICEEntry says an offering is out of capacity until a time.
type ICEEntry struct {
	InstanceType string    `json:"instanceType"`
	Zone         string    `json:"zone"`
	CapacityType string    `json:"capacityType"`
	Code         string    `json:"code,omitempty"`
	Until        time.Time `json:"until"`
}

// Key is the map key of an offering.
func (e ICEEntry) Key() string { return OfferingKey(e.InstanceType, e.Zone, e.CapacityType) }

// OfferingKey is the ICE cache key of a (type, zone, capacity type).
func OfferingKey(instanceType, zone, capacityType string) string {
	return instanceType + "/" + zone + "/" + capacityType
}

// ICEMark marks offerings unavailable until the entries' Until.
type ICEMark struct {
	Entries []ICEEntry `json:"entries"`
}

// ICEExpire drops entries whose Until is at or before Now.
type ICEExpire struct {
	Now time.Time `json:"now"`
}

// Disruption is one entry of the disruption ledger.
type Disruption struct {
	NodeName  string    `json:"nodeName"`
	NodeClaim string    `json:"nodeClaim,omitempty"`
	NodePool  string    `json:"nodePool"`
	Reason    string    `json:"reason"`           // Drifted, Expired, Empty, Underutilized, Interrupted, Unhealthy, Rollout ...
	Budget    string    `json:"budget,omitempty"` // which budget of the NodePool it counts against
	Since     time.Time `json:"since"`
	// Replacements are the NodeClaims launched to take over this node's pods.
	Replacements []string `json:"replacements,omitempty"`
	Phase        string   `json:"phase,omitempty"` // free-form: Replacing, Draining, Terminating
}

// DisruptionBegin adds or replaces a ledger entry (keyed by node name).
type DisruptionBegin struct {
	Disruption Disruption `json:"disruption"`
}

// DisruptionEnd removes a ledger entry.
type DisruptionEnd struct {
	NodeName string `json:"nodeName"`
}

// Rollout is the AMI rollout state of one NodePool.
type Rollout struct {
	NodePool      string    `json:"nodePool"`
	TargetAMI     string    `json:"targetAMI"`
	Done          []string  `json:"done,omitempty"`       // node names on the target
	InProgress    []string  `json:"inProgress,omitempty"` // node names being replaced
	Remaining     []string  `json:"remaining,omitempty"`  // node names still to do
	BlockedReason string    `json:"blockedReason,omitempty"`
	Paused        bool      `json:"paused,omitempty"`
	StartedAt     time.Time `json:"startedAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
}

// RolloutSet stores the whole rollout state of a NodePool.
type RolloutSet struct {
	Rollout Rollout `json:"rollout"`
}

// RolloutDelete forgets a NodePool's rollout.
type RolloutDelete struct {
	NodePool string `json:"nodePool"`
}

// ReportReceived commits an agent report. Duplicates (same Report.ID) are
// ignored. ReceivedAt is the leader's clock when it accepted the report.
type ReportReceived struct {
	Report     report.Report `json:"report"`
	ReceivedAt time.Time     `json:"receivedAt"`
	// AttestedInstance and Seq are set for a report signed with an
	// attestation key: the FSM refuses it unless Seq is above the binding's
	// LastSeq, and then raises LastSeq.
	AttestedInstance string `json:"attestedInstance,omitempty"`
	Seq              int64  `json:"seq,omitempty"`
}

// LeaderEpoch is committed by every new leader after its barrier. Its At is
// the start of the grace period during which no node may be judged gone.
type LeaderEpoch struct {
	Term   uint64    `json:"term"`
	Leader string    `json:"leader"`
	At     time.Time `json:"at"`
}

// Attestation binds an EC2 instance, proven by its identity document, to
// the Ed25519 key its node agent generated (trust on first use). Every
// report about the instance must be signed with that key.
type Attestation struct {
	InstanceID string `json:"instanceID"`
	NodeName   string `json:"nodeName"`
	// PublicKey is the raw 32-byte Ed25519 public key.
	PublicKey []byte `json:"publicKey"`
	// Format is the IMDS signature form that proved the document.
	Format string    `json:"format,omitempty"`
	Since  time.Time `json:"since"`
	// LastSeq is the sequence (the signing time in Unix nanoseconds) of the
	// last committed signed request: a request at or below it is a replay,
	// refused on every replica and across leader changes.
	LastSeq int64 `json:"lastSeq,omitempty"`
}

// ErrKeyMismatch is the FSM's refusal of an AttestBind for an instance
// already bound to another key (a replayed document, or a reinstalled agent
// that needs an operator's reset).
var ErrKeyMismatch = errors.New("instance is bound to another key")

// ErrNotOwned refuses an AttestBind for an instance no launch of this
// cluster owns: bindings stay bounded by live instances.
var ErrNotOwned = errors.New("no NodeClaim owns the instance")

// ErrReplayed refuses a signed report whose sequence is not above the
// committed one.
var ErrReplayed = errors.New("report sequence already used")

// AttestBind commits a first attestation, or renews one with the same key.
type AttestBind struct {
	Attestation Attestation `json:"attestation"`
}

// AttestReset forgets an instance's key binding (operator action, so a
// reinstalled agent with a new key may attest again).
type AttestReset struct {
	InstanceID string `json:"instanceID"`
}

// Noop changes nothing; it exists to test FlagIgnorable and as a write probe.
type Noop struct {
	Note string `json:"note,omitempty"`
}

func (IntentCreate) CommandType() Type    { return TypeIntentCreate }
func (IntentResult) CommandType() Type    { return TypeIntentResult }
func (IntentUpdate) CommandType() Type    { return TypeIntentUpdate }
func (IntentDelete) CommandType() Type    { return TypeIntentDelete }
func (ICEMark) CommandType() Type         { return TypeICEMark }
func (ICEExpire) CommandType() Type       { return TypeICEExpire }
func (DisruptionBegin) CommandType() Type { return TypeDisruptionBegin }
func (DisruptionEnd) CommandType() Type   { return TypeDisruptionEnd }
func (RolloutSet) CommandType() Type      { return TypeRolloutSet }
func (RolloutDelete) CommandType() Type   { return TypeRolloutDelete }
func (ReportReceived) CommandType() Type  { return TypeReport }
func (LeaderEpoch) CommandType() Type     { return TypeLeaderEpoch }
func (Noop) CommandType() Type            { return TypeNoop }
func (AttestBind) CommandType() Type      { return TypeAttestBind }
func (AttestReset) CommandType() Type     { return TypeAttestReset }

// Encode serialises a command as its type byte and JSON body.
func Encode(c Command) ([]byte, error) {
	if c == nil {
		return nil, errors.New("encode command: nil")
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", c.CommandType(), err)
	}
	out := make([]byte, 0, len(body)+1)
	out = append(out, byte(c.CommandType()))
	return append(out, body...), nil
}

// ErrUnknownCommand is returned for a command type this replica does not know
// and may not skip.
var ErrUnknownCommand = errors.New("unknown command type")

// Decode parses a command. For an unknown type with FlagIgnorable set it
// returns (nil, nil): the caller skips it.
func Decode(b []byte) (Command, error) {
	if len(b) == 0 {
		return nil, errors.New("decode command: empty")
	}
	t := Type(b[0])
	var c Command
	switch t {
	case TypeIntentCreate:
		c = &IntentCreate{}
	case TypeIntentResult:
		c = &IntentResult{}
	case TypeIntentUpdate:
		c = &IntentUpdate{}
	case TypeIntentDelete:
		c = &IntentDelete{}
	case typeRetired4, typeRetired5, typeRetired13:
		// Commands no replica proposes any more. A log written before they
		// were retired may still hold them; what they did is carried by
		// IntentUpdate and IntentDelete in the same log, so they are skipped.
		return nil, nil
	case TypeICEMark:
		c = &ICEMark{}
	case TypeICEExpire:
		c = &ICEExpire{}
	case TypeDisruptionBegin:
		c = &DisruptionBegin{}
	case TypeDisruptionEnd:
		c = &DisruptionEnd{}
	case TypeRolloutSet:
		c = &RolloutSet{}
	case TypeRolloutDelete:
		c = &RolloutDelete{}
	case TypeReport:
		c = &ReportReceived{}
	case TypeLeaderEpoch:
		c = &LeaderEpoch{}
	case TypeNoop:
		c = &Noop{}
	case TypeAttestBind:
		c = &AttestBind{}
	case TypeAttestReset:
		c = &AttestReset{}
	default:
		if t&FlagIgnorable != 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("%w %d: upgrade this replica", ErrUnknownCommand, t)
	}
	if err := json.Unmarshal(b[1:], c); err != nil {
		return nil, fmt.Errorf("decode command %d: %w", t, err)
	}
	return c, nil
}
