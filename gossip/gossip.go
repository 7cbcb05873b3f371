// Package gossip is the memberlist pool that node agents and coordinators
// share. It carries liveness and a small metadata record (report.Meta) per
// member; authoritative reports never travel here, they go over the
// coordinator's report RPC.
//
// The pool is encrypted with a keyring (the first key is primary) unless
// Config.Dev is set, and separated from other clusters by memberlist's Label,
// so two clusters on one network never merge.
package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/report"
)

// Member states.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// EventType says what happened to a member.
type EventType string

// Event types.
const (
	EventJoin   EventType = "join"
	EventLeave  EventType = "leave"
	EventUpdate EventType = "update"
)

// Member is one node of the pool as this process sees it.
type Member struct {
	Name string
	Addr string // host:port of its gossip listener
	Meta report.Meta
	// State is alive, dead or left. memberlist v0.7 does not tell its
	// delegates about suspicion, so suspect members still read alive.
	State string
}

// Event is a membership change.
type Event struct {
	Type   EventType
	Member Member
}

// Config configures a pool member.
type Config struct {
	// Name must be unique in the pool (node name or coordinator id).
	Name string
	// BindAddr/BindPort is where memberlist listens (UDP and TCP). Port 0
	// picks a free port; Pool.LocalAddr tells which.
	BindAddr string
	BindPort int
	// AdvertiseAddr/AdvertisePort is what others dial; empty means the bind address.
	AdvertiseAddr string
	AdvertisePort int
	// Seeds are host:port of members to join. Unreachable seeds are retried
	// in the background: a node must come up even when no coordinator does.
	Seeds []string
	// Label separates clusters: packets with another label are dropped.
	Label string
	// Keys is the keyring; the first key is the primary (used to encrypt).
	// Each must be 16, 24 or 32 bytes. Required unless Dev.
	Keys [][]byte
	// Dev allows an unencrypted pool and uses memberlist's fast local timings.
	Dev bool
	// Meta returns the record to advertise; called on every alive broadcast.
	Meta func() report.Meta
	// Logger receives memberlist's own log lines at their level.
	Logger *slog.Logger
	// Registry, when set, receives the pool's metrics.
	Registry prometheus.Registerer

	// RejoinInterval is how often a member that knows no one else retries
	// its seeds. Zero means 10 s.
	RejoinInterval time.Duration
	// EventBuffer is the capacity of the Events channel. Zero means 256.
	EventBuffer int
	// Now is the clock of departures and their retention (the process's
	// one clock); default time.Now. memberlist's own timers stay its own.
	Now func() time.Time
}

// Pool is a running member of the gossip pool.
type Pool struct {
	cfg     Config
	ml      *memberlist.Memberlist
	mlReady atomic.Pointer[memberlist.Memberlist]
	log     *slog.Logger
	events  chan Event
	metrics *metrics

	// queue carries the leave-intent message: memberlist's public Node
	// does not say whether a departed member left or died, so a leaving
	// member announces itself first.
	queue *memberlist.TransmitLimitedQueue

	mu      sync.Mutex
	table   map[string]Member    // every member seen, with its last state
	leaving map[string]time.Time // members that announced a graceful leave
	goneAt  map[string]time.Time // when a departed member left the pool
	closed  bool

	stop chan struct{}
	kick chan struct{} // membership changed: refresh gauges
	wg   sync.WaitGroup
}

