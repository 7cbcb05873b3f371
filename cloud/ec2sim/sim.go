// Package ec2sim is an EC2 simulator that speaks the real EC2 Query protocol
// (and SSM's JSON 1.1 protocol for public AMI parameters) over HTTP, so
// aws-sdk-go-v2's service/ec2 and service/ssm clients can be pointed at it
// with a single endpoint override. It keeps a small world (VPC, subnets, a
// security group, AMIs, launch templates, instances, capacity pools, spot
// prices), runs instances through pending → running → shutting-down →
// terminated, gives every instance its own IMDSv2 endpoint on loopback, and
// can register running instances as kwok Nodes in a Kubernetes cluster.
//
// A control API (Go methods and HTTP JSON under /sim/) lets tests and demos
// interrupt spot instances, send rebalance recommendations, schedule
// maintenance, exhaust pools, publish AMI releases, throttle and slow calls.
package ec2sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/dovetail-dev/dovetail/catalog"
)

// Clock is the simulator's notion of time. Lifecycle deadlines (boot,
// termination, spot notices) are compared against it.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config configures a simulator. The zero value is usable.
type Config struct {
	// Region defaults to us-east-1; Zones to <region>a, b and c.
	Region string
	Zones  []string
	// AccountID owns launched instances and custom images (default 123456789012).
	AccountID string
	// Catalog defaults to the embedded catalogue.
	Catalog *catalog.Catalog
	// BootDelay is how long an instance stays pending (default 0: running
	// at the first look after launch).
	BootDelay time.Duration
	// TerminateDelay is how long an instance stays shutting-down.
	TerminateDelay time.Duration
	// TerminatedRetention is how long terminated instances stay visible in
	// DescribeInstances, as on EC2 (default 1h).
	TerminatedRetention time.Duration
	// DefaultPoolCapacity is how many instances each pool (type × zone ×
	// capacity type) can still launch. 0 or -1 means unlimited.
	DefaultPoolCapacity int
	// MaxSpotInstances caps live spot instances (0 = unlimited); past it
	// spot overrides fail with MaxSpotInstanceCountExceeded.
	MaxSpotInstances int
	// KubernetesVersions for which AMIs and SSM parameters exist
	// (default 1.34 … 1.37).
	KubernetesVersions []string
	// ClusterName tags the default subnets and security group (default
	// dovetail-local).
	ClusterName string
	// RESTConfig, when set, makes running instances appear as kwok Nodes.
	RESTConfig *rest.Config
	// SpotPriceInterval, when set, moves the spot price of every spot pool
	// a launch has asked for (launched from or tried) by up to ±SpotPriceVolatility (default
	// 10%) each interval, never above the on-demand price. Seed makes the
	// walk repeatable.
	SpotPriceInterval   time.Duration
	SpotPriceVolatility float64
	Seed                uint64
	// DisableIMDS skips the per-instance IMDS listeners (benchmarks).
	DisableIMDS bool
	Clock       Clock
	Logger      *slog.Logger
	// Addr is the listen address for Start (default 127.0.0.1:0).
	Addr string
}

