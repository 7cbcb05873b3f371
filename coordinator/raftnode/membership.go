package raftnode

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// ReconcileMembership is leader-only work (an autopilot equivalent): every
// interval it adds expected peers missing from the Raft configuration (a
// scaled-up or re-created replica) and removes servers that are not expected
// and have failed heartbeats for DeadServerTimeout, but only while the
// remaining voters keep a healthy quorum and never fewer voters than the
// expected count.
func (n *Node) ReconcileMembership(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := n.reconcileOnce(n.cfg.Now()); err != nil {
			n.log.Warn("membership reconcile", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (n *Node) reconcileOnce(now time.Time) error {
	if n.raft.State() != raft.Leader || len(n.cfg.Peers) == 0 {
		return nil
	}
	servers, err := n.Servers()
	if err != nil {
		return err
	}
	inConfig := map[string]raft.Server{}
	for _, s := range servers {
		inConfig[string(s.ID)] = s
	}
	expected := map[string]bool{}
	for _, p := range n.cfg.Peers {
		expected[p.ID] = true
		s, ok := inConfig[p.ID]
		if ok && string(s.Address) == p.RaftAddr && s.Suffrage == raft.Voter {
			continue
		}
		n.log.Info("adding expected peer to raft configuration", "peer", p.ID, "addr", p.RaftAddr)
		if err := n.raft.AddVoter(raft.ServerID(p.ID), raft.ServerAddress(p.RaftAddr), 0, 10*time.Second).Error(); err != nil {
			return fmt.Errorf("add voter %s: %w", p.ID, err)
		}
	}
	decision := planRemovals(servers, expected, n.failedSince(), now, n.cfg.DeadServerTimeout, len(n.cfg.Peers), n.cfg.ID)
	for _, id := range decision {
		n.log.Warn("removing dead unexpected server", "peer", id)
		if err := n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
			return fmt.Errorf("remove server %s: %w", id, err)
		}
	}
	return nil
}

func (n *Node) failedSince() map[string]time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]time.Time, len(n.failedAt))
	for id, t := range n.failedAt {
		out[string(id)] = t
	}
	return out
}

// planRemovals decides which servers to remove. Pure, so the quorum rule is
// table-tested: a server is removable when it is not expected, not this
// replica, and has failed for at least timeout; removals stop as soon as one
// more would leave fewer than minVoters voters or fewer healthy voters than a
// majority of the remaining configuration.
func planRemovals(servers []raft.Server, expected map[string]bool, failed map[string]time.Time,
	now time.Time, timeout time.Duration, minVoters int, self string) []string {
	voters := 0
	healthy := 0
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if _, bad := failed[string(s.ID)]; !bad {
			healthy++
		}
	}
	var out []string
	for _, s := range servers {
		id := string(s.ID)
		since, bad := failed[id]
		if expected[id] || id == self || !bad || now.Sub(since) < timeout {
			continue
		}
		after := voters
		if s.Suffrage == raft.Voter {
			after--
		}
		if after < minVoters || healthy < after/2+1 {
			break
		}
		voters = after
		out = append(out, id)
	}
	return out
}
