// Package karpentermetrics serves Karpenter v1.14's karpenter_* metrics from
// Dovetail's replicated state, so an operator's Karpenter dashboards and
// alerts keep working. Everything here is computed from one snapshot of the
// FSM state: gauges at scrape time, counters by diffing the state against
// the previously observed one — at every state change on every replica
// (Watch), and at scrape time (see Collector). Only the leader serves them;
// followers would double-count.
package karpentermetrics

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

// Source is what the collector reads: the replica's state and whether it
// leads. *raftnode.Node satisfies it.
type Source interface {
	View(func(*fsm.State))
	IsLeader() bool
}

// Label names as Karpenter v1.14 spells them.
const (
	lNodePool     = "nodepool"
	lReason       = "reason"
	lCapacityType = "capacity_type"
	lInstanceType = "instance_type"
	lZone         = "zone"
	lMinRelaxed   = "min_values_relaxed"
)

var (
	descNodeCount = prometheus.NewDesc("karpenter_cluster_state_node_count",
		"Current count of nodes in cluster state", nil, nil)
	descSynced = prometheus.NewDesc("karpenter_cluster_state_synced",
		"Returns 1 if cluster state is synced and 0 otherwise. Synced checks that nodeclaims and nodes that are stored in the APIServer have the same representation as Karpenter's cluster state", nil, nil)
	descUnsynced = prometheus.NewDesc("karpenter_cluster_state_unsynced_time_seconds",
		"The time for which cluster state is not synced", nil, nil)
	descTimeouts = prometheus.NewDesc("karpenter_voluntary_disruption_consolidation_timeouts_total",
		"Number of times the Consolidation algorithm has reached a timeout. Labeled by consolidation type.", []string{"consolidation_type"}, nil)
	descCreated = prometheus.NewDesc("karpenter_nodeclaims_created_total",
		"Number of nodeclaims created in total by Karpenter. Labeled by reason the nodeclaim was created, the owning nodepool, and if min values was relaxed for this nodeclaim.", []string{lReason, lNodePool, lMinRelaxed}, nil)
	descTerminated = prometheus.NewDesc("karpenter_nodeclaims_terminated_total",
		"Number of nodeclaims terminated in total by Karpenter. Labeled by the owning nodepool, capacity type, and zone.", []string{lNodePool, lCapacityType, lZone}, nil)
	descDisrupted = prometheus.NewDesc("karpenter_nodeclaims_disrupted_total",
		"Number of nodeclaims disrupted in total by Karpenter. Labeled by reason the nodeclaim was disrupted and the owning nodepool.", []string{lReason, lNodePool, lCapacityType}, nil)
	descInterruption = prometheus.NewDesc("karpenter_interruption_received_messages_total",
		"Count of messages received from the SQS queue. Broken down by message type and whether the message was actionable.", []string{"message_type"}, nil)
	descByPool = prometheus.NewDesc("karpenter_voluntary_disruption_decisions_by_nodepool_total",
		"Number of disruption decisions performed by nodepool. Labeled by nodepool name, disruption decision, reason, and consolidation type.",
		[]string{lNodePool, "decision", lReason, "consolidation_type"}, nil)
	descDecisions = prometheus.NewDesc("karpenter_voluntary_disruption_decisions_total",
		"Number of disruption decisions performed. Labeled by disruption decision, reason, and consolidation type.", []string{"decision", lReason, "consolidation_type"}, nil)
)

// Collector is a prometheus.Collector over a Source. Counters are derived
// from transitions between consecutive scrapes: an intent seen for the first
// time counts as created, one gone as terminated, a new disruption-ledger
// entry as disrupted. The first scrape only takes a baseline so a new leader
// does not recount history. Entries that appear and vanish between two
// scrapes are missed; at a 15-30 s scrape interval that is a node that lived
// less than the interval.
type Collector struct {
	src Source
	now func() time.Time

	mu       sync.Mutex
	watching bool // Watch runs: observations do not depend on scrapes
	baseline bool
	intents  map[string]intentSeen  // by token
	disrupt  map[string]disruptSeen // by node name
	created  map[[3]string]float64  // reason, nodepool, min_values_relaxed
	term     map[[3]string]float64  // nodepool, capacity_type, zone
	disr     map[[3]string]float64  // reason, nodepool, capacity_type
	decided  map[[3]string]float64  // decision, reason, consolidation_type
	byPool   map[[4]string]float64  // nodepool, decision, reason, consolidation_type
	notices  map[string]string      // node name -> ID of its active notice
	received map[string]float64     // message_type
	// unsyncedSince is when this leader first saw the state unsynced (no
	// leader epoch committed yet); zero while synced.
	unsyncedSince time.Time
}

