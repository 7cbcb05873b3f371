package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dovetail-dev/dovetail/report"
)

// reportIDRetention bounds the dedupe window for report IDs: an agent retries
// a delivery for minutes, not days.
const reportIDRetention = 24 * time.Hour

// reportIDWindow caps the dedupe window at this many report IDs (about
// 3 MiB of state): at 1,000 nodes reporting every 5 minutes it still holds
// the last ~5.5 hours, far longer than an agent retries one report (its
// spool gives up within minutes). Only a report replayed after its ID left
// the window would be applied twice.
const reportIDWindow = 65536

// NodeStatus is what the agents' reports say about one node.
type NodeStatus struct {
	NodeName   string `json:"nodeName"`
	InstanceID string `json:"instanceID,omitempty"`
	ProviderID string `json:"providerID,omitempty"`
	// Health is the worst state among Checks: ok, degraded or failed.
	Health   string               `json:"health,omitempty"`
	Checks   []report.CheckResult `json:"checks,omitempty"`
	HealthAt time.Time            `json:"healthAt,omitempty"`
	// Interruption is the latest active interruption, rebalance or
	// maintenance report (nil once cancelled).
	Interruption *report.Report `json:"interruption,omitempty"`
	Drain        *report.Report `json:"drain,omitempty"`
	// ReplaceRequested is set by a ReplaceMe report: self-repair gave up.
	ReplaceRequested bool      `json:"replaceRequested,omitempty"`
	LastReportAt     time.Time `json:"lastReportAt"`
}

// DrainEndedAfterNotice reports whether the agent has reported the end of a
// drain that began with the node's current spot notice. The agent reports
// the notice once it has cordoned the node, then its drain's progress, so a
// finished drain observed no earlier than the notice is that notice's.
func (n *NodeStatus) DrainEndedAfterNotice() bool {
	return n.Interruption != nil && n.Interruption.Kind == report.KindInterruption &&
		n.Drain != nil && n.Drain.Done && !n.Drain.ObservedAt.Before(n.Interruption.ObservedAt)
}

// SameInstance reports whether this status may describe the instance with
// the given provider ID and/or instance ID. Node names are hostnames that EC2
// reuses, so a status is about an instance, not a name: when both sides name
// an instance and they differ, it is another machine. A side that names no
// instance (a node not yet initialised, a status from before the agent knew
// its identity) cannot disprove it.
func (n *NodeStatus) SameInstance(providerID, instanceID string) bool {
	if instanceID == "" && providerID != "" {
		instanceID = providerID[strings.LastIndex(providerID, "/")+1:]
	}
	mine := n.InstanceID
	if mine == "" && n.ProviderID != "" {
		mine = n.ProviderID[strings.LastIndex(n.ProviderID, "/")+1:]
	}
	if n.ProviderID != "" && providerID != "" {
		return n.ProviderID == providerID
	}
	return mine == "" || instanceID == "" || mine == instanceID
}

