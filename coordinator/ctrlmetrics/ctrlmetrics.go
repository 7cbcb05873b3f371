// Package ctrlmetrics serves controller-runtime's controller and workqueue
// metrics — controller_runtime_reconcile_total, _errors_total, _time_seconds,
// controller_runtime_active_workers, controller_runtime_max_concurrent_reconciles
// and workqueue_depth — for Dovetail's leader loops. Those loops are not
// controller-runtime controllers, but Karpenter's published controller and
// performance dashboards read these names, so an operator's dashboards keep
// working. Names, types, label names and buckets are controller-runtime
// v0.25's (pkg/internal/controller/metrics, pkg/internal/metrics).
//
// One reconcile is one pass of a loop (a provisioning pass, a disruption
// planning pass); its result is "success" or "error" (the loops requeue on
// their own interval, so "requeue" and "requeue_after" stay at 0, as
// controller-runtime initialises them). The workqueue depth is what waits
// for the loop's next pass, read at scrape time from the loop's own state.
package ctrlmetrics

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/internal/promreg"
)

// controller-runtime's result label values.
const (
	ResultSuccess      = "success"
	ResultError        = "error"
	ResultRequeue      = "requeue"
	ResultRequeueAfter = "requeue_after"
)

// reconcileBuckets are controller-runtime's ReconcileTime buckets.
var reconcileBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
	1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60}

var descDepth = prometheus.NewDesc("workqueue_depth", "Current depth of workqueue by workqueue and priority",
	[]string{"name", "controller", "priority"}, nil)

// Metrics holds one replica's controller metrics. A nil *Metrics is valid
// and records nothing.
type Metrics struct {
	total   *prometheus.CounterVec
	errs    *prometheus.CounterVec
	time    *prometheus.HistogramVec
	workers *prometheus.GaugeVec
	active  *prometheus.GaugeVec
	depth   *depthCollector
}

// New registers the metrics with reg (nil: kept but not exported). A
// registry that already holds them (a second wiring in one process) lends
// its collectors, so both count into the same series.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_total",
			Help: "Total number of reconciliations per controller"}, []string{"controller", "result"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_errors_total",
			Help: "Total number of reconciliation errors per controller"}, []string{"controller"}),
		time: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "controller_runtime_reconcile_time_seconds",
			Help: "Length of time per reconciliation per controller", Buckets: reconcileBuckets}, []string{"controller"}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "controller_runtime_max_concurrent_reconciles",
			Help: "Maximum number of concurrent reconciles per controller"}, []string{"controller"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "controller_runtime_active_workers",
			Help: "Number of currently used workers per controller"}, []string{"controller"}),
		depth: &depthCollector{fns: map[string]func() int{}},
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.total, err = promreg.Register(reg, m.total); err != nil {
		return nil, err
	}
	if m.errs, err = promreg.Register(reg, m.errs); err != nil {
		return nil, err
	}
	if m.time, err = promreg.Register(reg, m.time); err != nil {
		return nil, err
	}
	if m.workers, err = promreg.Register(reg, m.workers); err != nil {
		return nil, err
	}
	if m.active, err = promreg.Register(reg, m.active); err != nil {
		return nil, err
	}
	if m.depth, err = promreg.Register(reg, m.depth); err != nil {
		return nil, err
	}
	return m, nil
}

// Controller returns the handle of one loop, named as Karpenter names the
// controller doing the same work. Like controller-runtime at controller
// start, every result's counter and the error counter start at 0 and the
// worker count is set (Dovetail's loops run one pass at a time).
func (m *Metrics) Controller(name string) *Controller {
	if m == nil {
		return nil
	}
	for _, r := range []string{ResultError, ResultRequeueAfter, ResultRequeue, ResultSuccess} {
		m.total.WithLabelValues(name, r).Add(0)
	}
	m.errs.WithLabelValues(name).Add(0)
	m.workers.WithLabelValues(name).Set(1)
	m.active.WithLabelValues(name).Set(0)
	return &Controller{m: m, name: name}
}

// Controller records one loop's passes. A nil *Controller records nothing.
type Controller struct {
	m    *Metrics
	name string
}

// Begin marks a pass as running; the returned function ends it with the
// pass's error (nil: success) and observes its duration.
func (c *Controller) Begin() func(err error) {
	if c == nil {
		return func(error) {}
	}
	start := time.Now()
	c.m.active.WithLabelValues(c.name).Inc()
	return func(err error) {
		c.m.active.WithLabelValues(c.name).Dec()
		c.m.time.WithLabelValues(c.name).Observe(time.Since(start).Seconds())
		if err != nil {
			c.m.total.WithLabelValues(c.name, ResultError).Inc()
			c.m.errs.WithLabelValues(c.name).Inc()
			return
		}
		c.m.total.WithLabelValues(c.name, ResultSuccess).Inc()
	}
}

// SetDepth makes workqueue_depth{name=controller} read fn at every scrape;
// nil removes the series (the loop stopped: a follower has no queue, as a
// controller-runtime controller that never started has none).
func (c *Controller) SetDepth(fn func() int) {
	if c == nil {
		return
	}
	d := c.m.depth
	d.mu.Lock()
	defer d.mu.Unlock()
	if fn == nil {
		delete(d.fns, c.name)
		return
	}
	d.fns[c.name] = fn
}

// depthCollector serves workqueue_depth from the loops' depth functions.
type depthCollector struct {
	mu  sync.Mutex
	fns map[string]func() int
}

// MetricTypes says the type of the family (metricsdoc.Typed): the depth is
// a const metric, whose descriptor carries no type.
func (d *depthCollector) MetricTypes() map[string]string {
	return map[string]string{"workqueue_depth": "gauge"}
}

func (d *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descDepth }

func (d *depthCollector) Collect(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	names := make([]string, 0, len(d.fns))
	fns := make(map[string]func() int, len(d.fns))
	for n, fn := range d.fns {
		names = append(names, n)
		fns[n] = fn
	}
	d.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		// controller-runtime names a controller's queue after it and sets
		// no priority on a plain queue.
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(fns[n]()), n, n, "")
	}
}
