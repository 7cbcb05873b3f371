// Package coordinator wires one coordinator replica: Raft (raftnode), the
// leader loop (leader), the launcher, the HTTP API and the gossip pool, from
// a Config. Start returns a handle (tests run several in one process); Run
// blocks until the context ends and then leaves gracefully.
package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/tools/record"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/cloudmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/eventdedupe"
	"github.com/dovetail-dev/dovetail/coordinator/fleetmetrics"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/karpentermetrics"
	"github.com/dovetail-dev/dovetail/coordinator/launcher"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/gossip"
	"github.com/dovetail-dev/dovetail/metricsdoc"
	"github.com/dovetail-dev/dovetail/report"
)

// LauncherOptions tune the launcher (zero values take its defaults).
type LauncherOptions struct {
	Interval         time.Duration
	LeakGrace        time.Duration
	OrphanClaimGrace time.Duration
	ICETTL           time.Duration
	// ICE is the replicated insufficient-capacity cache the cloud provider
	// was built with (ec2.Config.Offerings: launcher.NewICEStore()); the
	// launcher binds it to this replica's state. Nil: the provider keeps
	// its own cache and sees only this replica's refusals.
	ICE  *launcher.ICEStore
	Hook func(ctx context.Context, step launcher.Step, token string) error
}

// Config configures a replica.
type Config struct {
	Raft raftnode.Config
	// HTTPAddr is the API listen address (":8080"; "127.0.0.1:0" in tests).
	HTTPAddr string
	// Cloud enables the launcher; nil runs a replica without cloud access.
	Cloud  launcher.CloudProvider
	Claims launcher.Claims // optional Kubernetes side of launches
	// Events records Events on NodeClaims that cannot launch (Karpenter's
	// InsufficientCapacityError, NodeClassNotReady); nil records none.
	Events      record.EventRecorder
	NodeClasses launcher.NodeClasses // when Claims is nil
	Launcher    LauncherOptions
	// NodeGrace is the grace period after a leader change before nodes can
	// be judged unhealthy or gone (default 2m).
	NodeGrace time.Duration
	// Components are leader-only work run next to the launcher.
	Components []leader.Named
	// Setup builds leader-only components that need the runtime (store,
	// launcher). Called once, after Raft and the launcher exist.
	Setup func(rt *Runtime) ([]leader.Named, error)
	// Gossip, when set, joins the memberlist pool as a coordinator.
	Gossip *gossip.Config
	// MembershipInterval is how often the leader reconciles Raft membership.
	MembershipInterval time.Duration
	// Attest, when set, requires node attestation for reports (api.AttestConfig;
	// its Registerer defaults to Registry).
	Attest *api.AttestConfig
	// ExtraHandlers are mounted on the API mux (pattern → handler).
	ExtraHandlers map[string]http.Handler
	// APITLS, when set, serves the API over TLS (tlsid.CertFiles'
	// ServerTLSConfig); ForwardClient then must trust the other replicas'
	// certificates (tlsid.CoordinatorClient) since followers forward to the
	// leader over it.
	APITLS        *tls.Config
	ForwardClient *http.Client
	// APIAuth authenticates and authorises people and tools on the API
	// (api.KubeAuth); nil leaves the API open (--insecure-api).
	APIAuth     api.Authorizer
	MetricsOpen bool
	// Registry receives all metrics; nil creates one per replica.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	Now      func() time.Time
}

// Runtime is what Setup gets to build leader-only components.
type Runtime struct {
	Store    *raftnode.Node
	Launcher *launcher.Launcher // nil without a cloud
	// Cloud is Config.Cloud (nil without a cloud): leader-only components
	// read instance types through it (cloud/ec2.Provider has InstanceTypes).
	Cloud    launcher.CloudProvider
	Log      *slog.Logger
	Registry prometheus.Registerer
	// Now is the coordinator's clock.
	Now func() time.Time
	// CloudMetrics measures cloud calls as karpenter_cloudprovider_*.
	CloudMetrics *cloudmetrics.Metrics
	// DrainMetrics counts the leader's evictions as karpenter_pods_* (a
	// drain.Observer).
	DrainMetrics *karpentermetrics.Drain

	onPanic []func(context.Context, *leader.Panic)
}

