package imds

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/daemon/internal/simtest"
)

// simInstance starts the EC2 simulator and launches one instance.
func simInstance(t *testing.T, capType string) (*ec2sim.Sim, string) {
	t.Helper()
	s := ec2sim.New(ec2sim.Config{})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	id, err := simtest.Launch(ctx, s, "imds-test", capType, "m5.large")
	if err != nil {
		t.Fatal(err)
	}
	return s, id
}

func TestSimulatorIMDS(t *testing.T) {
	s, id := simInstance(t, "spot")
	w := newWatcher(t, s.IMDSEndpoint(id))
	ident, err := w.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ident.InstanceID != id || ident.AvailabilityZone == "" {
		t.Fatalf("identity %+v", ident)
	}
	info, _ := s.Instance(id)
	if ident.ProviderID() != info.ProviderID {
		t.Fatalf("providerID %s, simulator says %s", ident.ProviderID(), info.ProviderID)
	}
	out := run(t, w)

	// Faults first: 5xx, malformed, slow. The watcher must shrug them off.
	for _, f := range []ec2sim.IMDSFault{{Mode: "error"}, {Mode: "malformed"}, {Mode: "slow", Delay: 2 * time.Second}} {
		if err := s.SetIMDSFault(id, f); err != nil {
			t.Fatal(err)
		}
		if err := s.RebalanceRecommendation(id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err := s.SetIMDSFault(id, ec2sim.IMDSFault{}); err != nil {
		t.Fatal(err)
	}
	if n := next(t, out); n.Kind != KindRebalance {
		t.Fatalf("%+v", n)
	}

	// Maintenance scheduled, then cancelled.
	eid, err := s.ScheduleMaintenance(id, ec2sim.MaintenanceEvent{Code: "system-reboot", NotBefore: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if n := next(t, out); n.Kind != KindMaintenance || n.EventID != eid || n.Cancelled || n.Action != "system-reboot" {
		t.Fatalf("%+v", n)
	}
	if err := s.CancelMaintenance(id, eid); err != nil {
		t.Fatal(err)
	}
	if n := next(t, out); n.EventID != eid || !n.Cancelled {
		t.Fatalf("%+v", n)
	}

	// Spot interruption: seen with its two-minute deadline.
	deadline, err := s.InterruptSpot(id)
	if err != nil {
		t.Fatal(err)
	}
	n := next(t, out)
	if n.Kind != KindSpotInterruption || n.Action != "terminate" || !n.Time.Equal(deadline) {
		t.Fatalf("%+v (deadline %v)", n, deadline)
	}
	if lag := n.ObservedAt.Sub(deadline.Add(-ec2sim.SpotInterruptionNotice)); lag > 2*time.Second {
		t.Logf("notice observed %v after it appeared (truncated to the second)", lag)
	}
}

// BenchmarkSpotNoticeDetection: time from the simulator showing a spot
// notice to the watcher delivering it, at the default 500 ms interval.
//
//	go test -run '^$' -bench SpotNoticeDetection -benchtime 10x ./daemon/imds/
func BenchmarkSpotNoticeDetection(b *testing.B) {
	s := ec2sim.New(ec2sim.Config{})
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var total, worst time.Duration
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		id, err := simtest.Launch(b.Context(), s, "detect-"+time.Now().Format("150405.000000000"), "spot", "m5.large")
		if err != nil {
			b.Fatal(err)
		}
		w, err := New(Config{Endpoint: s.IMDSEndpoint(id), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		out := make(chan Notice, 4)
		go func() { _ = w.Run(ctx, out) }()
		time.Sleep(300 * time.Millisecond) // let the loops reach a random phase
		b.StartTimer()
		shown := time.Now()
		if _, err := s.InterruptSpot(id); err != nil {
			b.Fatal(err)
		}
		for n := range out {
			if n.Kind == KindSpotInterruption {
				break
			}
		}
		lag := time.Since(shown)
		b.StopTimer()
		cancel()
		total += lag
		worst = max(worst, lag)
	}
	b.ReportMetric(float64((total / time.Duration(b.N)).Milliseconds()), "ms-mean")
	b.ReportMetric(float64(worst.Milliseconds()), "ms-worst")
}
