package wiring

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

type registerer = prometheus.Registerer

// termRegisterer registers a term's controller metrics and unregisters them
// when the term ends, so the next term's controller can register its own
// under the same names (counters restart from zero, which Prometheus reads
// as a counter reset).
type termRegisterer struct {
	reg prometheus.Registerer // nil: metrics are not exported

	mu sync.Mutex
	cs []prometheus.Collector
}

func newTermRegisterer(reg prometheus.Registerer) *termRegisterer {
	return &termRegisterer{reg: reg}
}

// Register implements prometheus.Registerer.
func (r *termRegisterer) Register(c prometheus.Collector) error {
	if r.reg == nil {
		return nil
	}
	if err := r.reg.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	r.cs = append(r.cs, c)
	r.mu.Unlock()
	return nil
}

// MustRegister implements prometheus.Registerer. It never panics: a metric
// that cannot be registered is simply not exported (the controllers here use
// Register and handle its error themselves).
func (r *termRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

// Unregister implements prometheus.Registerer.
func (r *termRegisterer) Unregister(c prometheus.Collector) bool {
	if r.reg == nil {
		return false
	}
	return r.reg.Unregister(c)
}

// release unregisters everything registered through r.
func (r *termRegisterer) release() {
	r.mu.Lock()
	cs := r.cs
	r.cs = nil
	r.mu.Unlock()
	for _, c := range cs {
		r.reg.Unregister(c)
	}
}
