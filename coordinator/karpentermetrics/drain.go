package karpentermetrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/internal/promreg"
)

// Drain serves Karpenter v1.14's termination metrics from the coordinator's
// drains (a drain.Observer): karpenter_pods_eviction_requests_total{code},
// one per eviction request by its answer's status code, and
// karpenter_pods_drained_total{reason}, one per pod whose eviction was
// accepted. It lives as long as the process (the drainer does) and, like
// cloudmetrics, is exposed only while the replica leads.
type Drain struct {
	prometheus.Collector // both families, collected only while leading
	requests             *prometheus.CounterVec
	drained              *prometheus.CounterVec
}

// NewDrain returns the metrics; leading reports whether this replica leads
// (nil: always). Register the result with a registry.
func NewDrain(leading func() bool) *Drain {
	d := &Drain{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_pods_eviction_requests_total",
			Help: "The total number of pod eviction requests made by Karpenter, labeled by response code"}, []string{"code"}),
		drained: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_pods_drained_total",
			Help: "The total number of pods drained during node termination by Karpenter, labeled by reason"}, []string{lReason}),
	}
	d.Collector = promreg.WhileLeading(leading, d.requests, d.drained)
	return d
}

// EvictionRequest implements drain.Observer.
func (d *Drain) EvictionRequest(code int) {
	if d != nil {
		d.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}

// PodEvicted implements drain.Observer.
func (d *Drain) PodEvicted(reason string) {
	if d != nil {
		d.drained.WithLabelValues(DrainReason(reason)).Inc()
	}
}

// DrainReason is Karpenter's reason label for a pod drained because of a
// Dovetail disruption reason: the NodeClaim's DisruptionReason, which
// Karpenter sets for its voluntary methods (Empty, Underutilized, Drifted),
// and "Forceful Termination" for a NodeClaim deleted without one
// (interruption, expiry, repair, a static pool's scale-down, a rebalance).
func DrainReason(reason string) string {
	switch reason {
	case "Empty", "Underutilized", "Drifted":
		return reason
	}
	return "Forceful Termination"
}

// MetricTypes says the families' types (metricsdoc.Typed).
func (d *Drain) MetricTypes() map[string]string {
	return map[string]string{"karpenter_pods_eviction_requests_total": "counter", "karpenter_pods_drained_total": "counter"}
}
