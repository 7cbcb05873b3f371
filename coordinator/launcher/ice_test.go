package launcher

import (
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// TestICEStoreReadsTheReplicatedState: the provider's view of refused
// offerings is the replicated state itself, so an entry a previous leader
// committed is seen without re-seeding, and one whose Until passed is
// available at once (before any ICEExpire). A refusal recorded mid-launch
// is seen until its commit was tried, then only through the state.
func TestICEStoreReadsTheReplicatedState(t *testing.T) {
	now := t0
	st := fsm.NewState()
	st.ICE[fsm.OfferingKey("m5.large", "us-east-1a", "spot")] = fsm.ICEEntry{InstanceType: "m5.large", Zone: "us-east-1a",
		CapacityType: "spot", Code: "InsufficientInstanceCapacity", Until: t0.Add(time.Minute)}
	s := NewICEStore()
	s.bind(func(f func(*fsm.State)) { f(st) }, func() time.Time { return now }, 3*time.Minute)

	if code, ok := s.Unavailable("m5.large", "us-east-1a", "spot"); !ok || code != "InsufficientInstanceCapacity" {
		t.Fatalf("replicated entry not seen: %q %v", code, ok)
	}
	if _, ok := s.Unavailable("m5.large", "us-east-1a", "on-demand"); ok {
		t.Fatal("on-demand reported unavailable")
	}
	now = t0.Add(time.Minute)
	if _, ok := s.Unavailable("m5.large", "us-east-1a", "spot"); ok {
		t.Fatal("entry expired in the state is still avoided")
	}

	s.MarkUnavailable("c5.large", "us-east-1b", "spot", "InsufficientInstanceCapacity")
	if _, ok := s.Unavailable("c5.large", "us-east-1b", "spot"); !ok {
		t.Fatal("a refusal of the current launch is not seen before its commit")
	}
	pending := s.uncommitted()
	if len(pending) != 1 || !pending[0].Until.Equal(now.Add(3*time.Minute)) {
		t.Fatalf("uncommitted = %+v", pending)
	}
	s.settle(pending)
	if _, ok := s.Unavailable("c5.large", "us-east-1b", "spot"); ok {
		t.Fatal("a settled refusal outlives its commit in a local cache")
	}
	if len(s.uncommitted()) != 0 {
		t.Fatal("settled entries still pending")
	}
}

// BenchmarkICEStoreUnavailable is the provider's per-offering question
// (thousands per instance-type listing) with nothing refused: the case
// that must not allocate.
func BenchmarkICEStoreUnavailable(b *testing.B) {
	f := fsm.New(nil)
	s := NewICEStore()
	s.bind(f.View, time.Now, time.Minute)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.Unavailable("m5.large", "us-east-1a", "spot")
	}
}
