package wiring

import (
	"net/http"
	"sync"

	"github.com/dovetail-dev/dovetail/coordinator/disruption"
)

// Explain serves the disruption controller's explain endpoints
// (`dovetail explain node|pod`, the snapshot and the plan) from whichever
// term's controller currently runs on this replica. Create it before
// coordinator.Start, mount Handlers() as Config.ExtraHandlers, and pass it
// in Options.Explain so Components binds it; a replica that does not lead
// answers as disruption.ExplainHandler does without a plan.
type Explain struct {
	mu sync.Mutex
	d  *disrupter
}

// NewExplain returns an unbound Explain.
func NewExplain() *Explain { return &Explain{} }

func (x *Explain) bind(d *disrupter) {
	x.mu.Lock()
	x.d = d
	x.mu.Unlock()
}

// LatestPlan implements disruption.ExplainSource.
func (x *Explain) LatestPlan() (*disruption.Plan, *disruption.Snapshot, bool) {
	x.mu.Lock()
	d := x.d
	x.mu.Unlock()
	if d == nil {
		return nil, nil, false
	}
	ctl := d.Controller()
	if ctl == nil {
		return nil, nil, false
	}
	return ctl.LatestPlan()
}

// Handlers maps the explain paths to their handler, ready for
// coordinator.Config.ExtraHandlers.
func (x *Explain) Handlers() map[string]http.Handler {
	h := disruption.ExplainHandler(x)
	return map[string]http.Handler{
		disruption.ExplainNodePath: h, disruption.ExplainPodPath: h,
		disruption.SnapshotPath: h, disruption.PlanPath: h,
	}
}
