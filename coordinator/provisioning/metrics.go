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
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.batches, m.launched, m.launchErrors, m.spotFallbacks, m.pending, m.unschedulable, m.planDuration, m.passDuration} {
			// A second controller in the same process (tests) finds the
			// names taken; its metrics then simply stay unexported.
			_ = reg.Register(c)
		}
	}
	return m
}
