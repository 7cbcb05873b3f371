package scheduling

import (
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/cloud"
)

func TestSmokeRealCatalogue(t *testing.T) {
	its := realTypes(t)
	snap := Snapshot{
		NodePools:     []NodePool{defaultPool("default")},
		InstanceTypes: map[string][]*cloud.InstanceType{"": its},
		Pods:          pods(100, "web", "500m", "1Gi"),
	}
	start := time.Now()
	r := Solve(snap, Options{})
	t.Logf("took %v, claims %d, price %.3f unsched %d", time.Since(start), len(r.NewNodeClaims), r.TotalPrice(), len(r.Unschedulable))
	for _, nc := range r.NewNodeClaims {
		t.Logf("%s %s %s %.4f pods=%d types=%v", nc.NodePool, nc.CapacityType, nc.Zone, nc.Price, len(nc.Pods), nc.InstanceTypes[:min(5, len(nc.InstanceTypes))])
	}
}
