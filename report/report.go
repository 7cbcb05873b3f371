// Package report defines what a node agent tells the coordinator. Small
// liveness metadata travels by gossip (Meta); authoritative reports travel by
// RPC (Report), are forwarded by any replica to the Raft leader and committed.
package report

import (
	"encoding/json"
	"fmt"
	"time"
)

// MaxMetaBytes bounds the gossip metadata record (memberlist's node meta limit is 512).
const MaxMetaBytes = 512

// Meta is the gossip metadata record a node agent carries.
type Meta struct {
	Role        string `json:"r"`           // "agent" or "coordinator"
	NodeName    string `json:"n,omitempty"` // Kubernetes node name
	InstanceID  string `json:"i,omitempty"`
	Health      string `json:"h,omitempty"` // ok, degraded, failed
	Interrupted bool   `json:"x,omitempty"` // an interruption notice is active
	RPCAddr     string `json:"a,omitempty"` // coordinators: where the report RPC listens
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
