package disruption

import (
	"os"
	"testing"
)

// TestBenchmarkTable prints the figures for 100 and 1,000 nodes (5,000 with
// DOVETAIL_BENCH_FULL=1) and checks the cost outcome, never the time.
func TestBenchmarkTable(t *testing.T) {
	sizes := []int{100, 1000}
	if os.Getenv("DOVETAIL_BENCH_FULL") != "" {
		sizes = append(sizes, 5000)
	}
	if testing.Short() {
		sizes = []int{100}
	}
	for _, n := range sizes {
		r, err := RunBench(types(t), n, uint64(n))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d nodes: pods %d→%d, $/h %.2f→%.2f→%.2f, bound %.2f, ratio %.3f, nodes after %d, first pass %s CPU, %d rounds",
			n, r.PodsBefore, r.PodsAfter, r.CostFull, r.CostScaled, r.CostAfter, r.LowerBound, r.Ratio(), r.NodesAfter, r.FirstDecision, r.Rounds)
		if r.CostAfter >= r.CostScaled {
			t.Errorf("%d nodes: consolidation saved nothing", n)
		}
		if r.Ratio() > 1.15 {
			t.Errorf("%d nodes: cost %.2f is %.1f%% above the bound %.2f (target 15%%)", n, r.CostAfter, (r.Ratio()-1)*100, r.LowerBound)
		}
	}
}

func BenchmarkDecide1000(b *testing.B) { benchDecide(b, 1000) }
func BenchmarkDecide5000(b *testing.B) { benchDecide(b, 5000) }

func benchDecide(b *testing.B, n int) {
	s, _ := BenchCluster(types(b), n, uint64(n))
	b.ResetTimer()
	for b.Loop() {
		Decide(s, t0, Options{})
	}
}
