// Package raftnode runs one coordinator replica's Raft: raft-wal as the log
// and stable store (raft-boltdb/v2 needs go-metrics/compat, which raft 1.8 and
// memberlist 0.7 no longer provide), raft's FileSnapshotStore, a TCP or
// mutual-TLS transport, StatefulSet bootstrap with no manual step, typed
// command application, dead-server clean-up that never drops below quorum,
// and leadership transfer on shutdown.
package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/logbridge"
)

// Config configures a replica.
type Config struct {
	// ID is the replica's stable identity (its pod name in a StatefulSet).
	ID string
	// DataDir holds the WAL and snapshots; a restarted replica rejoins with it.
	DataDir string
	// BindAddr is the Raft listen address (host:port).
	BindAddr string
	// AdvertiseAddr is the address peers dial; defaults to this replica's
	// entry in Peers, then to the listener's address.
	AdvertiseAddr string
	// Peers is the expected voter set, this replica included. A replica with
	// no Raft state bootstraps with exactly this set (every replica computes
	// the same one, so the bootstraps agree). The leader adds expected peers
	// missing from the configuration and may remove failed unexpected ones.
	Peers []Peer
	// ServerTLS and ClientTLS enable mutual TLS (both or neither). Plain TCP
	// is meant for tests only.
	ServerTLS, ClientTLS *tls.Config

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
	// SegmentSize is the WAL segment size in bytes (default 64 MiB; tests use less).
	SegmentSize int
	// ApplyTimeout bounds one Apply when the context has no deadline.
	ApplyTimeout time.Duration
	// Rejoin makes a replica without Raft state wait for the leader to
	// replicate to it instead of bootstrapping: the recovery for a lost or
	// corrupt data dir (wipe it, start with Rejoin). Ignored when the
	// replica has state.
	Rejoin bool
	// JoinProbeTimeout bounds how long a replica with no Raft state asks its
	// peers whether they already form a cluster before founding one (0: 5 s).
	// Peers that refuse the connection (not running) count as answered.
	JoinProbeTimeout time.Duration
	// Now is the clock of the membership records and reconciles (the
	// coordinator's one clock); default time.Now. Raft's own timers are
	// hashicorp/raft's and stay on the wall clock.
	Now func() time.Time
	// DeadServerTimeout is how long an unexpected peer must fail heartbeats
	// before the leader removes it (0: 2 minutes).
	DeadServerTimeout time.Duration

	Logger *slog.Logger

	// LinkDown is a test hook: while it returns true for a target Raft
	// address, this replica can neither dial it nor use pooled connections
	// to it. Set it on every replica to simulate a network partition.
	LinkDown func(target string) bool
}

