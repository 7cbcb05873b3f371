package api

import (
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// Paths served by every replica.
const (
	PathStatus      = "/v1/status"
	PathNodes       = "/v1/nodes"
	PathLaunches    = "/v1/launches"
	PathRollouts    = "/v1/rollouts"
	PathDisruptions = "/v1/disruptions"
	PathHealthz     = "/healthz"
	PathReadyz      = "/readyz"
	PathMetrics     = "/metrics"
	// HeaderForwarded marks a request a replica forwarded to the leader, so
	// it is never forwarded twice (no loops during an election).
	HeaderForwarded = "X-Dovetail-Forwarded"
	// HeaderServedBy names the replica that answered.
	HeaderServedBy = "X-Dovetail-Replica"
)

// Server is one member of the Raft configuration.
type Server struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// Status is the answer of GET /v1/status.
type Status struct {
	Replica      string    `json:"replica"`
	State        string    `json:"state"` // Leader, Follower, Candidate, Shutdown
	Term         uint64    `json:"term"`
	LeaderID     string    `json:"leaderID"`
	LeaderAddr   string    `json:"leaderAddr"`
	AppliedIndex uint64    `json:"appliedIndex"`
	CommitIndex  uint64    `json:"commitIndex"`
	Servers      []Server  `json:"servers"`
	EpochTerm    uint64    `json:"epochTerm"`
	EpochLeader  string    `json:"epochLeader"`
	EpochSince   time.Time `json:"epochSince"`
	InGrace      bool      `json:"inGrace"`
	OpenLaunches int       `json:"openLaunches"`
	Launches     int       `json:"launches"`
	Nodes        int       `json:"nodes"`
	Disruptions  int       `json:"disruptions"`
	Rollouts     int       `json:"rollouts"`
	ICE          int       `json:"iceEntries"`
}

// Node is one row of GET /v1/nodes.
type Node struct {
	Name         string    `json:"name"`
	InstanceID   string    `json:"instanceID,omitempty"`
	NodeClaim    string    `json:"nodeClaim,omitempty"`
	NodePool     string    `json:"nodePool,omitempty"`
	Health       string    `json:"health,omitempty"`
	Interruption string    `json:"interruption,omitempty"`
	Deadline     time.Time `json:"deadline,omitzero"`
	Disruption   string    `json:"disruption,omitempty"`
	Drain        string    `json:"drain,omitempty"`
	Replace      bool      `json:"replaceRequested,omitempty"`
	LastReport   time.Time `json:"lastReport,omitzero"`
	// Checks are the failing or degraded checks.
	Checks []string `json:"checks,omitempty"`
}

// Launches is the answer of GET /v1/launches.
type Launches struct {
	Intents []*fsm.Intent `json:"intents"`
}

// Rollouts is the answer of GET /v1/rollouts.
type Rollouts struct {
	Rollouts []*fsm.Rollout `json:"rollouts"`
}

// Disruptions is the answer of GET /v1/disruptions.
type Disruptions struct {
	Disruptions []*fsm.Disruption `json:"disruptions"`
}

// ReportAck is the answer of POST /v1/reports.
type ReportAck struct {
	ID       string `json:"id"`
	Accepted bool   `json:"accepted"`
	Leader   string `json:"leader"`
}

// Error is the body of a non-2xx answer.
type Error struct {
	Error  string `json:"error"`
	Leader string `json:"leader,omitempty"`
	// Reason is set on 401/403: the refusal reason (no_token, bad_token,
	// forbidden, ...), the label of dovetail_api_refused_total.
	Reason string `json:"reason,omitempty"`
	// NotApplied is set when the request certainly had no effect (no leader
	// to forward to, leader unreachable, refused before it reached the log);
	// otherwise a failed write's outcome is unknown. Either way a retry is
	// safe: writes are idempotent.
	NotApplied bool `json:"notApplied,omitempty"`
}