// OnComponentPanic adds f to what is told of a recovered leader component
// panic (after the loop logged and counted it), e.g. to record a Warning
// Event on the object that caused it.
func (rt *Runtime) OnComponentPanic(f func(ctx context.Context, p *leader.Panic)) {
	rt.onPanic = append(rt.onPanic, f)
}

// Coordinator is a running replica.
type Coordinator struct {
	cfg      Config
	log      *slog.Logger
	node     *raftnode.Node
	loop     *leader.Loop
	launcher *launcher.Launcher
	api      *api.Handler
	srv      *http.Server
	ln       net.Listener
	pool     *gossip.Pool
	reg      prometheus.Registerer
	rec      *metricsdoc.Recorder

	cancel   context.CancelFunc
	karp     *karpentermetrics.Collector
	loopDone chan struct{}
	once     sync.Once
	closeErr error
}

// Start starts a replica.
func Start(ctx context.Context, cfg Config) (*Coordinator, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// One clock: Raft's membership records and gossip's departures count
	// time on the replica's clock unless a test gives them their own.
	if cfg.Raft.Now == nil {
		cfg.Raft.Now = cfg.Now
	}
	if cfg.Gossip != nil && cfg.Gossip.Now == nil {
		g := *cfg.Gossip
		g.Now = cfg.Now
		cfg.Gossip = &g
	}
	if cfg.NodeGrace == 0 {
		cfg.NodeGrace = 2 * time.Minute
	}
	// Everything registers through rec, so the metrics table in the README
	// is generated from what a replica really serves (metricsdoc).
	var rec *metricsdoc.Recorder
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		rec = metricsdoc.NewRecorder(cfg.Registry)
		rec.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	} else {
		rec = metricsdoc.NewRecorder(cfg.Registry)
	}
	cfg.Raft.Logger = cfg.Logger
	log := cfg.Logger.With("replica", cfg.Raft.ID)
	c := &Coordinator{cfg: cfg, log: log, reg: rec, rec: rec}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("api listen on %s: %w", cfg.HTTPAddr, err)
	}
	c.ln = ln
	node, err := raftnode.Start(ctx, cfg.Raft)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	c.node = node
	c.registerMetrics()

	// karpenter_cloudprovider_*: the launcher's calls and the leader-only
	// components' instance-type listings, exposed while leading.
	cloudMetrics := cloudmetrics.New(node.IsLeader)
	rec.MustRegister(cloudMetrics)
	// karpenter_pods_{eviction_requests,drained}_total: the disruption
	// drains' evictions, exposed while leading.
	drainMetrics := karpentermetrics.NewDrain(node.IsLeader)
	rec.MustRegister(drainMetrics)
	var comps []leader.Named
	if cfg.Cloud != nil {
		if cfg.Launcher.ICE == nil {
			log.Warn("LauncherOptions.ICE is unset: the cloud provider does not read the replicated ICE cache and a new leader retries offerings the last one was refused")
		}
		l, err := launcher.New(launcher.Config{
			Cloud: cfg.Cloud, Store: node, Claims: cfg.Claims, NodeClasses: cfg.NodeClasses,
			ReplicaID: cfg.Raft.ID, Interval: cfg.Launcher.Interval, LeakGrace: cfg.Launcher.LeakGrace,
			OrphanClaimGrace: cfg.Launcher.OrphanClaimGrace, NodeGrace: cfg.NodeGrace,
			ICETTL: cfg.Launcher.ICETTL, ICE: cfg.Launcher.ICE, Now: cfg.Now, Hook: cfg.Launcher.Hook,
			Log: log, Registry: rec, Events: launchEvents(cfg.Events, cfg.Now), CloudMetrics: cloudMetrics,
		})
		if err != nil {
			_ = node.Kill()
			_ = ln.Close()
			return nil, err
		}
		c.launcher = l
		comps = append(comps, leader.Named{Name: "launcher", Component: l})
	}
	comps = append(comps, leader.Named{Name: "membership", Component: leader.Func(func(ctx context.Context, _ uint64) error {
		return node.ReconcileMembership(ctx, cfg.MembershipInterval)
	})})
	comps = append(comps, cfg.Components...)
	rt := &Runtime{Store: node, Launcher: c.launcher, Cloud: cfg.Cloud, Log: log, Registry: rec, Now: cfg.Now, CloudMetrics: cloudMetrics, DrainMetrics: drainMetrics}
	if cfg.Setup != nil {
		extra, err := cfg.Setup(rt)
		if err != nil {
			_ = node.Kill()
			_ = ln.Close()
			return nil, fmt.Errorf("set up leader components: %w", err)
		}
		comps = append(comps, extra...)
	}
	c.loop = &leader.Loop{
		Raft: node, Components: comps, Log: log, Registry: rec,
		OnPanic: func(ctx context.Context, p *leader.Panic) {
			for _, f := range rt.onPanic {
				f(ctx, p)
			}
		},
		OnElected: func(ctx context.Context, term uint64) error {
			return node.ApplyInTerm(ctx, term, fsm.LeaderEpoch{Term: term, Leader: cfg.Raft.ID, At: cfg.Now()})
		},
	}
	lctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.loopDone = make(chan struct{})
	go func() {
		defer close(c.loopDone)
		_ = c.loop.Run(lctx)
	}()
	// Every replica follows the replicated state for the karpenter_*
	// counters (the leader alone serves them), so they count what happens
	// whether or not anyone scrapes, and a new leader keeps counting.
	go c.karp.Watch(lctx, node.FSM().Changed)

	if cfg.Attest != nil && cfg.Attest.Registerer == nil {
		ac := *cfg.Attest
		ac.Registerer = cfg.Registry
		cfg.Attest = &ac
	}
	c.api = api.New(api.Config{Backend: node, Gatherer: cfg.Registry, Registerer: cfg.Registry, NodeGrace: cfg.NodeGrace,
		Extra: cfg.ExtraHandlers, Attest: cfg.Attest, Auth: cfg.APIAuth, MetricsOpen: cfg.MetricsOpen,
		Client: cfg.ForwardClient, ForwardTLS: cfg.APITLS != nil, Now: cfg.Now, Log: log})
	c.srv = &http.Server{Handler: c.api, ReadHeaderTimeout: 10 * time.Second}
	apiLn := ln
	if cfg.APITLS != nil {
		apiLn = tls.NewListener(ln, cfg.APITLS)
	}
	go func() {
		if err := c.srv.Serve(apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("api server stopped", "err", err)
		}
	}()

	if cfg.Gossip != nil {
		gc := *cfg.Gossip
		if gc.Name == "" {
			gc.Name = cfg.Raft.ID
		}
		if gc.Logger == nil {
			gc.Logger = cfg.Logger
		}
		if gc.Registry == nil {
			gc.Registry = rec
		}
		httpAddr := c.HTTPAddr()
		gc.Meta = func() report.Meta { return report.Meta{Role: "coordinator", RPCAddr: httpAddr} }
		pool, err := gossip.Start(ctx, gc)
		if err != nil {
			// Gossip carries liveness only; the replica is still useful without it.
			log.Error("gossip pool unavailable", "err", err)
		} else {
			c.pool = pool
		}
	}
	log.Info("coordinator replica started", "raft", cfg.Raft.BindAddr, "http", c.HTTPAddr())
	return c, nil
}

