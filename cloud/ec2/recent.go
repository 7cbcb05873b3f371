package ec2

import (
	"sync"
	"time"

	"github.com/dovetail-dev/dovetail/cloud"
)

// consistencyWindow is how long after a launch EC2's describe calls may
// still not show the instance (EC2's API is eventually consistent). Within
// it, the provider answers from what CreateFleet told it, so that nobody
// concludes a brand-new instance is gone and launches a second one.
const consistencyWindow = 5 * time.Minute

type recentLaunches struct {
	mu    sync.Mutex
	clock Clock
	m     map[string]recentLaunch
}

type recentLaunch struct {
	inst *cloud.Instance
	at   time.Time
}

func newRecentLaunches(c Clock) *recentLaunches {
	return &recentLaunches{clock: c, m: map[string]recentLaunch{}}
}

func (r *recentLaunches) add(inst *cloud.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	for id, l := range r.m {
		if now.Sub(l.at) >= consistencyWindow {
			delete(r.m, id)
		}
	}
	c := *inst
	r.m[inst.ID] = recentLaunch{inst: &c, at: now}
}

// get returns a copy of a launch made within the window.
func (r *recentLaunches) get(id string) (*cloud.Instance, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.m[id]
	if !ok || r.clock.Now().Sub(l.at) >= consistencyWindow {
		return nil, false
	}
	c := *l.inst
	return &c, true
}

// forget drops an instance (after Delete, so a terminated one is not resurrected).
func (r *recentLaunches) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, id)
}

// missingFrom returns the recent launches whose IDs are not in seen.
func (r *recentLaunches) missingFrom(seen map[string]bool) []*cloud.Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	var out []*cloud.Instance
	for id, l := range r.m {
		if !seen[id] && now.Sub(l.at) < consistencyWindow {
			c := *l.inst
			out = append(out, &c)
		}
	}
	return out
}

// byNodeClaim returns a launch made within the window for a NodeClaim.
func (r *recentLaunches) byNodeClaim(name string) (*cloud.Instance, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	for _, l := range r.m {
		if l.inst.Tags[cloud.TagNodeClaim] == name && now.Sub(l.at) < consistencyWindow {
			c := *l.inst
			return &c, true
		}
	}
	return nil, false
}