// State is the whole replicated state. Maps are keyed as documented.
type State struct {
	// Index is the Raft index of the last applied command.
	Index       uint64                  `json:"index"`
	Intents     map[string]*Intent      `json:"intents"`     // by client token
	Bindings    map[string]*NodeBinding `json:"bindings"`    // by instance ID
	ICE         map[string]ICEEntry     `json:"ice"`         // by OfferingKey
	Disruptions map[string]*Disruption  `json:"disruptions"` // by node name
	Rollouts    map[string]*Rollout     `json:"rollouts"`    // by NodePool
	Nodes       map[string]*NodeStatus  `json:"nodes"`       // by node name
	ReportIDs   map[string]time.Time    `json:"reportIDs"`   // dedupe window
	// ReportOrder is the dedupe window's IDs in apply order, oldest first
	// (a FIFO ring over a slice): eviction pops from the front, so an apply
	// costs O(1) however many IDs are held. Snapshotted with ReportIDs;
	// rebuilt from it (by time, then ID) for snapshots taken before it.
	ReportOrder []string `json:"reportOrder,omitempty"`
	// Attestations are the agents' key bindings, by instance ID; only
	// instances with a binding (launched by this cluster) have one.
	Attestations map[string]*Attestation `json:"attestations"`
	Epoch        LeaderEpoch             `json:"epoch"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{
		Intents:      map[string]*Intent{},
		Bindings:     map[string]*NodeBinding{},
		ICE:          map[string]ICEEntry{},
		Disruptions:  map[string]*Disruption{},
		Rollouts:     map[string]*Rollout{},
		Nodes:        map[string]*NodeStatus{},
		ReportIDs:    map[string]time.Time{},
		Attestations: map[string]*Attestation{},
	}
}

// Clone returns a deep copy.
func (s *State) Clone() *State {
	b, err := json.Marshal(s)
	if err != nil {
		// State holds only JSON-safe values; failing here is a programming error
		// we still refuse to panic on: return an empty state tagged by index.
		out := NewState()
		out.Index = s.Index
		return out
	}
	out := NewState()
	if err := json.Unmarshal(b, out); err != nil {
		out = NewState()
		out.Index = s.Index
	}
	out.fillNil()
	return out
}

func (s *State) fillNil() {
	if s.Intents == nil {
		s.Intents = map[string]*Intent{}
	}
	if s.Bindings == nil {
		s.Bindings = map[string]*NodeBinding{}
	}
	if s.ICE == nil {
		s.ICE = map[string]ICEEntry{}
	}
	if s.Disruptions == nil {
		s.Disruptions = map[string]*Disruption{}
	}
	if s.Rollouts == nil {
		s.Rollouts = map[string]*Rollout{}
	}
	if s.Nodes == nil {
		s.Nodes = map[string]*NodeStatus{}
	}
	if s.ReportIDs == nil {
		s.ReportIDs = map[string]time.Time{}
	}
	if len(s.ReportOrder) != len(s.ReportIDs) {
		s.rebuildReportOrder()
	}
	if s.Attestations == nil {
		s.Attestations = map[string]*Attestation{}
	}
}

// IntentByNodeClaim finds the intent for a NodeClaim name, or nil.
func (s *State) IntentByNodeClaim(name string) *Intent {
	for _, in := range s.Intents {
		if in.NodeClaim == name {
			return in
		}
	}
	return nil
}

// OpenIntents returns the open intents sorted by creation then token.
func (s *State) OpenIntents() []*Intent {
	var out []*Intent
	for _, in := range s.Intents {
		if in.Open() {
			out = append(out, in)
		}
	}
	SortIntents(out)
	return out
}

// SortIntents orders intents by creation time, then token.
func SortIntents(in []*Intent) {
	sort.Slice(in, func(a, b int) bool {
		if !in[a].CreatedAt.Equal(in[b].CreatedAt) {
			return in[a].CreatedAt.Before(in[b].CreatedAt)
		}
		return in[a].Token < in[b].Token
	})
}

// Unavailable reports whether an offering is in the ICE cache at now.
func (s *State) Unavailable(instanceType, zone, capacityType string, now time.Time) bool {
	e, ok := s.ICE[OfferingKey(instanceType, zone, capacityType)]
	return ok && now.Before(e.Until)
}

// InGracePeriod reports whether now is within grace of the last leader change:
// during it no node may be judged unhealthy or gone, because the new leader
// has not yet heard from the agents.
func (s *State) InGracePeriod(now time.Time, grace time.Duration) bool {
	return s.Epoch.At.IsZero() || now.Before(s.Epoch.At.Add(grace))
}

// apply mutates the state with one decoded command.
func (s *State) apply(c Command) error {
	switch c := c.(type) {
	case *IntentCreate:
		return s.applyIntentCreate(c)
	case *IntentResult:
		return s.applyIntentResult(c)
	case *IntentUpdate:
		return s.applyIntentUpdate(c)
	case *IntentDelete:
		return s.applyIntentDelete(c)
	case *ICEMark:
		return s.applyICEMark(c)
	case *ICEExpire:
		return s.applyICEExpire(c)
	case *DisruptionBegin:
		return s.applyDisruptionBegin(c)
	case *DisruptionEnd:
		return s.applyDisruptionEnd(c)
	case *RolloutSet:
		return s.applyRolloutSet(c)
	case *RolloutDelete:
		return s.applyRolloutDelete(c)
	case *ReportReceived:
		return s.applyReport(c)
	case *LeaderEpoch:
		return s.applyLeaderEpoch(c)
	case *AttestBind:
		return s.applyAttestBind(c)
	case *AttestReset:
		return s.applyAttestReset(c)
	case *Noop:
		return nil
	default:
		return fmt.Errorf("%w %T", ErrUnknownCommand, c)
	}
}

// applyIntentCreate records a launch intent once per token (a retried proposal is a no-op).
func (s *State) applyIntentCreate(c *IntentCreate) error {
	in := c.Intent
	if in.Token == "" {
		return fmt.Errorf("intent create: empty token")
	}
	if _, ok := s.Intents[in.Token]; ok {
		return nil
	}
	if in.State == "" {
		in.State = IntentPending
	}
	s.Intents[in.Token] = &in
	return nil
}

// applyIntentResult resolves a pending intent with its launch outcome; an instance that
// launched after its NodeClaim was deleted is kept so termination finds it.
func (s *State) applyIntentResult(c *IntentResult) error {
	in, ok := s.Intents[c.Token]
	if ok && in.State == IntentDeleting && in.Instance == nil && c.State == IntentLaunched && c.Instance != nil {
		// The NodeClaim was deleted while its launch was in flight: keep
		// the instance so the termination finds it.
		inst := *c.Instance
		in.Instance = &inst
		in.LaunchedByTerm = c.Term
		return nil
	}
	if !ok || in.State != IntentPending {
		return nil
	}
	switch c.State {
	case IntentLaunched:
		if c.Instance == nil {
			return fmt.Errorf("intent result %s: launched without instance", c.Token)
		}
		inst := *c.Instance
		in.Instance = &inst
		in.LaunchedByTerm = c.Term
		in.Error = ""
		s.Bindings[inst.ID] = &NodeBinding{InstanceID: inst.ID, ProviderID: inst.ProviderID,
			NodeClaim: in.NodeClaim, NodePool: in.NodePool, Since: c.At}
	case IntentFailed:
		in.Error = c.Error
		in.ICE = c.ICE
	default:
		return fmt.Errorf("intent result %s: bad state %q", c.Token, c.State)
	}
	in.State = c.State
	in.UpdatedAt = c.At
	return nil
}

// applyIntentUpdate records registration, node name, deletion and attempts of an intent.
func (s *State) applyIntentUpdate(c *IntentUpdate) error {
	in, ok := s.Intents[c.Token]
	if !ok {
		return nil
	}
	if c.Registered {
		in.Registered = true
	}
	if c.Initialized {
		in.Initialized = true
	}
	if c.NodeName != "" {
		in.NodeName = c.NodeName
		if in.Instance != nil {
			b := s.Bindings[in.Instance.ID]
			if b == nil {
				b = &NodeBinding{InstanceID: in.Instance.ID, ProviderID: in.Instance.ProviderID,
					NodeClaim: in.NodeClaim, NodePool: in.NodePool, Since: c.At}
				s.Bindings[in.Instance.ID] = b
			}
			b.NodeName = c.NodeName
		}
	}
	if c.Deleting && in.State != IntentDeleting {
		in.State = IntentDeleting
	}
	if c.Attempt {
		in.Attempts++
	}
	if c.Error != "" {
		in.Error = c.Error
	}
	in.UpdatedAt = c.At
	return nil
}

// applyIntentDelete forgets an intent and, with it, everything about its instance.
func (s *State) applyIntentDelete(c *IntentDelete) error {
	if in, ok := s.Intents[c.Token]; ok {
		if in.Instance != nil {
			// IntentDelete is committed only once the instance is gone
			// (terminated or never launched), so what its agent reported
			// goes with it: State.Nodes is bounded by live instances.
			delete(s.Bindings, in.Instance.ID)
			delete(s.Attestations, in.Instance.ID)
			s.forgetInstance(in.NodeName, in.Instance.ProviderID, in.Instance.ID)
		}
		delete(s.Intents, c.Token)
	}
	return nil
}

// applyICEMark records insufficient-capacity offerings, keeping the later expiry.
func (s *State) applyICEMark(c *ICEMark) error {
	for _, e := range c.Entries {
		if old, ok := s.ICE[e.Key()]; ok && old.Until.After(e.Until) {
			continue
		}
		s.ICE[e.Key()] = e
	}
	return nil
}

// applyICEExpire drops insufficient-capacity entries that expired by the command's time.
func (s *State) applyICEExpire(c *ICEExpire) error {
	for k, e := range s.ICE {
		if !e.Until.After(c.Now) {
			delete(s.ICE, k)
		}
	}
	return nil
}

// applyDisruptionBegin records a disruption in the ledger.
func (s *State) applyDisruptionBegin(c *DisruptionBegin) error {
	if c.Disruption.NodeName == "" {
		return fmt.Errorf("disruption begin: empty node name")
	}
	d := c.Disruption
	s.Disruptions[d.NodeName] = &d
	return nil
}

// applyDisruptionEnd removes a node's disruption from the ledger.
func (s *State) applyDisruptionEnd(c *DisruptionEnd) error {
	delete(s.Disruptions, c.NodeName)
	return nil
}

// applyRolloutSet records a NodePool's rollout.
func (s *State) applyRolloutSet(c *RolloutSet) error {
	if c.Rollout.NodePool == "" {
		return fmt.Errorf("rollout set: empty nodepool")
	}
	r := c.Rollout
	s.Rollouts[r.NodePool] = &r
	return nil
}

// applyRolloutDelete forgets a NodePool's rollout.
func (s *State) applyRolloutDelete(c *RolloutDelete) error {
	delete(s.Rollouts, c.NodePool)
	return nil
}

// applyLeaderEpoch records the newest leader term's epoch (an older term never overwrites it).
func (s *State) applyLeaderEpoch(c *LeaderEpoch) error {
	if c.Term >= s.Epoch.Term {
		s.Epoch = *c
	}
	return nil
}

// applyAttestReset forgets an instance's key binding (an operator's reset).
func (s *State) applyAttestReset(c *AttestReset) error {
	delete(s.Attestations, c.InstanceID)
	return nil
}

func (s *State) applyAttestBind(c *AttestBind) error {
	a := c.Attestation
	if a.InstanceID == "" || len(a.PublicKey) != 32 {
		return fmt.Errorf("attest bind: instance id and a 32-byte Ed25519 key are required")
	}
	if s.Bindings[a.InstanceID] == nil {
		return fmt.Errorf("attest bind %s: %w", a.InstanceID, ErrNotOwned)
	}
	old := s.Attestations[a.InstanceID]
	if old != nil {
		if !bytes.Equal(old.PublicKey, a.PublicKey) {
			return fmt.Errorf("attest bind %s: %w", a.InstanceID, ErrKeyMismatch)
		}
		// Same key: a re-attestation (after a 401) keeps the replay fence.
		a.LastSeq = max(a.LastSeq, old.LastSeq)
	}
	s.Attestations[a.InstanceID] = &a
	return nil
}

// NodeOfInstance is the node name the cluster knows for an instance (from
// its binding or its launch), or "".
func (s *State) NodeOfInstance(instanceID string) string {
	if b := s.Bindings[instanceID]; b != nil && b.NodeName != "" {
		return b.NodeName
	}
	for _, in := range s.Intents {
		if in.Instance != nil && in.Instance.ID == instanceID && in.NodeName != "" {
			return in.NodeName
		}
	}
	return ""
}

// InstanceOfNode is the instance the cluster knows under a node name, or "".
func (s *State) InstanceOfNode(nodeName string) string {
	for id, b := range s.Bindings {
		if b.NodeName == nodeName {
			return id
		}
	}
	for _, in := range s.Intents {
		if in.Instance != nil && in.NodeName == nodeName {
			return in.Instance.ID
		}
	}
	return ""
}

// rememberReport adds id to the dedupe window and evicts from its old end
// what is past reportIDRetention or beyond reportIDWindow IDs. Amortised
// O(1): each ID is appended once and popped once.
func (s *State) rememberReport(id string, at time.Time) {
	s.ReportIDs[id] = at
	s.ReportOrder = append(s.ReportOrder, id)
	for len(s.ReportOrder) > 0 {
		oldest := s.ReportOrder[0]
		t, ok := s.ReportIDs[oldest]
		if ok && len(s.ReportOrder) <= reportIDWindow && at.Sub(t) <= reportIDRetention {
			break
		}
		delete(s.ReportIDs, oldest)
		s.ReportOrder[0] = ""
		s.ReportOrder = s.ReportOrder[1:]
	}
	// Reslicing leaves the popped prefix in the backing array; copy to a
	// fresh one when it is mostly dead so memory stays bounded.
	if c := cap(s.ReportOrder); c > 1024 && len(s.ReportOrder) < c/4 {
		s.ReportOrder = append(make([]string, 0, 2*len(s.ReportOrder)), s.ReportOrder...)
	}
}

// rebuildReportOrder orders the window from the map (snapshots written
// before ReportOrder existed, or an inconsistent one): by time, then ID, so
// every replica rebuilds the same order.
func (s *State) rebuildReportOrder() {
	s.ReportOrder = make([]string, 0, len(s.ReportIDs))
	for id := range s.ReportIDs {
		s.ReportOrder = append(s.ReportOrder, id)
	}
	sort.Slice(s.ReportOrder, func(i, j int) bool {
		a, b := s.ReportIDs[s.ReportOrder[i]], s.ReportIDs[s.ReportOrder[j]]
		if !a.Equal(b) {
			return a.Before(b)
		}
		return s.ReportOrder[i] < s.ReportOrder[j]
	})
}

func (s *State) applyReport(c *ReportReceived) error {
	r := c.Report
	if r.ID == "" || r.NodeName == "" {
		return fmt.Errorf("report: id and node name are required")
	}
	if c.AttestedInstance != "" {
		a := s.Attestations[c.AttestedInstance]
		if a == nil {
			return fmt.Errorf("report %s: instance %s is not attested", r.ID, c.AttestedInstance)
		}
		if c.Seq <= a.LastSeq {
			return fmt.Errorf("report %s: %w (%d <= %d)", r.ID, ErrReplayed, c.Seq, a.LastSeq)
		}
		a.LastSeq = c.Seq
	}
	if _, dup := s.ReportIDs[r.ID]; dup {
		return nil
	}
	s.rememberReport(r.ID, c.ReceivedAt)
	n := s.Nodes[r.NodeName]
	if n != nil && !n.SameInstance(r.ProviderID, r.InstanceID) {
		// EC2 reuses private-IP hostnames: a new instance under an old
		// node's name starts with a clean slate, never the old one's
		// interruption, drain or replace request.
		n = nil
	}
	if n == nil {
		n = &NodeStatus{NodeName: r.NodeName}
		s.Nodes[r.NodeName] = n
	}
	if r.InstanceID != "" {
		n.InstanceID = r.InstanceID
	}
	if r.ProviderID != "" {
		n.ProviderID = r.ProviderID
	}
	n.LastReportAt = c.ReceivedAt
	switch r.Kind {
	case report.KindHealth:
		n.Checks = r.Checks
		n.Health = worstHealth(r.Checks)
		n.HealthAt = r.ObservedAt
	case report.KindInterruption, report.KindRebalance, report.KindMaintenance:
		if r.Cancelled {
			if n.Interruption != nil && (r.EventID == "" || n.Interruption.EventID == r.EventID) {
				n.Interruption = nil
			}
		} else {
			// An interruption notice outranks a rebalance or maintenance one.
			if n.Interruption == nil || n.Interruption.Kind != report.KindInterruption || r.Kind == report.KindInterruption {
				rc := r
				n.Interruption = &rc
			}
		}
	case report.KindDrainProgress:
		rc := r
		n.Drain = &rc
	case report.KindReplaceMe:
		n.ReplaceRequested = true
	}
	return nil
}

func worstHealth(checks []report.CheckResult) string {
	rank := map[string]int{"ok": 0, "degraded": 1, "failed": 2}
	worst := "ok"
	for _, c := range checks {
		if rank[c.State] > rank[worst] {
			worst = c.State
		}
	}
	return worst
}

// forgetInstance drops the node status of one instance. The status is
// found by the node name, or by identity when the name is unknown; a status
// under that name that belongs to a newer instance (reused hostname) stays.
func (s *State) forgetInstance(nodeName, providerID, instanceID string) {
	for name, n := range s.Nodes {
		if nodeName != "" && name != nodeName {
			continue
		}
		if n.InstanceID == "" && n.ProviderID == "" {
			// A status with no identity can only be matched by name.
			if nodeName == "" {
				continue
			}
		} else if !n.SameInstance(providerID, instanceID) {
			continue
		}
		delete(s.Nodes, name)
	}
}
