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
	b.ReportMetric(float64(r.Refused), "refused")
	b.ReportMetric(float64(r.Duration.Microseconds())/1000, "solve-ms")
}

// Karpenter's own scheduling benchmark, shaped exactly like it.
func benchKarpenter(b *testing.B, n int) {
	benchCase(b, Case{Catalogue: "karpenter-400", Types: KarpenterTypes(), Mix: MixKarpenter, Pods: n, Pool: KarpenterPool()})
}

func BenchmarkKarpenter1k(b *testing.B)  { benchKarpenter(b, 1000) }
func BenchmarkKarpenter5k(b *testing.B)  { benchKarpenter(b, 5000) }
func BenchmarkKarpenter20k(b *testing.B) { benchKarpenter(b, 20000) }

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