func (c *Config) defaults() {
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = time.Second
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = time.Second
	}
	if c.LeaderLeaseTimeout == 0 {
		// Equal to the heartbeat, as the binary ships it: half of it made
		// loaded leaders step down on their own.
		c.LeaderLeaseTimeout = c.HeartbeatTimeout
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = 50 * time.Millisecond
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 2 * time.Minute
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 10 * time.Second
	}
	if c.DeadServerTimeout == 0 {
		c.DeadServerTimeout = 2 * time.Minute
	}
	if c.JoinProbeTimeout == 0 {
		c.JoinProbeTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Node is a running replica.
type Node struct {
	cfg    Config
	log    *slog.Logger
	raft   *raft.Raft
	fsm    *fsm.FSM
	wal    *wal.WAL
	meta   *metadb.BoltMetaDB
	unlock func()
	trans  *raft.NetworkTransport
	gate   *voteGate
	notify chan bool

	obsCh chan raft.Observation
	obs   *raft.Observer

	mu        sync.Mutex
	failedAt  map[raft.ServerID]time.Time // leader's view: peers failing heartbeats since
	closeOnce sync.Once
	closeErr  error
	killOnce  sync.Once
	killErr   error
	closed    chan struct{} // closed by Kill
}

// ErrNotLeader is returned by Apply on a replica that is not the leader (or
// is no longer the leader of the term it was asked to act in).
var ErrNotLeader = errors.New("not the raft leader")

// Start opens the data directory, starts Raft and bootstraps a fresh cluster
// when this replica has no state.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.defaults()
	if cfg.ID == "" {
		return nil, errors.New("raft: replica ID is required")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("raft: data directory is required")
	}
	if (cfg.ServerTLS == nil) != (cfg.ClientTLS == nil) {
		return nil, errors.New("raft: server and client TLS must be set together")
	}
	log := cfg.Logger.With("component", "raft", "replica", cfg.ID)
	advertise := cfg.AdvertiseAddr
	if advertise == "" {
		for _, p := range cfg.Peers {
			if p.ID == cfg.ID {
				advertise = p.RaftAddr
			}
		}
	}
	walDir := filepath.Join(cfg.DataDir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, fmt.Errorf("raft data dir: %w", err)
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			unlock()
		}
	}()
	hl := logbridge.HCLog(cfg.Logger.With("replica", cfg.ID), "raft")
	segSize := cfg.SegmentSize
	if segSize <= 0 {
		segSize = 64 << 20
	}
	// raft-wal's Close leaves its meta database open (and flock'ed), so the
	// node owns it and closes it itself; otherwise a restart in the same
	// process would block forever on the lock.
	meta := &metadb.BoltMetaDB{}
	var w *wal.WAL
	stack, err := guard("opening raft wal "+walDir, cfg.DataDir, func() (err error) {
		w, err = wal.Open(walDir, wal.WithLogger(hl.Named("wal")), wal.WithSegmentSize(segSize), wal.WithMetaStore(meta))
		return err
	})
	if err != nil {
		if stack != nil {
			log.Error("raft wal open panicked", "err", err, "stack", string(stack))
		}
		_ = meta.Close()
		return nil, fmt.Errorf("open raft wal %s: %w", walDir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hl.Named("snapshots"))
	if err != nil {
		_ = w.Close()
		_ = meta.Close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	stream, err := newStreamLayer(cfg.BindAddr, advertise, cfg.ServerTLS, cfg.ClientTLS, cfg.LinkDown)
	if err != nil {
		_ = w.Close()
		_ = meta.Close()
		return nil, err
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 5 * time.Second, Logger: hl.Named("transport"),
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	notify := make(chan bool, 16)
	rc.NotifyCh = notify
	// Wait for the prior leader to go quiet before a new election is allowed
	// to start from this replica on a hint; PreVote avoids term inflation by a
	// partitioned replica rejoining.
	rc.PreVoteDisabled = false

	f := fsm.New(cfg.Logger.With("replica", cfg.ID))
	hasState, err := raft.HasExistingState(w, w, snaps)
	if err != nil {
		err = fmt.Errorf("inspect raft state: %w", err)
	}
	if err == nil {
		err = checkLostWAL(cfg, walDir, w, w, snaps)
	}
	if err == nil {
		err = verifyWAL(walDir, w)
	}
	if err != nil {
		_ = trans.Close()
		_ = w.Close()
		_ = meta.Close()
		return nil, err
	}
	// Every replica that starts without state, or restarts in the middle of
	// catching up, refuses votes until it holds everything committed.
	joining := isJoining(cfg.DataDir)
	header := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(cfg.ID), Addr: trans.EncodePeer(rc.LocalID, trans.LocalAddr())}
	gate := newVoteGate(trans, header, !hasState || joining)
	var r *raft.Raft
	stack, err = guard("raft.NewRaft", cfg.DataDir, func() (err error) {
		r, err = raft.NewRaft(rc, f, w, w, snaps, gate)
		return err
	})
	if err != nil {
		if stack != nil {
			log.Error("raft start panicked", "err", err, "stack", string(stack))
		}
		_ = gate.Close()
		_ = w.Close()
		_ = meta.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n := &Node{cfg: cfg, log: log, raft: r, fsm: f, wal: w, meta: meta, unlock: unlock, trans: trans, gate: gate, notify: notify,
		failedAt: map[raft.ServerID]time.Time{}, closed: make(chan struct{})}
	caught := n.caughtUp
	gate.openFn.Store(&caught)
	opened := func() {
		log.Info("caught up with the leader: voting again", "term", r.CurrentTerm(), "commitIndex", r.CommitIndex())
		if err := os.Remove(filepath.Join(cfg.DataDir, joiningFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot clear the joining marker", "err", err)
		}
	}
	gate.onOpen.Store(&opened)
	n.obsCh = make(chan raft.Observation, 64)
	n.obs = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.PeerObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(n.obs)
	go n.observe()

	started = true // from here on Kill releases the lock
	join := func() error {
		if err := markJoining(cfg.DataDir); err != nil {
			_ = n.Close(ctx)
			return err
		}
		return nil
	}
	switch {
	case hasState && joining:
		log.Info("restarted while catching up: no votes until this replica holds the leader's committed log", "dataDir", cfg.DataDir)
	case hasState:
		log.Info("rejoining with existing raft state", "dataDir", cfg.DataDir)
	case cfg.Rejoin:
		log.Info("no raft state and rejoin requested: not bootstrapping; waiting for the leader to replicate the log, no votes until then", "dataDir", cfg.DataDir)
		if err := join(); err != nil {
			return nil, err
		}
	default:
		peer, term, unreached := probeCluster(ctx, trans, rc.LocalID, trans.LocalAddr(), cfg.Peers, cfg.JoinProbeTimeout)
		if peer != "" {
			// A wiped data dir restarted with its ordinary flags.
			log.Warn("no raft state but the peers already form a cluster: joining through the leader instead of bootstrapping; no votes until caught up",
				"peer", peer, "peerTerm", term, "dataDir", cfg.DataDir)
			if err := join(); err != nil {
				return nil, err
			}
			break
		}
		if len(unreached) > 0 {
			log.Warn("founding the cluster although some peers could not be asked whether they already form one", "unreached", unreached)
		}
		gate.shut.Store(false)
		if err := n.bootstrap(); err != nil {
			_ = n.Close(ctx)
			return nil, err
		}
	}
	go n.recordMembership()
	return n, nil
}

// recordMembership writes the member marker as soon as this replica holds
// Raft state (at once after a bootstrap or with existing state; once the
// leader has replicated to a rejoining or added replica).
func (n *Node) recordMembership() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		// The gate opens on a vote request too; checking here says so in
		// the log as soon as it happens.
		joining := n.gate.isShut()
		if !joining && n.raft.LastIndex() > 0 {
			if err := writeMember(n.cfg.DataDir, n.cfg.ID, n.cfg.Now()); err != nil {
				n.log.Warn("cannot record cluster membership", "err", err)
			}
			return
		}
		select {
		case <-n.closed:
			return
		case <-t.C:
		}
	}
}

func (n *Node) bootstrap() error {
	var servers []raft.Server
	self := false
	for _, p := range n.cfg.Peers {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
		if p.ID == n.cfg.ID {
			self = true
		}
	}
	if !self {
		// Not one of the expected founders: wait for the leader to add us.
		n.log.Info("no raft state and not in the expected peer set; waiting to be added by the leader")
		return nil
	}
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("bootstrap raft cluster: %w", err)
	}
	n.log.Info("bootstrapped raft cluster", "servers", len(servers))
	return nil
}

