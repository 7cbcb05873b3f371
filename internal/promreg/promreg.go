// Package promreg registers Prometheus collectors so that a second
// registration of the same metrics in one process (a second wiring or
// provider on one registry, a restarted leader loop, tests) shares the
// collector already registered instead of failing: both then count into the
// same series.
package promreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it, or returns the collector of
// the same type reg already holds for the same descriptors. Any other
// registration error (a name taken with other labels or another type) is
// returned, wrapped.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}

// WhileLeading is a collector of cs that always describes them but collects
// them only while leading() holds (nil: always): the leader-only metrics a
// replica keeps counting across terms but serves only while it leads, so a
// dashboard's sum over replicas counts each event once.
func WhileLeading(leading func() bool, cs ...prometheus.Collector) prometheus.Collector {
	if leading == nil {
		leading = func() bool { return true }
	}
	return whileLeading{leading: leading, cs: cs}
}

type whileLeading struct {
	leading func() bool
	cs      []prometheus.Collector
}

func (w whileLeading) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range w.cs {
		c.Describe(ch)
	}
}

func (w whileLeading) Collect(ch chan<- prometheus.Metric) {
	if !w.leading() {
		return
	}
	for _, c := range w.cs {
		c.Collect(ch)
	}
}