// Start creates the local member, tries its seeds once and keeps retrying
// them in the background (until ctx is done or Shutdown) while it is alone.
func Start(ctx context.Context, cfg Config) (*Pool, error) {
	if cfg.Name == "" {
		return nil, errors.New("gossip: Name is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Keys) == 0 && !cfg.Dev {
		return nil, errors.New("gossip: a keyring (Keys) is required unless Dev is set")
	}
	for i, k := range cfg.Keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return nil, fmt.Errorf("gossip: key %d: %w", i, err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = 10 * time.Second
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = 256
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	lg := cfg.Logger.With("component", "gossip", "member", cfg.Name)

	p := &Pool{
		cfg:     cfg,
		log:     lg,
		events:  make(chan Event, cfg.EventBuffer),
		table:   map[string]Member{},
		goneAt:  map[string]time.Time{},
		leaving: map[string]time.Time{},
		stop:    make(chan struct{}),
		kick:    make(chan struct{}, 1),
		queue:   &memberlist.TransmitLimitedQueue{RetransmitMult: 4},
	}
	// memberlist may gossip before Create returns, so the queue reads the
	// list through an atomic pointer.
	p.queue.NumNodes = func() int {
		if ml := p.mlReady.Load(); ml != nil {
			return ml.NumMembers()
		}
		return 1
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	p.metrics = m

	var mc *memberlist.Config
	if cfg.Dev {
		mc = memberlist.DefaultLocalConfig()
	} else {
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if cfg.AdvertiseAddr == "" && cfg.BindAddr != "0.0.0.0" && cfg.BindAddr != "::" {
		// Without this memberlist would pick a private interface address,
		// which is wrong when the caller bound to a specific address.
		mc.AdvertiseAddr = cfg.BindAddr
	}
	mc.Label = cfg.Label
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys[1:], cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.Delegate = (*delegate)(p)
	mc.Events = (*eventDelegate)(p)
	mc.Logger = log.New(&logBridge{log: lg}, "", 0)

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: create memberlist on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	p.mlReady.Store(ml)
	p.ml = ml
	p.updateGauges()

	if len(cfg.Seeds) > 0 {
		if n, err := p.join(); err != nil {
			lg.Warn("could not join any seed yet; retrying in background", "seeds", cfg.Seeds, "err", err)
		} else {
			lg.Info("joined gossip pool", "contacted", n)
		}
	}
	p.wg.Add(1)
	go p.rejoinLoop(ctx)
	return p, nil
}

// LocalAddr is the host:port others reach this member on.
func (p *Pool) LocalAddr() string {
	n := p.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

func (p *Pool) join() (int, error) {
	n, err := p.ml.Join(p.cfg.Seeds)
	if err != nil {
		p.metrics.joins.WithLabelValues("error").Inc()
		return n, fmt.Errorf("gossip: join %v: %w", p.cfg.Seeds, err)
	}
	p.metrics.joins.WithLabelValues("ok").Inc()
	return n, nil
}

// rejoinLoop retries the seeds while this member is alone, so a node that
// started before every coordinator (or was partitioned) finds its way back.
func (p *Pool) rejoinLoop(ctx context.Context) {
	defer p.wg.Done()
	// Jitter so that a fleet restarted together does not stampede a seed.
	next := func() time.Duration { return p.cfg.RejoinInterval/2 + rand.N(p.cfg.RejoinInterval/2+1) }
	t := time.NewTimer(next())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.stop:
			return
		case <-p.kick:
			p.updateGauges()
			continue
		case <-t.C:
			t.Reset(next())
		}
		p.prune(p.cfg.Now().Add(-DepartedRetention))
		p.updateGauges()
		if len(p.cfg.Seeds) == 0 || p.ml.NumMembers() > 1 {
			continue
		}
		if _, err := p.join(); err != nil {
			p.log.Debug("rejoin failed", "err", err)
		} else {
			p.log.Info("rejoined gossip pool")
		}
	}
}

// DepartedRetention is how long Members keeps listing a dead or left member.
const DepartedRetention = time.Hour

func (p *Pool) prune(before time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, at := range p.goneAt {
		if at.Before(before) {
			delete(p.goneAt, name)
			delete(p.table, name)
			delete(p.leaving, name)
		}
	}
}

// Members lists live members (including this one) and the members seen to
// die or leave since this member started. It reads a table kept from
// memberlist's callbacks (copied while memberlist holds its lock), because
// memberlist's own Members() hands out nodes it keeps mutating.
func (p *Pool) Members() []Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Member, 0, len(p.table))
	for _, m := range p.table {
		out = append(out, m)
	}
	return out
}

// Events delivers membership changes. The channel is buffered; when the
// consumer falls behind, events are dropped (and counted) rather than
// stalling memberlist's packet loop. Members() is always authoritative.
// It is closed by Shutdown.
func (p *Pool) Events() <-chan Event { return p.events }

// UpdateMeta re-reads Config.Meta and broadcasts it, waiting up to timeout
// for the broadcast to go out.
func (p *Pool) UpdateMeta(timeout time.Duration) error {
	if err := p.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("gossip: update meta: %w", err)
	}
	return nil
}

// Leave announces departure, waiting up to timeout. The member keeps
// listening until Shutdown.
func (p *Pool) Leave(timeout time.Duration) error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return errors.New("gossip: leave after shutdown")
	}
	start := time.Now()
	if p.ml.NumMembers() > 1 {
		b := &leaveBroadcast{msg: append([]byte(leavePrefix), p.cfg.Name...), done: make(chan struct{})}
		p.queue.QueueBroadcast(b)
		select {
		case <-b.done:
		case <-time.After(timeout / 2):
		}
	}
	if err := p.ml.Leave(max(timeout-time.Since(start), 10*time.Millisecond)); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// Shutdown stops the member without announcing (call Leave first for a
// graceful exit) and closes the Events channel. It is safe to call twice.
func (p *Pool) Shutdown() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	err := p.ml.Shutdown()
	p.wg.Wait()
	// memberlist's delegates may still be mid-call; emit checks closed under mu.
	p.mu.Lock()
	close(p.events)
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