func (n *Node) observe() {
	for o := range n.obsCh {
		n.mu.Lock()
		switch d := o.Data.(type) {
		case raft.FailedHeartbeatObservation:
			if _, ok := n.failedAt[d.PeerID]; !ok {
				n.failedAt[d.PeerID] = d.LastContact
			}
		case raft.ResumedHeartbeatObservation:
			delete(n.failedAt, d.PeerID)
		case raft.PeerObservation:
			if d.Removed {
				delete(n.failedAt, d.Peer.ID)
			}
		}
		n.mu.Unlock()
	}
}

// ID returns the replica ID.
func (n *Node) ID() string { return n.cfg.ID }

// Peers returns the configured expected peers.
func (n *Node) Peers() []Peer { return append([]Peer(nil), n.cfg.Peers...) }

// Raft exposes the underlying raft for the leader loop and tests.
func (n *Node) Raft() *raft.Raft { return n.raft }

// FSM exposes the state machine.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// LeaderNotify is raft's NotifyCh: true on gaining leadership, false on
// losing it. It has exactly one consumer, the leader loop.
func (n *Node) LeaderNotify() <-chan bool { return n.notify }

// IsLeader reports whether this replica currently believes it leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Term is the current Raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// Leader returns the known leader's ID and Raft address (empty when unknown).
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderHTTPAddr maps the current leader to its API address via the peers list.
func (n *Node) LeaderHTTPAddr() string {
	id, _ := n.Leader()
	for _, p := range n.cfg.Peers {
		if p.ID == id {
			return p.HTTPAddr
		}
	}
	return ""
}

// State returns a deep copy of the replicated state as this replica has
// applied it. For a read that reflects every committed write, call Barrier
// first (leader only) or compare AppliedIndex with the leader's commit index.
func (n *Node) State() *fsm.State { return n.fsm.State() }

