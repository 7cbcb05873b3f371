package bench

import (
	"os"
	"testing"

	"github.com/dovetail-dev/dovetail/catalog"
)

func TestTable(t *testing.T) {
	c, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{1, 50, 500, 5000}
	if testing.Short() {
		sizes = []int{1, 50}
	}
	var rows []Row
	for _, cs := range Cases(c.InstanceTypes("us-east-1", Zones), SyntheticTypes(), sizes) {
		rows = append(rows, Measure(cs))
	}
	Print(os.Stdout, rows)
}

// Karpenter's benchmark workload (shared label values across groups) must
// give a plan kube-scheduler realises pod for pod.
func TestKarpenterWorkloadReplays(t *testing.T) {
	r := Measure(Case{Catalogue: "karpenter-400", Types: KarpenterTypes(), Mix: MixKarpenter, Pods: 1000, Pool: KarpenterPool()})
	if r.Refused != 0 || r.Unschedulable != 0 {
		t.Fatalf("1,000 Karpenter pods: %d refused on replay, %d unschedulable", r.Refused, r.Unschedulable)
	}
	if r.LPRatio > 1.45 { // the bound ignores the 200 nodes anti-affinity forces
		t.Errorf("1,000 Karpenter pods: %.3f× the LP bound", r.LPRatio)
	}
}
