package launcher

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	intents    prometheus.Counter
	results    *prometheus.CounterVec
	cloudCalls *prometheus.CounterVec
	leaks      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		intents: prometheus.NewCounter(prometheus.CounterOpts{Name: "dovetail_launcher_intents_total",
			Help: "Launch intents committed."}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dovetail_launcher_results_total",
			Help: "Launch outcomes by result (launched, ice, error)."}, []string{"result"}),
		cloudCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dovetail_launcher_cloud_calls_total",
			Help: "Cloud side effects attempted by this replica, by operation."}, []string{"op"}),
		leaks: prometheus.NewCounter(prometheus.CounterOpts{Name: "dovetail_launcher_leaked_instances_terminated_total",
			Help: "Instances owned by no intent that were terminated."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.intents, m.results, m.cloudCalls, m.leaks} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("register launcher metrics: %w", err)
			}
		}
	}
	return m, nil
}
