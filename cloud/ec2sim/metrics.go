package ec2sim

import (
	"github.com/prometheus/client_golang/prometheus"
)

// simMetrics live in the simulator's own registry (Sim.Registry), so many
// simulators can run in one test binary.
type simMetrics struct {
	reg         *prometheus.Registry
	calls       *prometheus.CounterVec
	errors      *prometheus.CounterVec
	fleetErrors *prometheus.CounterVec
	launches    *prometheus.CounterVec
	replays     prometheus.Counter
	instances   *prometheus.GaugeVec
}

func newSimMetrics() *simMetrics {
	m := &simMetrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ec2sim_api_calls_total", Help: "API calls received, by action (SSM actions prefixed ssm:).",
		}, []string{"action"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ec2sim_api_errors_total", Help: "API calls answered with an error, by action and error code.",
		}, []string{"action", "code"}),
		fleetErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ec2sim_fleet_override_errors_total", Help: "CreateFleet per-override errors, by code.",
		}, []string{"code"}),
		launches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ec2sim_instances_launched_total", Help: "Instances launched, by capacity type.",
		}, []string{"capacity_type"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ec2sim_fleet_token_replays_total", Help: "CreateFleet calls answered from an earlier ClientToken.",
		}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ec2sim_instances", Help: "Instances by state.",
		}, []string{"state"}),
	}
	m.reg.MustRegister(m.calls, m.errors, m.fleetErrors, m.launches, m.replays, m.instances)
	return m
}

func (s *Sim) updateStateGaugeLocked() {
	counts := map[string]float64{statePending: 0, stateRunning: 0, stateShuttingDown: 0, stateTerminated: 0}
	for _, in := range s.instances {
		counts[in.state]++
	}
	for st, n := range counts {
		s.metrics.instances.WithLabelValues(st).Set(n)
	}
}

// Registry exposes the simulator's metrics (also served on /metrics).
func (s *Sim) Registry() *prometheus.Registry { return s.metrics.reg }