// View runs fn on the live state under a read lock (fn must not keep it).
func (n *Node) View(fn func(*fsm.State)) { n.fsm.View(fn) }

// Apply commits one command and returns its FSM outcome. It fails with
// ErrNotLeader on a follower. An error after the log was written means the
// outcome is unknown; commands are idempotent, so retrying is safe.
func (n *Node) Apply(ctx context.Context, c fsm.Command) error {
	return n.apply(ctx, 0, c)
}

// ApplyInTerm is Apply fenced to a leadership term: it refuses to write
// unless this replica is the leader of exactly that term.
func (n *Node) ApplyInTerm(ctx context.Context, term uint64, c fsm.Command) error {
	return n.apply(ctx, term, c)
}

func (n *Node) apply(ctx context.Context, term uint64, c fsm.Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if term != 0 && (n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term) {
		return fmt.Errorf("apply %T in term %d: %w", c, term, ErrNotLeader)
	}
	b, err := fsm.Encode(c)
	if err != nil {
		return err
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return context.DeadlineExceeded
		}
	}
	fut := n.raft.Apply(b, timeout)
	// Wait for the outcome, but not past ctx or this replica's shutdown: raft
	// can leave a future unanswered when it shuts down with the entry
	// handed to its FSM goroutine. Either way the outcome is unknown.
	if err := n.wait(ctx, fut); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
			errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return fmt.Errorf("apply %T: %w (%w)", c, ErrNotLeader, err)
		}
		return fmt.Errorf("apply %T: %w", c, err)
	}
	if resp, ok := fut.Response().(error); ok && resp != nil {
		return fmt.Errorf("apply %T: %w", c, resp)
	}
	return nil
}

// VerifyLeader confirms with a quorum that this replica still leads in term.
// The launcher calls it right before every cloud side effect, so a deposed
// leader on the minority side of a partition never reaches EC2.
func (n *Node) VerifyLeader(ctx context.Context, term uint64) error {
	if n.raft.State() != raft.Leader || (term != 0 && n.raft.CurrentTerm() != term) {
		return ErrNotLeader
	}
	errc := make(chan error, 1)
	go func() { errc <- n.raft.VerifyLeader().Error() }()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("verify leadership: %w (%w)", ErrNotLeader, err)
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-n.closed:
		return ErrNotLeader
	}
	if term != 0 && n.raft.CurrentTerm() != term {
		return ErrNotLeader
	}
	return nil
}

// Barrier waits until every entry committed before it is applied here.
func (n *Node) Barrier(ctx context.Context) error {
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := n.wait(ctx, n.raft.Barrier(timeout)); err != nil {
		return fmt.Errorf("raft barrier: %w", err)
	}
	return nil
}

// wait waits for a raft future, but not past ctx or this replica's shutdown.
func (n *Node) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.closed:
		return raft.ErrRaftShutdown
	}
}

// Snapshot forces a snapshot (tests and operators).
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raft snapshot: %w", err)
	}
	return nil
}

// Servers returns the current Raft configuration.
func (n *Node) Servers() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	return f.Configuration().Servers, nil
}

// Close leaves gracefully: a leader first hands leadership to a caught-up
// follower (so SIGTERM on the leader costs no election timeout), then Raft,
// the transport and the WAL are closed.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		if n.raft.State() == raft.Leader {
			if servers, err := n.Servers(); err == nil && len(servers) > 1 {
				start := time.Now()
				err := n.raft.LeadershipTransfer().Error()
				n.log.Info("leadership transfer on shutdown", "err", err, "took", time.Since(start))
			}
		}
		n.closeErr = n.Kill()
	})
	return n.closeErr
}

// Kill stops the replica abruptly without a leadership transfer (a crash as
// far as the others can tell; the data directory stays valid).
func (n *Node) Kill() error {
	n.killOnce.Do(func() {
		close(n.closed)
		n.killErr = n.shutdown()
	})
	return n.killErr
}

func (n *Node) shutdown() error {
	var errs []error
	if err := n.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
	}
	n.raft.DeregisterObserver(n.obs)
	if err := n.gate.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close transport: %w", err))
	}
	if err := n.wal.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close wal: %w", err))
	}
	if err := n.meta.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close wal meta: %w", err))
	}
	n.unlock()
	return errors.Join(errs...)
}
