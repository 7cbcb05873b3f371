// Package metricsdoc records what metrics a process registers (name, type,
// labels, help) so the README's metrics table is generated from the real
// registries rather than written by hand, and a test fails when it is stale.
// A Recorder wraps a prometheus.Registerer; everything registered through it
// is forwarded unchanged and remembered.
package metricsdoc

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Entry is one metric family as documented.
type Entry struct {
	Name   string
	Type   string // counter, gauge, histogram, summary ("" when unknown)
	Labels []string
	Help   string
}

// Typed is implemented by custom collectors that serve const metrics: their
// Describe does not say the type, so they do (family name → type).
type Typed interface {
	MetricTypes() map[string]string
}

// Recorder is a prometheus.Registerer that remembers every descriptor.
type Recorder struct {
	prometheus.Registerer

	mu      sync.Mutex
	entries map[string]Entry
}

// NewRecorder wraps reg.
func NewRecorder(reg prometheus.Registerer) *Recorder {
	return &Recorder{Registerer: reg, entries: map[string]Entry{}}
}

// Register implements prometheus.Registerer: forwards, then records (also
// when the name was taken already: the metric exists either way).
func (r *Recorder) Register(c prometheus.Collector) error {
	err := r.Registerer.Register(c)
	r.Record(c)
	return err
}

// MustRegister implements prometheus.Registerer.
func (r *Recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Record remembers c's metrics without registering it.
func (r *Recorder) Record(c prometheus.Collector) {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	var descs []Entry
	for d := range ch {
		if e, ok := parseDesc(d.String()); ok {
			descs = append(descs, e)
		}
	}
	types := typesOf(c, len(descs))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range descs {
		e.Type = types[e.Name]
		if e.Type == "" && len(descs) == 1 {
			e.Type = types[""]
		}
		if old, ok := r.entries[e.Name]; ok && e.Type == "" {
			e.Type = old.Type
		}
		r.entries[e.Name] = e
	}
}

// Entries returns what was recorded, sorted by name.
func (r *Recorder) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

var descRE = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), help: ("(?:[^"\\]|\\.)*"), unit: "(?:[^"\\]|\\.)*", constLabels: \{(.*)\}, variableLabels: \{(.*)\}\}$`)

func parseDesc(s string) (Entry, bool) {
	m := descRE.FindStringSubmatch(s)
	if m == nil {
		return Entry{}, false
	}
	name, err1 := strconv.Unquote(m[1])
	help, err2 := strconv.Unquote(m[2])
	if err1 != nil || err2 != nil {
		return Entry{}, false
	}
	var labels []string
	if m[4] != "" {
		for _, l := range strings.Split(m[4], ",") {
			l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")")
			labels = append(labels, l)
		}
	}
	if m[3] != "" {
		for _, kv := range strings.Split(m[3], ",") {
			if k, _, ok := strings.Cut(kv, "="); ok {
				labels = append(labels, k)
			}
		}
	}
	sort.Strings(labels)
	return Entry{Name: name, Help: help, Labels: labels}, true
}

// typesOf says the type of c's metrics: by the collector's Go type for the
// client library's metrics and vectors, by Typed for custom collectors, and
// by collecting once for a single-metric collector (GaugeFunc, a plain
// Counter). "" keys the type of a collector with one descriptor.
func typesOf(c prometheus.Collector, n int) map[string]string {
	if t, ok := c.(Typed); ok {
		return t.MetricTypes()
	}
	switch c.(type) {
	case *prometheus.CounterVec:
		return map[string]string{"": "counter"}
	case *prometheus.GaugeVec:
		return map[string]string{"": "gauge"}
	case *prometheus.HistogramVec:
		return map[string]string{"": "histogram"}
	case *prometheus.SummaryVec:
		return map[string]string{"": "summary"}
	}
	ch := make(chan prometheus.Metric, 16)
	go func() { c.Collect(ch); close(ch) }()
	out := map[string]string{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			continue
		}
		t := ""
		switch {
		case pb.Counter != nil:
			t = "counter"
		case pb.Gauge != nil:
			t = "gauge"
		case pb.Histogram != nil:
			t = "histogram"
		case pb.Summary != nil:
			t = "summary"
		}
		if e, ok := parseDesc(m.Desc().String()); ok {
			out[e.Name] = t
		}
		if n == 1 {
			out[""] = t
		}
	}
	return out
}

// Table renders entries as the README's markdown table.
func Table(entries []Entry) string {
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n|---|---|---|---|\n")
	for _, e := range entries {
		labels := "—"
		if len(e.Labels) > 0 {
			q := make([]string, len(e.Labels))
			for i, l := range e.Labels {
				q[i] = "`" + l + "`"
			}
			labels = strings.Join(q, ", ")
		}
		typ := e.Type
		if typ == "" {
			typ = "—"
		}
		help := strings.ReplaceAll(strings.ReplaceAll(e.Help, "|", `\|`), "\n", " ")
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", e.Name, typ, labels, help)
	}
	return b.String()
}

// Merge unions entry lists by name (the first with a type wins).
func Merge(lists ...[]Entry) []Entry {
	m := map[string]Entry{}
	for _, l := range lists {
		for _, e := range l {
			if old, ok := m[e.Name]; ok && (old.Type != "" || e.Type == "") {
				continue
			}
			m[e.Name] = e
		}
	}
	out := make([]Entry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Replace puts table between the begin and end marker lines of doc.
func Replace(doc, begin, end, table string) (string, error) {
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("metricsdoc: markers %q and %q not found in order", begin, end)
	}
	return doc[:i+len(begin)] + "\n" + table + doc[j:], nil
}
