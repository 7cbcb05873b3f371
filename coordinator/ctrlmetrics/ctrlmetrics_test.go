package ctrlmetrics

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPassesAndDepth(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Controller("provisioner")
	c.Begin()(nil)
	c.Begin()(nil)
	c.Begin()(errors.New("boom"))
	depth := 7
	c.SetDepth(func() int { return depth })

	want := `
# HELP controller_runtime_reconcile_total Total number of reconciliations per controller
# TYPE controller_runtime_reconcile_total counter
controller_runtime_reconcile_total{controller="provisioner",result="error"} 1
controller_runtime_reconcile_total{controller="provisioner",result="requeue"} 0
controller_runtime_reconcile_total{controller="provisioner",result="requeue_after"} 0
controller_runtime_reconcile_total{controller="provisioner",result="success"} 2
# HELP controller_runtime_reconcile_errors_total Total number of reconciliation errors per controller
# TYPE controller_runtime_reconcile_errors_total counter
controller_runtime_reconcile_errors_total{controller="provisioner"} 1
# HELP controller_runtime_active_workers Number of currently used workers per controller
# TYPE controller_runtime_active_workers gauge
controller_runtime_active_workers{controller="provisioner"} 0
# HELP controller_runtime_max_concurrent_reconciles Maximum number of concurrent reconciles per controller
# TYPE controller_runtime_max_concurrent_reconciles gauge
controller_runtime_max_concurrent_reconciles{controller="provisioner"} 1
# HELP workqueue_depth Current depth of workqueue by workqueue and priority
# TYPE workqueue_depth gauge
workqueue_depth{controller="provisioner",name="provisioner",priority=""} 7
`
	names := []string{"controller_runtime_reconcile_total", "controller_runtime_reconcile_errors_total",
		"controller_runtime_active_workers", "controller_runtime_max_concurrent_reconciles", "workqueue_depth"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.time, "controller_runtime_reconcile_time_seconds"); n != 1 {
		t.Errorf("reconcile time series: %d, want 1", n)
	}
	// The depth is read at scrape time; a stopped loop has no queue.
	depth = 3
	if got := testutil.ToFloat64(m.depth); got != 3 {
		t.Errorf("depth %v, want 3", got)
	}
	c.SetDepth(nil)
	if n := testutil.CollectAndCount(m.depth); n != 0 {
		t.Errorf("%d depth series after the loop stopped, want 0", n)
	}

	// A second wiring on the same registry shares the series.
	m2, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	m2.Controller("provisioner").Begin()(nil)
	if got := testutil.ToFloat64(m.total.WithLabelValues("provisioner", ResultSuccess)); got != 3 {
		t.Errorf("shared success count %v, want 3", got)
	}
}

func TestNilIsSafe(t *testing.T) {
	var m *Metrics
	c := m.Controller("x")
	c.Begin()(errors.New("ignored"))
	c.SetDepth(func() int { return 1 })
}
