// Package provisioning is the leader's provisioner: it watches pods that
// kube-scheduler could not place, batches them, builds a scheduling
// snapshot of the cluster, asks the pure planner (Plan, built on
// scheduling.Solve) what to launch, tells pods no NodePool can serve why
// (a Kubernetes Event), and hands every new NodeClaim to a Launcher.
package provisioning

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// Batcher groups triggers into batches: a batch starts at the first
// trigger and closes once no trigger arrived for IdleGap, or MaxWindow
// after it started, whichever comes first. Pods that go pending together
// (a Deployment scaling up) are therefore planned together.
type Batcher struct {
	idle, max time.Duration
	clock     clock.Clock
	trigger   chan struct{}
}

// NewBatcher makes a batcher; zero durations get the defaults (1 s idle, 10 s max).
func NewBatcher(idle, max time.Duration, clk clock.Clock) *Batcher {
	if idle <= 0 {
		idle = time.Second
	}
	if max <= 0 {
		max = 10 * time.Second
	}
	if max < idle {
		max = idle
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Batcher{idle: idle, max: max, clock: clk, trigger: make(chan struct{}, 1)}
}

// Trigger records that something happened (a pod went pending). It never blocks.
func (b *Batcher) Trigger() {
	select {
	case b.trigger <- struct{}{}:
	default:
	}
}

// Wait blocks until a batch has started and closed. It returns false when
// ctx ends first.
func (b *Batcher) Wait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-b.trigger:
	}
	maxT := b.clock.NewTimer(b.max)
	defer maxT.Stop()
	idleT := b.clock.NewTimer(b.idle)
	defer func() { idleT.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-maxT.C():
			return true
		case <-idleT.C():
			return true
		case <-b.trigger:
			idleT.Stop()
			idleT = b.clock.NewTimer(b.idle)
		}
	}
}
