package raftnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// A replica that starts without Raft state is either founding a new cluster
// (every replica fresh) or coming back with a wiped data dir (a StatefulSet
// pod whose PVC was lost restarts with its ordinary flags). The second case
// is dangerous twice over: a bootstrap writes a configuration of its own,
// and, worse, an empty replica grants its vote to any candidate, so a stale
// candidate plus the empty replica make a majority that elects a leader
// missing acknowledged writes (the votes and the log the replica had
// promised are gone with its disk).
//
// So a fresh replica first asks its peers their Raft term (probeCluster). A
// peer past term 1 has had a leader: the cluster exists, this replica does
// not bootstrap and waits for the leader's log or snapshot (the membership
// path, the same as --raft-rejoin). Until it holds everything committed it
// grants no vote and no pre-vote (voteGate). Terms 0 and 1 mean no leader was
// ever elected, hence nothing was ever committed, and founding proceeds as
// before.

// joiningFile marks a replica that joined with no state and has not caught up
// yet: restarting in the middle of the catch-up must keep the vote gate shut
// although the WAL is no longer empty.
const joiningFile = "raft-joining"

// foundedTerm is the highest term a cluster that never had a leader can be
// at: a bootstrap writes term 1, the first election moves to 2.
const foundedTerm = 1

// probeCluster asks every other configured peer its current term with a
// term-0 pre-vote request (pre-votes change nothing on the receiver; a term
// older than its own is answered at once with its term), all peers at once
// so a paused one costs no more than the deadline. It returns the first peer
// found past foundedTerm, or "" once every peer answered or refused the
// connection (not running), or at the deadline with the peers not reached.
func probeCluster(ctx context.Context, trans *raft.NetworkTransport, self raft.ServerID, selfAddr raft.ServerAddress,
	peers []Peer, timeout time.Duration) (peer string, term uint64, unreached []string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type answer struct {
		id   string
		term uint64
		ok   bool
	}
	answers := make(chan answer, len(peers))
	pending := map[string]bool{}
	for _, p := range peers {
		if p.ID == string(self) {
			continue
		}
		pending[p.ID] = true
		go func(p Peer) {
			for {
				req := &raft.RequestPreVoteRequest{
					RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(self), Addr: trans.EncodePeer(self, selfAddr)},
				}
				var resp raft.RequestPreVoteResponse
				err := trans.RequestPreVote(raft.ServerID(p.ID), raft.ServerAddress(p.RaftAddr), req, &resp)
				if err == nil || refused(err) {
					answers <- answer{id: p.ID, term: resp.Term, ok: true}
					return
				}
				select {
				case <-ctx.Done():
					answers <- answer{id: p.ID}
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}(p)
	}
	for range len(pending) {
		a := <-answers
		if !a.ok {
			continue
		}
		delete(pending, a.id)
		if a.term > foundedTerm {
			return a.id, a.term, nil
		}
	}
	for id := range pending {
		unreached = append(unreached, id)
	}
	return "", 0, unreached
}

// refused reports a dial the peer's host answered with a refusal: the peer is
// not running, so it is no cluster this replica could join now.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// voteGate wraps the transport and answers RequestVote and RequestPreVote
// with a refusal, without handing them to Raft, while shut. It opens once
// (and for good) when open reports the replica caught up.
type voteGate struct {
	*raft.NetworkTransport
	in      <-chan raft.RPC
	out     chan raft.RPC
	shut    atomic.Bool
	openFn  atomic.Pointer[func() bool] // nil until the node is built
	header  raft.RPCHeader
	refused atomic.Int64
	onOpen  atomic.Pointer[func()]
	done    chan struct{}
}

func newVoteGate(t *raft.NetworkTransport, header raft.RPCHeader, shut bool) *voteGate {
	g := &voteGate{NetworkTransport: t, in: t.Consumer(), out: make(chan raft.RPC), header: header, done: make(chan struct{})}
	g.shut.Store(shut)
	go g.run()
	return g
}

// Consumer is what Raft reads its RPCs from.
func (g *voteGate) Consumer() <-chan raft.RPC { return g.out }

// Close stops the gate's goroutine and closes the transport.
func (g *voteGate) Close() error {
	select {
	case <-g.done:
	default:
		close(g.done)
	}
	return g.NetworkTransport.Close()
}

func (g *voteGate) isShut() bool {
	if !g.shut.Load() {
		return false
	}
	if f := g.openFn.Load(); f != nil && (*f)() {
		if g.shut.CompareAndSwap(true, false) {
			if cb := g.onOpen.Load(); cb != nil {
				(*cb)()
			}
		}
		return false
	}
	return true
}

func (g *voteGate) run() {
	for {
		var rpc raft.RPC
		select {
		case rpc = <-g.in:
		case <-g.done:
			return
		}
		if g.isShut() {
			switch req := rpc.Command.(type) {
			case *raft.RequestVoteRequest:
				g.refused.Add(1)
				rpc.Respond(&raft.RequestVoteResponse{RPCHeader: g.header, Term: req.Term, Granted: false}, nil)
				continue
			case *raft.RequestPreVoteRequest:
				g.refused.Add(1)
				rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: g.header, Term: req.Term, Granted: false}, nil)
				continue
			}
		}
		select {
		case g.out <- rpc:
		case <-g.done:
			return
		}
	}
}

// caughtUp reports whether this replica holds every entry ever committed:
// its commit index (learnt from the leader) points at an entry of the
// current term, i.e. the leader of this term has committed one of its own
// entries, so by leader completeness every earlier committed entry precedes
// it, and by log matching this replica has them all. A snapshot of the
// current term proves the same.
func (n *Node) caughtUp() bool {
	term := n.raft.CurrentTerm()
	ci := n.raft.CommitIndex()
	if term == 0 || ci == 0 {
		return false
	}
	var e raft.Log
	if err := n.wal.GetLog(ci, &e); err == nil {
		return e.Term == term
	}
	st := n.raft.Stats()
	snapTerm, _ := strconv.ParseUint(st["last_snapshot_term"], 10, 64)
	snapIdx, _ := strconv.ParseUint(st["last_snapshot_index"], 10, 64)
	return snapIdx >= ci && snapTerm == term
}

// VotesRefused counts the (pre-)vote requests the gate answered with a
// refusal while this replica was catching up.
func (n *Node) VotesRefused() int64 { return n.gate.refused.Load() }

// Joining reports whether this replica's vote gate is still shut.
func (n *Node) Joining() bool { return n.gate.isShut() }

func markJoining(dataDir string) error {
	if err := os.WriteFile(filepath.Join(dataDir, joiningFile), []byte("catching up from the leader; no votes until then\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", joiningFile, err)
	}
	return nil
}

func isJoining(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, joiningFile))
	return err == nil
}
