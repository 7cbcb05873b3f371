package metricsdoc

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type custom struct{ d *prometheus.Desc }

func (c custom) Describe(ch chan<- *prometheus.Desc) { ch <- c.d }
func (c custom) Collect(chan<- prometheus.Metric)    {}
func (c custom) MetricTypes() map[string]string {
	return map[string]string{"x_const": "gauge"}
}

func TestRecorderDocumentsWhatIsRegistered(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	r := NewRecorder(reg)
	r.MustRegister(
		prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "Things | done."}, []string{"b", "a"}),
		prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Help: "Time."}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x_up", Help: "Up.", ConstLabels: prometheus.Labels{"k": "v"}}, func() float64 { return 1 }),
		prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: "x_summary", Help: "S."}, []string{"p"}),
		custom{prometheus.NewDesc("x_const", "Const \"quoted\".", []string{"z"}, nil)},
		collectors.NewGoCollector(),
	)
	// A name taken already is still documented, and the error still returned.
	if err := r.Register(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "Things | done."}, []string{"b", "a"})); err == nil {
		t.Fatal("duplicate registration accepted")
	}
	got := map[string]Entry{}
	for _, e := range r.Entries() {
		got[e.Name] = e
	}
	want := map[string]Entry{
		"x_total":   {Name: "x_total", Type: "counter", Labels: []string{"a", "b"}, Help: "Things | done."},
		"x_seconds": {Name: "x_seconds", Type: "histogram", Help: "Time."},
		"x_up":      {Name: "x_up", Type: "gauge", Labels: []string{"k"}, Help: "Up."},
		"x_summary": {Name: "x_summary", Type: "summary", Labels: []string{"p"}, Help: "S."},
		"x_const":   {Name: "x_const", Type: "gauge", Labels: []string{"z"}, Help: `Const "quoted".`},
	}
	for name, w := range want {
		g := got[name]
		if g.Name != w.Name || g.Type != w.Type || g.Help != w.Help || strings.Join(g.Labels, ",") != strings.Join(w.Labels, ",") {
			t.Errorf("%s: got %+v, want %+v", name, g, w)
		}
	}
	if e := got["go_goroutines"]; e.Type != "gauge" {
		t.Errorf("go collector's go_goroutines: %+v", e)
	}
	table := Table(Merge(r.Entries()))
	if !strings.Contains(table, "| `x_total` | counter | `a`, `b` | Things \\| done. |\n") {
		t.Errorf("table row for x_total missing or malformed:\n%s", table)
	}
	doc, err := Replace("intro\n<!-- b -->\nold\n<!-- e -->\nrest\n", "<!-- b -->", "<!-- e -->", "T\n")
	if err != nil || doc != "intro\n<!-- b -->\nT\n<!-- e -->\nrest\n" {
		t.Errorf("Replace = %q, %v", doc, err)
	}
	if _, err := Replace("none", "<!-- b -->", "<!-- e -->", ""); err == nil {
		t.Error("missing markers accepted")
	}
}
