package coordinator

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

// BenchmarkFailover measures leader kill → a new leader acting (barrier
// passed, epoch committed, launcher bound to the new term), 3 replicas over
// TCP with 200ms heartbeat/election timeouts. Reports the median as ms/failover.
func BenchmarkFailover(b *testing.B) {
	c := newCluster(b, 3, clusterOpts{})
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l := c.acting(10 * time.Second)
		id := l.Node().ID()
		start := time.Now()
		c.kill(id)
		c.acting(10 * time.Second)
		samples = append(samples, time.Since(start))
		b.StopTimer()
		c.start(id)
		time.Sleep(300 * time.Millisecond)
		b.StartTimer()
	}
	sort.Slice(samples, func(a, z int) bool { return samples[a] < samples[z] })
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "ms/failover(p50)")
	b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, "ms/failover(max)")
}

// BenchmarkTransferOnShutdown measures graceful leader shutdown (leadership
// transfer) → a new leader acting.
func BenchmarkTransferOnShutdown(b *testing.B) {
	c := newCluster(b, 3, clusterOpts{})
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l := c.acting(10 * time.Second)
		id := l.Node().ID()
		start := time.Now()
		c.stop(id)
		c.acting(10 * time.Second)
		total += time.Since(start)
		b.StopTimer()
		c.start(id)
		time.Sleep(300 * time.Millisecond)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/handover")
}

// BenchmarkCommands measures committed commands per second on a 3-replica
// cluster with 32 concurrent writers (agent reports, the commonest command).
func BenchmarkCommands(b *testing.B) {
	c := newCluster(b, 3, clusterOpts{})
	l := c.acting(10 * time.Second)
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			err := l.Node().Apply(context.Background(), fsm.ReportReceived{ReceivedAt: time.Now(), Report: report.Report{
				ID: fmt.Sprintf("b%d", n), Kind: report.KindHealth, NodeName: fmt.Sprintf("node-%d", n%500),
				Checks: []report.CheckResult{{Name: "kubelet", State: "ok"}}}})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commands/s")
}

// BenchmarkLaunch measures whole launch protocols per second (create
// intent, verify leadership, EC2 CreateFleet through the real provider
// against the simulator, commit result) with 16 concurrent launches.
func BenchmarkLaunch(b *testing.B) {
	c := newCluster(b, 3, clusterOpts{})
	c.acting(10 * time.Second)
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := fmt.Sprintf("bench-%d", seq.Add(1))
			// Retried across an unplanned election, as provisioning would.
			if err := c.launchUntilDone(context.Background(), name); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "launches/s")
}
