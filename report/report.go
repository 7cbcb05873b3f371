// Package report defines what a node agent tells the coordinator. Small
// liveness metadata travels by gossip (Meta); authoritative reports travel by
// RPC (Report), are forwarded by any replica to the Raft leader and committed.
package report

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// MaxMetaBytes bounds the gossip metadata record (memberlist's node meta limit is 512).
const MaxMetaBytes = 512

// Meta is the gossip metadata record a node agent carries.
type Meta struct {
	Role       string `json:"r"`           // "agent" or "coordinator"
	NodeName   string `json:"n,omitempty"` // Kubernetes node name
	InstanceID string `json:"i,omitempty"`
	RPCAddr    string `json:"a,omitempty"` // coordinators: where the report RPC listens
}

// Encode returns the record as bytes, refusing records over MaxMetaBytes.
func (m Meta) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode gossip meta: %w", err)
	}
	if len(b) > MaxMetaBytes {
		return nil, fmt.Errorf("gossip meta is %d bytes, limit %d", len(b), MaxMetaBytes)
	}
	return b, nil
}

// DecodeMeta parses a gossip metadata record.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("decode gossip meta: %w", err)
	}
	return m, nil
}

// Kind says what a Report is about.
type Kind string

const (
	KindHealth        Kind = "Health"        // health check results changed
	KindInterruption  Kind = "Interruption"  // spot interruption notice (terminate/stop/hibernate)
	KindRebalance     Kind = "Rebalance"     // rebalance recommendation
	KindMaintenance   Kind = "Maintenance"   // scheduled maintenance event (or its cancellation)
	KindDrainProgress Kind = "DrainProgress" // drain started / progressed / finished
	KindReplaceMe     Kind = "ReplaceMe"     // self-repair gave up: replace this node
)

// CheckResult is one health check's state as the agent saw it.
type CheckResult struct {
	Name      string    `json:"name"`
	Condition string    `json:"condition,omitempty"` // NodeCondition type, e.g. KernelReady
	State     string    `json:"state"`               // ok, degraded, failed
	Reason    string    `json:"reason,omitempty"`
	Message   string    `json:"message,omitempty"`
	Since     time.Time `json:"since"`
}

// Report is an authoritative report from a node agent. ID is unique per
// report so that a retried delivery is applied once.
// MaxBytes bounds one encoded report. A real report is well under 2 KiB
// (a health report with a dozen checks); the coordinator refuses larger
// ones with 413 before decoding, so no sender can grow the replicated
// state with a large report.
const MaxBytes = 8 << 10

type Report struct {
	ID         string    `json:"id"`
	Kind       Kind      `json:"kind"`
	NodeName   string    `json:"nodeName"`
	InstanceID string    `json:"instanceID,omitempty"`
	ProviderID string    `json:"providerID,omitempty"`
	ObservedAt time.Time `json:"observedAt"`

	// Interruption / maintenance
	Action    string    `json:"action,omitempty"`   // terminate, stop, hibernate, reboot, ...
	Deadline  time.Time `json:"deadline,omitempty"` // when the action happens
	EventID   string    `json:"eventID,omitempty"`  // maintenance event id
	Cancelled bool      `json:"cancelled,omitempty"`

	// Health
	Checks []CheckResult `json:"checks,omitempty"`

	// Drain progress
	PodsRemaining int    `json:"podsRemaining,omitempty"`
	PodsEvicted   int    `json:"podsEvicted,omitempty"`
	Blocked       string `json:"blocked,omitempty"` // why eviction is blocked, e.g. a PDB
	Done          bool   `json:"done,omitempty"`

	Message string `json:"message,omitempty"`
}

// Path is the coordinator HTTP endpoint that accepts a JSON Report.
const Path = "/v1/reports"

// Clipped returns r with its free-text fields and check list cut so that
// it encodes well under MaxBytes: a verbose health check must not make the
// coordinator refuse the whole report.
func (r Report) Clipped() Report {
	// 16 checks × 2 × 128 bytes + the fixed fields + 2 × 512 stays < 8 KiB.
	const maxText, maxCheckText, maxChecks = 512, 128, 16
	clipTo := func(s string, maxText int) string {
		if len(s) <= maxText {
			return s
		}
		s = s[:maxText]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1] // do not cut a rune in half
		}
		return s + "…"
	}
	clip := func(s string) string { return clipTo(s, maxText) }
	r.Message, r.Blocked = clip(r.Message), clip(r.Blocked)
	if len(r.Checks) > maxChecks {
		r.Checks = r.Checks[:maxChecks]
	}
	if r.Checks != nil {
		checks := make([]CheckResult, len(r.Checks))
		for i, c := range r.Checks {
			c.Message, c.Reason = clipTo(c.Message, maxCheckText), clipTo(c.Reason, maxCheckText)
			checks[i] = c
		}
		r.Checks = checks
	}
	return r
}
