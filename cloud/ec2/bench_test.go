package ec2

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// BenchmarkLaunch measures launches per second through the real SDK
// against the simulator (HTTP on loopback, EC2 Query protocol), one
// CreateFleet plus the NodeClaim replay lookup per launch.
func BenchmarkLaunch(b *testing.B) {
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprintf("goroutines=%d", par*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			e := newEnv(b, ec2sim.Config{})
			ctx := context.Background()
			nc := testNodeClass("bench")
			opts := []cloud.LaunchOption{
				opt("m5.large", "us-east-1a", cloud.CapacityTypeSpot, 0.03),
				opt("m5.large", "us-east-1b", cloud.CapacityTypeSpot, 0.03),
				opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096),
			}
			// Warm the node class and launch template caches.
			if _, err := e.p.Create(ctx, nc, request("warm", opts...)); err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					if _, err := e.p.Create(ctx, nc, request(fmt.Sprintf("bench-%d", i), opts...)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "launches/s")
		})
	}
}