func (c *Coordinator) registerMetrics() {
	n := c.node
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dovetail_raft_is_leader", Help: "1 when this replica leads."},
			func() float64 {
				if n.IsLeader() {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dovetail_raft_term", Help: "Current Raft term."},
			func() float64 { return float64(n.Term()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dovetail_raft_applied_index", Help: "Last applied Raft index."},
			func() float64 { return float64(n.Raft().AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dovetail_raft_commit_index", Help: "Raft commit index."},
			func() float64 { return float64(n.Raft().CommitIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dovetail_open_launch_intents", Help: "Launch intents not yet resolved."},
			func() float64 {
				var k int
				n.View(func(s *fsm.State) {
					for _, in := range s.Intents {
						if in.Open() {
							k++
						}
					}
				})
				return float64(k)
			}),
	}
	// Karpenter's own metric names, computed from the same state, so a
	// Karpenter operator's dashboards and alerts work unchanged.
	c.karp = karpentermetrics.New(n, c.cfg.Now)
	gauges = append(gauges, c.karp, karpentermetrics.BuildInfo(), fleetmetrics.New(n))
	for _, g := range gauges {
		if err := c.reg.Register(g); err != nil {
			c.log.Warn("register metric", "err", err)
		}
	}
}

// Metrics lists every metric registered through this replica so far (the
// leader-only ones once it has led a term).
func (c *Coordinator) Metrics() []metricsdoc.Entry { return c.rec.Entries() }

// Node returns the Raft replica.
func (c *Coordinator) Node() *raftnode.Node { return c.node }

// Registry holds the replica's metrics.
func (c *Coordinator) Registry() *prometheus.Registry { return c.cfg.Registry }

// Launcher returns the launcher (nil without a cloud).
func (c *Coordinator) Launcher() *launcher.Launcher { return c.launcher }

// Loop returns the leader loop.
func (c *Coordinator) Loop() *leader.Loop { return c.loop }

// Gossip returns the gossip pool member (nil when gossip is off or failed).
func (c *Coordinator) Gossip() *gossip.Pool { return c.pool }

// HTTPAddr returns the API's listen address.
func (c *Coordinator) HTTPAddr() string { return c.ln.Addr().String() }

// Close leaves gracefully: stop leader work, hand leadership over, stop the
// API and leave the gossip pool.
func (c *Coordinator) Close(ctx context.Context) error {
	c.once.Do(func() {
		var errs []error
		c.cancel()
		<-c.loopDone
		if err := c.node.Close(ctx); err != nil {
			errs = append(errs, err)
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := c.srv.Shutdown(sctx); errors.Is(err, context.DeadlineExceeded) {
			// Still open after 5 s: a scraper's keep-alive, or a connection
			// that sent no request yet (net/http waits up to 5 s for those
			// to count as idle). Close them: a SIGTERM is a clean exit,
			// not a failure, and the pod's grace period is not ours to spend.
			c.log.Warn("api connections still open after 5 s; closing them", "err", err)
			if err := c.srv.Close(); err != nil {
				errs = append(errs, fmt.Errorf("api close: %w", err))
			}
		} else if err != nil {
			errs = append(errs, fmt.Errorf("api shutdown: %w", err))
		}
		if c.pool != nil {
			if err := c.pool.Leave(5 * time.Second); err != nil {
				errs = append(errs, fmt.Errorf("gossip leave: %w", err))
			}
			if err := c.pool.Shutdown(); err != nil {
				errs = append(errs, fmt.Errorf("gossip shutdown: %w", err))
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// Kill stops the replica abruptly, as a crash would (tests).
func (c *Coordinator) Kill() {
	c.once.Do(func() {
		_ = c.node.Kill()
		c.cancel()
		<-c.loopDone
		_ = c.srv.Close()
		if c.pool != nil {
			_ = c.pool.Shutdown()
		}
	})
}

// Run starts a replica and blocks until ctx is done, then closes it.
func Run(ctx context.Context, cfg Config) error {
	c, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Close(cctx)
}

// launchEvents wraps the NodeClaim Event recorder with Karpenter's dedupe,
// on the replica's clock; nil stays nil.
func launchEvents(rec record.EventRecorder, now func() time.Time) launcher.EventPublisher {
	if rec == nil {
		return nil
	}
	return eventdedupe.New(rec, funcClock(now))
}

// funcClock is a clock.PassiveClock reading Config.Now.
type funcClock func() time.Time

func (f funcClock) Now() time.Time                  { return f() }
func (f funcClock) Since(t time.Time) time.Duration { return f().Sub(t) }
