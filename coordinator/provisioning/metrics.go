package provisioning

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	batches       prometheus.Counter
	launched      *prometheus.CounterVec
	launchErrors  prometheus.Counter
	spotFallbacks prometheus.Counter
	pending       prometheus.Gauge
	unschedulable prometheus.Gauge
	planDuration  prometheus.Histogram
	passDuration  prometheus.Histogram

	// Karpenter v1.14's scheduler metrics (pkg/controllers/provisioning/
	// scheduling/metrics.go), controller="provisioner" as Karpenter labels
	// its provisioning simulations.
	karpDuration      *prometheus.HistogramVec
	karpQueueDepth    *prometheus.GaugeVec
	karpUnschedulable *prometheus.GaugeVec
	lastSchedulingID  string
}

// karpenterDurationBuckets are Karpenter's metrics.DurationBuckets().
var karpenterDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
	1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60, 120, 150, 300, 450, 600}

// observeKarpenter records one pass in Karpenter's scheduler metrics; the
// queue depth is the pass's pending pods under the pass's scheduling ID (the
// previous pass's series is dropped, as Karpenter drops a finished one).
func (m *metrics) observeKarpenter(schedulingID string, took float64, pending, unschedulable int) {
	m.karpDuration.WithLabelValues("provisioner").Observe(took)
	if m.lastSchedulingID != "" && m.lastSchedulingID != schedulingID {
		m.karpQueueDepth.DeleteLabelValues("provisioner", m.lastSchedulingID)
	}
	m.lastSchedulingID = schedulingID
	m.karpQueueDepth.WithLabelValues("provisioner", schedulingID).Set(float64(pending))
	m.karpUnschedulable.WithLabelValues("provisioner").Set(float64(unschedulable))
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		batches: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dovetail", Subsystem: "provisioner", Name: "batches_total",
			Help: "Provisioning passes run."}),
		launched: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dovetail", Subsystem: "provisioner", Name: "nodeclaims_launched_total",
			Help: "NodeClaims handed to the launcher successfully, by NodePool."}, []string{"nodepool"}),
		launchErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dovetail", Subsystem: "provisioner", Name: "launch_errors_total",
			Help: "Launches the launcher refused or failed."}),
		spotFallbacks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dovetail", Subsystem: "provisioner", Name: "spot_fallbacks_total",
			Help: "NodeClaims launched on-demand although their pool allows spot, because no spot offering was available."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dovetail", Subsystem: "provisioner", Name: "pending_pods",
			Help: "Provisionable pods in the last pass."}),
		unschedulable: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dovetail", Subsystem: "provisioner", Name: "unschedulable_pods",
			Help: "Pods no NodePool could serve in the last pass."}),
		planDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "dovetail", Subsystem: "provisioner", Name: "plan_duration_seconds",
			Help: "Time the scheduling simulation took.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		passDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "dovetail", Subsystem: "provisioner", Name: "pass_duration_seconds",
			Help: "Time a whole pass took (snapshot, plan, launches).", Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}),
		karpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "karpenter_scheduler_scheduling_duration_seconds",
			Help: "Duration of scheduling simulations used for deprovisioning and provisioning in seconds.", Buckets: karpenterDurationBuckets}, []string{"controller"}),
		karpQueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_scheduler_queue_depth",
			Help: "The number of pods currently waiting to be scheduled."}, []string{"controller", "scheduling_id"}),
		karpUnschedulable: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_scheduler_unschedulable_pods_count",
			Help: "The number of unschedulable Pods."}, []string{"controller"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.batches, m.launched, m.launchErrors, m.spotFallbacks, m.pending, m.unschedulable, m.planDuration, m.passDuration,
			m.karpDuration, m.karpQueueDepth, m.karpUnschedulable} {
			// A second controller in the same process (tests) finds the
			// names taken; its metrics then simply stay unexported.
			_ = reg.Register(c)
		}
	}
	return m
}
