package disruption

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// Rolling AMI updates. When the AMIs a NodeClass resolves to change, every
// node of the pool on another AMI drifts; the rollout record (in Raft, so a
// new leader carries on) tracks target, done, in progress and remaining, and
// halts itself when a replacement fails to become Ready in time, instead of
// replacing the whole fleet with broken nodes. A halted rollout stays halted
// until an operator resumes it (RolloutSet with Paused=false, e.g. from the
// CLI) or the NodeClass resolves yet another AMI set, which starts afresh.

// TargetOf is the rollout target for a NodeClass: its resolved AMI ids,
// sorted and comma-joined (one per architecture, typically).
func TargetOf(c *NodeClass) string {
	ids := make([]string, 0, len(c.AMIs))
	for _, a := range c.AMIs {
		ids = append(ids, a.ID)
	}
	sort.Strings(ids)
	return strings.Join(slices.Compact(ids), ",")
}

// rollout computes the pool's rollout record for this pass (nil when the
// pool has none and needs none). The returned value is a private copy.
func (p *planner) rollout(pool *Pool, class *NodeClass) *fsm.Rollout {
	prev, had := p.s.Rollouts[pool.Name]
	if class == nil || len(class.AMIs) == 0 {
		if had {
			r := cloneRollout(prev)
			return &r
		}
		return nil
	}
	target := TargetOf(class)
	onTarget := map[string]bool{}
	for _, a := range class.AMIs {
		onTarget[a.ID] = true
	}
	var old []string
	for _, n := range p.byPool[pool.Name] {
		if n.ImageID != "" && !onTarget[n.ImageID] {
			old = append(old, n.Name)
		}
	}
	sort.Strings(old)
	var r fsm.Rollout
	switch {
	case had && prev.TargetAMI == target:
		r = cloneRollout(prev)
	case len(old) == 0:
		if had {
			// Target changed but nothing is on another AMI: nothing to roll.
			r = fsm.Rollout{NodePool: pool.Name, TargetAMI: target, StartedAt: p.now, UpdatedAt: p.now}
			return &r
		}
		return nil
	default:
		r = fsm.Rollout{NodePool: pool.Name, TargetAMI: target, StartedAt: p.now}
	}
	// Nodes that were in the rollout and are no longer on an old AMI are done
	// (replaced and gone).
	oldSet := map[string]bool{}
	for _, name := range old {
		oldSet[name] = true
	}
	for _, name := range append(slices.Clone(r.InProgress), r.Remaining...) {
		if !oldSet[name] {
			r.Done = appendUnique(r.Done, name)
		}
	}
	r.InProgress, r.Remaining = nil, nil
	for _, name := range old {
		if d, ok := p.s.Ledger[name]; ok && d.NodePool == pool.Name {
			r.InProgress = append(r.InProgress, name)
			continue
		}
		r.Remaining = append(r.Remaining, name)
	}
	// Halt when a replacement launched for this pool's drift is not Ready in time.
	if !r.Paused {
		names := make([]string, 0, len(p.s.Ledger))
		for name := range p.s.Ledger {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			d := p.s.Ledger[name]
			if d.NodePool != pool.Name || d.Reason != string(ReasonDrifted) || d.Since.Before(r.StartedAt) {
				continue
			}
			for _, claim := range d.Replacements {
				if !p.s.ReplacementReady[claim] && p.now.Sub(d.Since) >= p.o.RolloutReadyTimeout {
					r.Paused = true
					r.BlockedReason = fmt.Sprintf("replacement %s for node %s not Ready after %s; rollout halted, resume with `dovetail rollout resume %s`",
						claim, name, p.o.RolloutReadyTimeout, pool.Name)
					break
				}
			}
			if r.Paused {
				break
			}
		}
	}
	if !r.Paused {
		r.BlockedReason = ""
	}
	return &r
}

func (p *planner) setBlocked(r *fsm.Rollout, why string) {
	if r != nil && !r.Paused && r.BlockedReason == "" {
		r.BlockedReason = why
	}
}

// commitRollout records the pool's rollout in the plan and emits a Raft
// command when it changed.
func (p *planner) commitRollout(pool *Pool, r *fsm.Rollout) {
	if r == nil {
		return
	}
	prev, had := p.s.Rollouts[pool.Name]
	if had && rolloutEqual(prev, *r) {
		p.plan.Rollouts[pool.Name] = prev
		return
	}
	r.UpdatedAt = p.now
	p.plan.Rollouts[pool.Name] = *r
	p.plan.Commands = append(p.plan.Commands, fsm.RolloutSet{Rollout: *r})
}

func cloneRollout(r fsm.Rollout) fsm.Rollout {
	r.Done = slices.Clone(r.Done)
	r.InProgress = slices.Clone(r.InProgress)
	r.Remaining = slices.Clone(r.Remaining)
	return r
}

func rolloutEqual(a, b fsm.Rollout) bool {
	return a.NodePool == b.NodePool && a.TargetAMI == b.TargetAMI && a.Paused == b.Paused &&
		a.BlockedReason == b.BlockedReason && a.StartedAt.Equal(b.StartedAt) &&
		slices.Equal(a.Done, b.Done) && slices.Equal(a.InProgress, b.InProgress) && slices.Equal(a.Remaining, b.Remaining)
}

// RolloutProgress summarises a rollout for display: done of total and state.
func RolloutProgress(r fsm.Rollout) (done, total int, state string) {
	done = len(r.Done)
	total = done + len(r.InProgress) + len(r.Remaining)
	switch {
	case r.Paused:
		state = "Halted"
	case total == done:
		state = "Complete"
	case r.BlockedReason != "":
		state = "Waiting"
	default:
		state = "Rolling"
	}
	return done, total, state
}

// since is a helper for messages.
func since(now, t time.Time) time.Duration { return now.Sub(t).Round(time.Second) }
