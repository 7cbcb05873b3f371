package imds

import (
	"context"
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