func (c *Config) defaults() error {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if len(c.Zones) == 0 {
		c.Zones = []string{c.Region + "a", c.Region + "b", c.Region + "c"}
	}
	if c.AccountID == "" {
		c.AccountID = "123456789012"
	}
	if c.Catalog == nil {
		cat, err := catalog.Load()
		if err != nil {
			return fmt.Errorf("ec2sim: load catalogue: %w", err)
		}
		c.Catalog = cat
	}
	if c.TerminatedRetention == 0 {
		c.TerminatedRetention = time.Hour
	}
	if c.DefaultPoolCapacity == 0 {
		c.DefaultPoolCapacity = -1
	}
	if len(c.KubernetesVersions) == 0 {
		c.KubernetesVersions = []string{"1.34", "1.35", "1.36", "1.37"}
	}
	if c.ClusterName == "" {
		c.ClusterName = "dovetail-local"
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.SpotPriceVolatility <= 0 {
		c.SpotPriceVolatility = 0.1
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	return nil
}

// Sim is a running EC2 simulator. All methods are safe for concurrent use.
type Sim struct {
	cfg     Config
	log     *slog.Logger
	clock   Clock
	metrics *simMetrics
	nodes   *nodeRegistrar
	iid     iidSigner // instance identity document signer

	mu        sync.Mutex
	seq       uint64
	subnets   []*subnet
	sgs       []*securityGroup
	vpcID     string
	images    []*image
	ssmParams map[string]*ssmParam
	templates map[string]*launchTemplate // by ID
	instances map[string]*instance
	order     []string                // instance IDs in launch order
	fleets    map[string]*fleetRecord // by client token
	pools     map[poolKey]*pool
	// reservations are the capacity reservations, by id.
	reservations map[string]*capacityReservation
	// placementGroups are the placement groups, by id.
	placementGroups map[string]*placementGroup
	history         map[poolKey][]pricePoint // spot price changes after the catalogue's price
	started         time.Time
	lastDrift       time.Time
	rng             *rand.Rand
	throttle        throttleState
	latency         time.Duration
	apiFaults       map[string]APIFault // by EC2 action
	wake            chan struct{}
	closed          bool
	initErr         error

	srv      *http.Server
	listener net.Listener
	url      string
	handler  http.Handler
	stop     context.CancelFunc
	bg       sync.WaitGroup
}

// New builds a simulator with the default world. It does not listen until
// Start; Handler can be mounted elsewhere instead. A configuration error
// (an unreadable catalogue) is reported by Start and by every request.
func New(cfg Config) *Sim {
	s := &Sim{
		templates: map[string]*launchTemplate{},
		instances: map[string]*instance{},
		fleets:    map[string]*fleetRecord{},
		pools:     map[poolKey]*pool{},
		history:   map[poolKey][]pricePoint{},
		ssmParams: map[string]*ssmParam{},
		wake:      make(chan struct{}, 1),
	}
	if err := cfg.defaults(); err != nil {
		s.initErr = err
	}
	s.cfg = cfg
	s.clock = cfg.Clock
	if s.clock == nil {
		s.clock = realClock{}
	}
	s.log = cfg.Logger
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.metrics = newSimMetrics()
	s.started = s.clock.Now()
	s.lastDrift = s.started
	s.rng = rand.New(rand.NewPCG(cfg.Seed, 0x0d0e7a11))
	if s.initErr == nil {
		s.buildWorld()
	}
	s.handler = s.routes()
	if cfg.RESTConfig != nil {
		nr, err := newNodeRegistrar(cfg.RESTConfig, s.log)
		if err != nil {
			s.log.Error("node registration disabled", "err", err)
		} else {
			s.nodes = nr
		}
	}
	return s
}

// Handler serves the EC2, SSM, control (/sim/) and /metrics endpoints.
func (s *Sim) Handler() http.Handler { return s.handler }

// Start listens on Config.Addr and runs the lifecycle loop until ctx is
// cancelled or Close is called.
func (s *Sim) Start(ctx context.Context) error {
	if s.initErr != nil {
		return s.initErr
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ec2sim: listen %s: %w", s.cfg.Addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.listener = ln
	s.url = "http://" + ln.Addr().String()
	s.stop = cancel
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Unlock()
	s.bg.Add(2)
	go func() {
		defer s.bg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("ec2sim server stopped", "err", err)
		}
	}()
	go func() {
		defer s.bg.Done()
		s.loop(ctx)
	}()
	if s.nodes != nil {
		s.nodes.start(ctx, &s.bg)
	}
	s.log.Info("ec2sim listening", "url", s.url, "region", s.cfg.Region, "zones", s.cfg.Zones)
	return nil
}

// URL is the base URL to use as the EC2 and SSM endpoint ("" before Start).
func (s *Sim) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Region is the simulated region.
func (s *Sim) Region() string { return s.cfg.Region }

// AccountID is the account in the simulator's identity documents.
func (s *Sim) AccountID() string { return s.cfg.AccountID }

// Zones are the simulated availability zones.
func (s *Sim) Zones() []string { return append([]string(nil), s.cfg.Zones...) }

// Close stops the server, the lifecycle loop and every IMDS listener.
func (s *Sim) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	srv, stop := s.srv, s.stop
	var imds []*imdsServer
	for _, in := range s.instances {
		if in.imds != nil {
			imds = append(imds, in.imds)
			in.imds = nil
		}
	}
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
	for _, m := range imds {
		m.close()
	}
	s.bg.Wait()
}

// loop advances instance lifecycles at their deadlines. Every API call also
// advances them first, so a test with a fake clock sees the state its clock
// implies without waiting for the loop.
func (s *Sim) loop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := s.Reconcile()
		d := 250 * time.Millisecond
		if !next.IsZero() {
			if until := next.Sub(s.clock.Now()); until < d {
				d = until
			}
		}
		if d < time.Millisecond {
			d = time.Millisecond
		}
		t.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

func (s *Sim) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Reconcile applies every lifecycle transition that is due by the clock and
// returns the next deadline (zero when none). Tests with a fake clock call
// it after moving the clock.
func (s *Sim) Reconcile() time.Time {
	s.mu.Lock()
	next, fx := s.stepLocked(s.clock.Now())
	s.mu.Unlock()
	fx.run(s)
	return next
}

// effects are side effects decided under the lock and carried out after it
// is released (network listeners, Kubernetes calls).
type effects struct {
	startIMDS []*instance
	stopIMDS  []*imdsServer
	register  []nodeSpec
	remove    []string
}

func (fx *effects) run(s *Sim) {
	for _, m := range fx.stopIMDS {
		m.close()
	}
	for _, in := range fx.startIMDS {
		s.startIMDS(in)
	}
	if s.nodes != nil {
		for _, n := range fx.register {
			s.nodes.enqueue(nodeOp{create: true, spec: n})
		}
		for _, name := range fx.remove {
			s.nodes.enqueue(nodeOp{name: name})
		}
	}
}

func (s *Sim) stepLocked(now time.Time) (time.Time, effects) {
	var fx effects
	var next time.Time
	soonest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if iv := s.cfg.SpotPriceInterval; iv > 0 {
		for !now.Before(s.lastDrift.Add(iv)) {
			s.lastDrift = s.lastDrift.Add(iv)
			s.driftSpotPricesLocked(s.lastDrift)
		}
		soonest(s.lastDrift.Add(iv))
	}
	soonest(s.expireReservationsLocked(now))
	var drop []string
	for _, id := range s.order {
		in := s.instances[id]
		if in == nil {
			continue
		}
		for changed := true; changed; {
			changed = false
			switch in.state {
			case statePending:
				if !now.Before(in.runAt) {
					in.state = stateRunning
					in.stateReason = ""
					changed = true
					if s.nodes != nil {
						fx.register = append(fx.register, s.nodeSpecLocked(in))
						in.nodeRegistered = true
					}
				} else {
					soonest(in.runAt)
				}
			case stateRunning:
				if in.action != nil && !now.Before(in.action.deadline) {
					s.beginTerminateLocked(in, now, "Server.SpotInstanceTermination", "Server.SpotInstanceTermination: Spot instance termination")
					changed = true
				} else if in.action != nil {
					soonest(in.action.deadline)
				}
				// Retirement and stop events take the instance away at
				// NotBefore (the simulator has no stopped state, so a stop
				// ends like a retirement); reboots only complete.
				for _, e := range in.events {
					if e.state != "active" {
						continue
					}
					if now.Before(e.notBefore) {
						soonest(e.notBefore)
						continue
					}
					e.state = "completed"
					e.desc = "[Completed] " + e.desc
					if in.state == stateRunning && (e.code == "instance-retirement" || e.code == "instance-stop") {
						s.beginTerminateLocked(in, now, "Server.ScheduledStop", "Server.ScheduledStop: Stopped due to scheduled retirement")
						changed = true
					}
				}
			case stateShuttingDown:
				if !now.Before(in.terminateAt) {
					in.state = stateTerminated
					changed = true
					if in.imds != nil {
						fx.stopIMDS = append(fx.stopIMDS, in.imds)
						in.imds = nil
					}
					if in.nodeRegistered && s.nodes != nil {
						fx.remove = append(fx.remove, in.privateDNS)
						in.nodeRegistered = false
					}
					s.releasePoolLocked(in)
				} else {
					soonest(in.terminateAt)
				}
			case stateTerminated:
				gone := in.terminateAt.Add(s.cfg.TerminatedRetention)
				if !now.Before(gone) {
					drop = append(drop, id)
				} else {
					soonest(gone)
				}
			}
		}
		if in.state != stateTerminated && in.imds == nil && !in.imdsStarting && !s.cfg.DisableIMDS && !s.closed {
			in.imdsStarting = true
			fx.startIMDS = append(fx.startIMDS, in)
		}
	}
	if len(drop) > 0 {
		gone := map[string]bool{}
		for _, id := range drop {
			gone[id] = true
			delete(s.instances, id)
		}
		kept := s.order[:0]
		for _, id := range s.order {
			if !gone[id] {
				kept = append(kept, id)
			}
		}
		s.order = kept
	}
	s.updateStateGaugeLocked()
	return next, fx
}

func (s *Sim) beginTerminateLocked(in *instance, now time.Time, code, msg string) {
	if in.state == stateShuttingDown || in.state == stateTerminated {
		return
	}
	in.state = stateShuttingDown
	in.stateReason = code
	in.stateReasonMsg = msg
	in.terminateAt = now.Add(s.cfg.TerminateDelay)
}

func (s *Sim) nextID(prefix string) string {
	s.seq++
	// 17 hex digits like modern EC2 IDs; the counter keeps them unique and
	// ordered, the constant keeps them looking real.
	return fmt.Sprintf("%s-%017x", prefix, 0x0a1b2c3d0000000+s.seq)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// driftSpotPricesLocked moves the spot price of every spot pool a launch
// has asked for, in a stable order so a seeded walk repeats.
func (s *Sim) driftSpotPricesLocked(at time.Time) {
	var keys []poolKey
	for k := range s.pools {
		if k.capType == "spot" {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].itype != keys[j].itype {
			return keys[i].itype < keys[j].itype
		}
		return keys[i].zone < keys[j].zone
	})
	for _, k := range keys {
		cur, ok := s.spotPriceLocked(k.itype, k.zone)
		if !ok {
			continue
		}
		next := cur * (1 + s.cfg.SpotPriceVolatility*(2*s.rng.Float64()-1))
		if t, ok := s.catalogType(k.itype); ok {
			if od, ok := t.OnDemandPrice(s.cfg.Region); ok && next > od {
				next = od
			}
		}
		next = math.Round(next*1e6) / 1e6
		if next <= 0 || next == cur {
			continue
		}
		hk := poolKey{k.itype, k.zone, "spot"}
		s.history[hk] = append(s.history[hk], pricePoint{at: at.Truncate(time.Second), price: next})
	}
}
