package bench

import (
	"testing"

	"github.com/dovetail-dev/dovetail/catalog"
)

func benchCase(b *testing.B, cs Case) {
	b.Helper()
	var r Row
	for i := 0; i < b.N; i++ {
		r = Measure(cs)
	}
	b.ReportMetric(r.Price, "$/h")
	b.ReportMetric(r.LPRatio, "lpratio")
	b.ReportMetric(float64(r.Nodes), "nodes")
	b.ReportMetric(r.PeakHeapMiB, "heapMiB")
}

func BenchmarkPreferenceReal(b *testing.B) {
	c := catalog.MustLoad()
	benchCase(b, Case{Catalogue: "real", Types: c.InstanceTypes("us-east-1", Zones), Mix: MixPreference, Pods: 4000})
}

func BenchmarkMixed20kReal(b *testing.B) {
	c := catalog.MustLoad()
	benchCase(b, Case{Catalogue: "real", Types: c.InstanceTypes("us-east-1", Zones), Mix: MixFifths, Pods: 20000})
}

func BenchmarkPlain5kReal(b *testing.B) {
	c := catalog.MustLoad()
	benchCase(b, Case{Catalogue: "real", Types: c.InstanceTypes("us-east-1", Zones), Mix: MixPlain, Pods: 5000})
}
