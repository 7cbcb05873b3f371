package ec2sim

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// BenchmarkCreateFleet measures instant-fleet launches per second through
// the real SDK (one instance per call, 6 overrides, a fresh ClientToken).
func BenchmarkCreateFleet(b *testing.B) {
	s := startSim(b, Config{DisableIMDS: true})
	ctx := context.Background()
	c := ec2Client(s, 3)
	lt := mustTemplate(b, ctx, c, s, "bench", "x86_64", "")
	sn := s.SubnetIDs()
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok := "bench-" + strconv.FormatInt(n.Add(1), 10)
			out, err := c.CreateFleet(ctx, fleetInput(tok, lt, "spot",
				override{"m5.large", sn[0]}, override{"m5.large", sn[1]}, override{"m5.large", sn[2]},
				override{"c5.large", sn[0]}, override{"c5.large", sn[1]}, override{"c5.large", sn[2]}))
			if err != nil || len(fleetIDs(out)) != 1 {
				b.Errorf("launch: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "launches/s")
}

// BenchmarkDescribeInstances measures a filtered DescribeInstances over 1,000 instances.
func BenchmarkDescribeInstances(b *testing.B) {
	s := startSim(b, Config{DisableIMDS: true})
	ctx := context.Background()
	c := ec2Client(s, 3)
	lt := mustTemplate(b, ctx, c, s, "bench", "x86_64", "")
	for i := 0; i < 1000; i++ {
		if _, err := c.CreateFleet(ctx, fleetInput("d-"+strconv.Itoa(i), lt, "on-demand", override{"m5.large", s.SubnetIDs()[i%3]})); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
		if err != nil || len(out.Reservations) != 1000 {
			b.Fatalf("%v", err)
		}
	}
}
