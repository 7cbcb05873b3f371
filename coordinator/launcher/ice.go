package launcher

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// ICEStore is the replicated insufficient-capacity cache (fsm.State.ICE) as
// the cloud provider reads and writes it (ec2.Config.Offerings): the one
// store of refused offerings. Reads answer from this replica's copy of the
// state, so a new leader's provider skips what its predecessor was refused
// without being re-seeded, and an entry whose Until passed is available
// again at once, before ICEExpire removes it.
//
// A refusal the provider records mid-launch is held here only until the
// launcher commits it (ICEMark, after the cloud call returns): until then
// the rest of that launch and concurrent ones skip it too.
type ICEStore struct {
	mu      sync.Mutex
	view    func(func(*fsm.State))
	now     func() time.Time
	ttl     time.Duration
	pending map[string]fsm.ICEEntry // by OfferingKey, not yet committed

	// entries, read by countEntries (made once, so it does not allocate
	// per call), is how many entries the replicated state holds: with none,
	// Unavailable answers without building a key or a closure.
	entries      atomic.Int64
	countEntries func(*fsm.State)
}

// NewICEStore returns a store to pass to the cloud provider and to the
// launcher (Config.ICE), which binds it to the replicated state. Until then
// it holds only refusals of the current launches.
func NewICEStore() *ICEStore {
	return &ICEStore{now: time.Now, ttl: 3 * time.Minute, pending: map[string]fsm.ICEEntry{}}
}

func (s *ICEStore) bind(view func(func(*fsm.State)), now func() time.Time, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.view, s.now, s.ttl = view, now, ttl
	s.countEntries = func(st *fsm.State) { s.entries.Store(int64(len(st.ICE))) }
}

// Unavailable reports whether the offering is refused now, and its code.
// It is asked for every offering of every listing (thousands), so the
// usual case, nothing refused, costs two uncontended read locks and no
// allocation.
func (s *ICEStore) Unavailable(instanceType, zone, capacityType string) (string, bool) {
	s.mu.Lock()
	nowf, view, count := s.now, s.view, s.countEntries
	var e fsm.ICEEntry
	ok := false
	if len(s.pending) > 0 {
		e, ok = s.pending[fsm.OfferingKey(instanceType, zone, capacityType)]
	}
	s.mu.Unlock()
	if ok && nowf().Before(e.Until) {
		return e.Code, true
	}
	if view == nil {
		return "", false
	}
	if view(count); s.entries.Load() == 0 {
		return "", false
	}
	if e, ok := lookup(view, fsm.OfferingKey(instanceType, zone, capacityType)); ok && nowf().Before(e.Until) {
		return e.Code, true
	}
	return "", false
}

// lookup reads one entry of the replicated state (its own function: the
// closure's captures would otherwise be allocated on every Unavailable).
func lookup(view func(func(*fsm.State)), key string) (e fsm.ICEEntry, ok bool) {
	view(func(st *fsm.State) { e, ok = st.ICE[key] })
	return e, ok
}

// MarkUnavailable records a refusal the provider just had, for the
// launcher to commit.
func (s *ICEStore) MarkUnavailable(instanceType, zone, capacityType, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[fsm.OfferingKey(instanceType, zone, capacityType)] = fsm.ICEEntry{InstanceType: instanceType, Zone: zone,
		CapacityType: capacityType, Code: code, Until: s.now().Add(s.ttl)}
}

// uncommitted returns the refusals recorded since the last commit.
func (s *ICEStore) uncommitted() []fsm.ICEEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]fsm.ICEEntry, 0, len(s.pending))
	for _, e := range s.pending {
		out = append(out, e)
	}
	return out
}

// settle forgets entries once their commit was tried: committed, the
// replicated state answers for them; failed (leadership lost), the next
// leader learns them again from EC2 rather than this replica keeping a
// cache of its own. An entry marked again since is kept.
func (s *ICEStore) settle(entries []fsm.ICEEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		if cur, ok := s.pending[e.Key()]; ok && cur.Code == e.Code && cur.Until.Equal(e.Until) {
			delete(s.pending, e.Key())
		}
	}
}