func (p *Pool) emit(t EventType, n *memberlist.Node) {
	m := toMember(n, p.log)
	p.mu.Lock()
	defer p.mu.Unlock()
	if t == EventLeave {
		m.State = StateDead
		if _, ok := p.leaving[m.Name]; ok {
			m.State = StateLeft
		}
		p.goneAt[m.Name] = p.cfg.Now()
	} else {
		delete(p.goneAt, m.Name)
		if t == EventJoin {
			delete(p.leaving, m.Name)
		}
	}
	p.table[m.Name] = m
	if p.closed {
		return
	}
	select {
	case p.events <- Event{Type: t, Member: m}:
		p.metrics.events.WithLabelValues(string(t)).Inc()
	default:
		p.metrics.dropped.Inc()
	}
}

func (p *Pool) updateGauges() {
	counts := map[string]int{StateAlive: 0, StateSuspect: 0, StateDead: 0, StateLeft: 0}
	for _, m := range p.Members() {
		counts[m.State]++
	}
	for s, c := range counts {
		p.metrics.members.WithLabelValues(s).Set(float64(c))
	}
}

func toMember(n *memberlist.Node, lg *slog.Logger) Member {
	m := Member{
		Name:  n.Name,
		Addr:  net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		State: StateAlive,
	}
	if len(n.Meta) > 0 {
		meta, err := report.DecodeMeta(n.Meta)
		if err != nil {
			// A peer on another version may send something we cannot read;
			// keep the member (liveness still counts) with empty meta.
			lg.Debug("undecodable gossip meta", "peer", n.Name, "err", err)
		} else {
			m.Meta = meta
		}
	}
	return m
}

// delegate supplies this member's metadata; user messages are not used.
type delegate Pool

func (d *delegate) NodeMeta(limit int) []byte {
	if d.cfg.Meta == nil {
		return nil
	}
	b, err := d.cfg.Meta().Encode()
	if err != nil || len(b) > limit {
		// Never break the alive broadcast over metadata: advertise nothing.
		d.log.Error("gossip meta not advertised", "err", err, "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

// NotifyMsg records leave intents; it must not block memberlist's packet loop.
func (d *delegate) NotifyMsg(b []byte) {
	if name, ok := strings.CutPrefix(string(b), leavePrefix); ok && name != "" {
		d.mu.Lock()
		now := d.cfg.Now()
		d.leaving[name] = now
		// Bound the map: intents older than an hour are irrelevant.
		if len(d.leaving) > 4096 {
			for n, at := range d.leaving {
				if now.Sub(at) > time.Hour {
					delete(d.leaving, n)
				}
			}
		}
		d.mu.Unlock()
	}
}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}
func (d *delegate) LocalState(join bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

const leavePrefix = "dovetail-leave:"

type leaveBroadcast struct {
	msg  []byte
	done chan struct{}
	once sync.Once
}

func (b *leaveBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *leaveBroadcast) Message() []byte                       { return b.msg }
func (b *leaveBroadcast) Finished()                             { b.once.Do(func() { close(b.done) }) }

type eventDelegate Pool

func (e *eventDelegate) NotifyJoin(n *memberlist.Node) {
	(*Pool)(e).emit(EventJoin, n)
	(*Pool)(e).updateGaugesAsync()
}
func (e *eventDelegate) NotifyLeave(n *memberlist.Node) {
	(*Pool)(e).emit(EventLeave, n)
	(*Pool)(e).updateGaugesAsync()
}
func (e *eventDelegate) NotifyUpdate(n *memberlist.Node) { (*Pool)(e).emit(EventUpdate, n) }

// updateGaugesAsync refreshes the member gauges outside memberlist's node
// lock (the delegate is called while memberlist holds it, and Members()
// takes it again).
func (p *Pool) updateGaugesAsync() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// logBridge turns memberlist's "[LEVEL] memberlist: msg" lines into slog records.
type logBridge struct{ log *slog.Logger }

func (b *logBridge) Write(line []byte) (int, error) {
	s := string(bytes.TrimSpace(line))
	lvl := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{
		"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError,
	} {
		if strings.HasPrefix(s, prefix) {
			lvl = l
			s = strings.TrimSpace(strings.TrimPrefix(s, prefix))
			break
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	b.log.Log(context.Background(), lvl, s)
	return len(line), nil
}

var _ io.Writer = (*logBridge)(nil)

type metrics struct {
	members *prometheus.GaugeVec
	events  *prometheus.CounterVec
	dropped prometheus.Counter
	joins   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dovetail_gossip_members", Help: "Gossip pool members by state, as this member sees them.",
		}, []string{"state"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_gossip_events_total", Help: "Membership events delivered.",
		}, []string{"type"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dovetail_gossip_events_dropped_total", Help: "Membership events dropped because the consumer was behind.",
		}),
		joins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_gossip_join_attempts_total", Help: "Attempts to join the seeds, by result.",
		}, []string{"result"}),
	}
	// Every state's series exists from the start: an alert on
	// dovetail_gossip_members must not read "no data" in the window before
	// the first membership change is counted.
	for _, s := range []string{StateAlive, StateSuspect, StateDead, StateLeft} {
		m.members.WithLabelValues(s).Set(0)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.members, m.events, m.dropped, m.joins} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("gossip: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
