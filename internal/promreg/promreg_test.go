package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterSharesTheExistingCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "x_total", Help: "x"}
	first, err := Register(reg, prometheus.NewCounterVec(opts, []string{"a"}))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, prometheus.NewCounterVec(opts, []string{"a"}))
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatal("the second registration did not return the registered collector")
	}
	second.WithLabelValues("v").Inc()
	if got := testCount(t, reg); got != 1 {
		t.Fatalf("x_total = %v, want 1 (one series shared by both)", got)
	}
}

func TestRegisterRefusesAConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"a"})); err != nil {
		t.Fatal(err)
	}
	// Same name, other labels: not the same metric, so not shared.
	if _, err := Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"b"})); err == nil {
		t.Fatal("a conflicting registration was accepted")
	}
}

func testCount(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// WhileLeading describes its collectors always and collects them only while
// leading: a follower serves none of the leader's series.
func TestWhileLeadingCollectsOnlyWhileLeading(t *testing.T) {
	leading := false
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "leader_only_total", Help: "h"})
	c.Inc()
	reg := prometheus.NewRegistry()
	reg.MustRegister(WhileLeading(func() bool { return leading }, c))
	count := func() int {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		return len(mfs)
	}
	if n := count(); n != 0 {
		t.Fatalf("a follower served %d families", n)
	}
	leading = true
	if n := count(); n != 1 {
		t.Fatalf("the leader served %d families, want 1", n)
	}
}
