// Package fleetmetrics serves the coordinator's view of its node agents —
// dovetail_fleet_nodes by the health the agents report and
// dovetail_fleet_notices by the kind of notice they hold open — from the
// replicated state. Every replica serves them (they are facts of the
// replicated state, not of one process's work), so dashboards take max()
// over the replicas, as for dovetail_open_launch_intents. The agents' own
// metrics (dovetail_agent_*) are served by each agent on its node.
package fleetmetrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

// Source is the replica's state (*raftnode.Node satisfies it).
type Source interface {
	View(func(*fsm.State))
}

// Health values: the worst check state an agent reported, or Unreported
// when its agent has sent no health report yet.
const (
	HealthOK         = "ok"
	HealthDegraded   = "degraded"
	HealthFailed     = "failed"
	HealthUnreported = "unreported"
)

var (
	healthValues = []string{HealthOK, HealthDegraded, HealthFailed, HealthUnreported}
	noticeKinds  = []report.Kind{report.KindInterruption, report.KindRebalance, report.KindMaintenance}

	descNodes = prometheus.NewDesc("dovetail_fleet_nodes",
		"Nodes whose agent has reported to the coordinators, by the worst health check state it reported (ok, degraded, failed; unreported: no health report yet).",
		[]string{"health"}, nil)
	descNotices = prometheus.NewDesc("dovetail_fleet_notices",
		"Open notices the agents reported (an interruption, rebalance recommendation or scheduled maintenance not yet cancelled or acted on), by kind.",
		[]string{"kind"}, nil)
)

// Collector is a prometheus.Collector over a Source.
type Collector struct{ src Source }

// New returns the collector.
func New(src Source) *Collector { return &Collector{src: src} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descNodes
	ch <- descNotices
}

// Counts are the gauges' values for one state: nodes by health, open
// notices by kind; every label value is present, 0 when none.
type Counts struct {
	Nodes   map[string]int
	Notices map[report.Kind]int
}

// Count computes the gauges from a state.
func Count(s *fsm.State) Counts {
	out := Counts{Nodes: map[string]int{}, Notices: map[report.Kind]int{}}
	for _, h := range healthValues {
		out.Nodes[h] = 0
	}
	for _, k := range noticeKinds {
		out.Notices[k] = 0
	}
	for _, n := range s.Nodes {
		if n == nil {
			continue
		}
		switch n.Health {
		case HealthOK, HealthDegraded, HealthFailed:
			out.Nodes[n.Health]++
		default:
			out.Nodes[HealthUnreported]++
		}
		if r := n.Interruption; r != nil {
			if _, known := out.Notices[r.Kind]; known {
				out.Notices[r.Kind]++
			}
		}
	}
	return out
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var cnt Counts
	c.src.View(func(s *fsm.State) { cnt = Count(s) })
	for _, h := range healthValues {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(cnt.Nodes[h]), h)
	}
	kinds := make([]string, 0, len(cnt.Notices))
	for k := range cnt.Notices {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		ch <- prometheus.MustNewConstMetric(descNotices, prometheus.GaugeValue, float64(cnt.Notices[report.Kind(k)]), k)
	}
}

// MetricTypes says the families' types (metricsdoc.Typed): const metrics'
// descriptors carry none.
func (c *Collector) MetricTypes() map[string]string {
	return map[string]string{"dovetail_fleet_nodes": "gauge", "dovetail_fleet_notices": "gauge"}
}