// Watch observes the state at every change until ctx ends: the counters
// then advance whether or not anyone scrapes, and on every replica, so a
// replica that becomes leader serves counts of what happened while it
// followed (the history before its process started stays uncounted, as a
// restarted Karpenter's). changed returns a channel closed at the next
// change (fsm.FSM.Changed).
func (c *Collector) Watch(ctx context.Context, changed func() <-chan struct{}) {
	c.mu.Lock()
	c.watching = true
	c.mu.Unlock()
	for {
		ch := changed()
		c.mu.Lock()
		c.src.View(c.observe)
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

type intentSeen struct{ nodePool, capacityType, zone string }
type disruptSeen struct{ reason, nodePool string }

// New returns a collector; now is the injected clock.
func New(src Source, now func() time.Time) *Collector {
	return &Collector{src: src, now: now,
		intents: map[string]intentSeen{}, disrupt: map[string]disruptSeen{},
		created: map[[3]string]float64{}, term: map[[3]string]float64{}, byPool: map[[4]string]float64{},
		disr: map[[3]string]float64{}, decided: map[[3]string]float64{},
		notices: map[string]string{}, received: map[string]float64{}}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodeCount, descSynced, descUnsynced, descTimeouts,
		descCreated, descByPool, descTerminated, descDisrupted, descDecisions, descInterruption} {
		ch <- d
	}
}

// Reason is Karpenter's metric spelling of a disruption reason: lowercase
// ("drifted", "underutilized", "empty", "expired", "interrupted" ...).
func Reason(r string) string { return strings.ToLower(r) }

// SnakeCase is Karpenter's pretty.ToSnakeCase, the spelling of a reason in
// its metric labels (karpenter_nodeclaims_disrupted_total, the disruption
// queue failures): "Drifted" -> "drifted", "NodeRepair" -> "node_repair".
func SnakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// consolidationType is Karpenter's consolidation_type label for a reason.
func consolidationType(reason string) string {
	switch reason {
	case "empty":
		return "empty"
	case "underutilized":
		return "single"
	}
	return ""
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if !c.src.IsLeader() {
		// Without Watch, the next term starts from a fresh baseline: what
		// happened while another replica led is that replica's to count.
		c.mu.Lock()
		if !c.watching {
			c.baseline = false
		}
		c.mu.Unlock()
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.src.View(func(s *fsm.State) {
		c.observe(s)
		nodes := 0
		for _, b := range s.Bindings {
			if b.NodeName != "" {
				nodes++
			}
		}
		ch <- prometheus.MustNewConstMetric(descNodeCount, prometheus.GaugeValue, float64(nodes))
		synced := 0.0
		if !s.InGracePeriod(now, 0) && s.Epoch.Term > 0 {
			synced = 1
		}
		ch <- prometheus.MustNewConstMetric(descSynced, prometheus.GaugeValue, synced)
		// Karpenter's state controller: the time since cluster state
		// became unsynced, 0 while synced.
		unsynced := 0.0
		switch {
		case synced == 1:
			c.unsyncedSince = time.Time{}
		case c.unsyncedSince.IsZero():
			c.unsyncedSince = now
		default:
			unsynced = now.Sub(c.unsyncedSince).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descUnsynced, prometheus.GaugeValue, unsynced)
	})
	// Karpenter abandons a multi-node (1 min) or single-node (3 min)
	// consolidation search at its timeout. Dovetail's planner has no
	// timeout: its search is bounded in work instead (a binary search of
	// O(log n) fit simulations, one pass over the single-node candidates;
	// 257 ms a pass at 5,000 nodes, coordinator/disruption README), so it
	// never gives up part-way and the count is 0, served so that Karpenter's
	// alerts on it evaluate.
	for _, ct := range []string{"multi", "single"} {
		ch <- prometheus.MustNewConstMetric(descTimeouts, prometheus.CounterValue, 0, ct)
	}
	for k, v := range c.created {
		ch <- prometheus.MustNewConstMetric(descCreated, prometheus.CounterValue, v, k[0], k[1], k[2])
	}
	for k, v := range c.term {
		ch <- prometheus.MustNewConstMetric(descTerminated, prometheus.CounterValue, v, k[0], k[1], k[2])
	}
	for k, v := range c.disr {
		ch <- prometheus.MustNewConstMetric(descDisrupted, prometheus.CounterValue, v, k[0], k[1], k[2])
	}
	for k, v := range c.received {
		ch <- prometheus.MustNewConstMetric(descInterruption, prometheus.CounterValue, v, k)
	}
	for k, v := range c.decided {
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, v, k[0], k[1], k[2])
	}
	for k, v := range c.byPool {
		ch <- prometheus.MustNewConstMetric(descByPool, prometheus.CounterValue, v, k[0], k[1], k[2], k[3])
	}
}

// observe diffs s against the previous scrape and advances the counters.
func (c *Collector) observe(s *fsm.State) {
	capOf := map[string]string{} // node name -> capacity type
	seen := make(map[string]intentSeen, len(s.Intents))
	for tok, in := range s.Intents {
		ct, zone := "", ""
		if in.Instance != nil {
			ct, zone = in.Instance.CapacityType, in.Instance.Zone
			if in.NodeName != "" {
				capOf[in.NodeName] = ct
			}
		}
		seen[tok] = intentSeen{nodePool: in.NodePool, capacityType: ct, zone: zone}
		// On the first scrape of a term, what this term launched or began
		// counts (it happened under this leader); older entries are history.
		if _, ok := c.intents[tok]; !ok && (c.baseline || (in.Term == s.Epoch.Term && s.Epoch.Term != 0)) {
			// Dovetail launches only for pending pods or as a disruption
			// replacement; the ledger says which.
			reason := "provisioned" // Karpenter's metrics.ProvisionedReason
			for _, d := range s.Disruptions {
				for _, r := range d.Replacements {
					if r == in.NodeClaim {
						reason = Reason(d.Reason)
					}
				}
			}
			c.created[[3]string{reason, in.NodePool, "false"}]++
		}
	}
	if c.baseline {
		for tok, old := range c.intents {
			if _, ok := seen[tok]; !ok {
				c.term[[3]string{old.nodePool, old.capacityType, old.zone}]++
			}
		}
	}
	dseen := make(map[string]disruptSeen, len(s.Disruptions))
	for name, d := range s.Disruptions {
		r := Reason(d.Reason)
		dseen[name] = disruptSeen{reason: r, nodePool: d.NodePool}
		if _, ok := c.disrupt[name]; !ok && (c.baseline || (!s.Epoch.At.IsZero() && !d.Since.Before(s.Epoch.At))) {
			c.disr[[3]string{SnakeCase(d.Reason), d.NodePool, capOf[name]}]++
			decision := "delete"
			if len(d.Replacements) > 0 {
				decision = "replace"
			}
			c.decided[[3]string{decision, r, consolidationType(r)}]++
			c.byPool[[4]string{d.NodePool, decision, r, consolidationType(r)}]++
		}
	}
	notices := map[string]string{}
	for name, ns := range s.Nodes {
		r := ns.Interruption
		if r == nil {
			continue
		}
		notices[name] = r.ID
		if c.notices[name] != r.ID && c.baseline {
			c.received[messageType(r.Kind)]++
		}
	}
	c.notices = notices
	c.intents, c.disrupt, c.baseline = seen, dseen, true
}

// messageType is the AWS provider's message_type for an agent notice: the
// agent reads IMDS where Karpenter reads EventBridge, the facts are the same.
func messageType(k report.Kind) string {
	switch k {
	case report.KindInterruption:
		return "spot_interrupted"
	case report.KindRebalance:
		return "rebalance_recommendation"
	case report.KindMaintenance:
		return "scheduled_change"
	}
	return "unknown"
}

// MetricTypes says the type of each family (metricsdoc.Typed): the
// collector serves const metrics, whose descriptors carry no type.
func (c *Collector) MetricTypes() map[string]string {
	return map[string]string{
		"karpenter_cluster_state_node_count": "gauge", "karpenter_cluster_state_synced": "gauge",
		"karpenter_cluster_state_unsynced_time_seconds": "gauge", "karpenter_voluntary_disruption_consolidation_timeouts_total": "counter",
		"karpenter_nodeclaims_created_total": "counter", "karpenter_nodeclaims_terminated_total": "counter",
		"karpenter_nodeclaims_disrupted_total": "counter", "karpenter_interruption_received_messages_total": "counter",
		"karpenter_voluntary_disruption_decisions_total": "counter", "karpenter_voluntary_disruption_decisions_by_nodepool_total": "counter",
	}
}
