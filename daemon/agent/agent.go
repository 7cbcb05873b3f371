// Package agent is the node agent's main loop: it resolves which Node it
// runs on, watches IMDS and acts on interruptions (taint, cordon, report,
// drain), runs health checks into NodeConditions and Events, self-repairs
// within limits, carries gossip metadata and reports to the coordinator.
// It never makes a node worse: when in doubt it reports and lets the
// coordinator decide.
package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/daemon/imds"
	"github.com/dovetail-dev/dovetail/daemon/nodekey"
	"github.com/dovetail-dev/dovetail/daemon/repair"
	"github.com/dovetail-dev/dovetail/daemon/reporter"
	"github.com/dovetail-dev/dovetail/drain"
	"github.com/dovetail-dev/dovetail/gossip"
	"github.com/dovetail-dev/dovetail/health"
	"github.com/dovetail-dev/dovetail/metricsdoc"
	"github.com/dovetail-dev/dovetail/report"
)

// Component names the agent in Events and in the cordoned-by annotation
// its drains put on the node.
const Component = "dovetail-agent"

// Config is everything the agent needs; cmd/dovetail-agent fills it from
// flags and environment.
type Config struct {
	Kube kubernetes.Interface
	// EventKube, when set, carries the agent's Kubernetes Events from a
	// queue of their own (its own rate limit), so a drain's Events never
	// slow its evictions. Clients builds both from one rest.Config.
	EventKube kubernetes.Interface
	// NodeName, when set, names the Node (checked against the providerID).
	NodeName string
	// IMDSEndpoint overrides the metadata service URL (tests, simulator).
	IMDSEndpoint string
	// Attest proves this instance's identity to the coordinator with the
	// IMDS identity document and signs every report with a key kept in
	// StateDir (daemon/nodekey). AttestFormat is the IMDS signature form
	// ("rsa2048" by default, or "signature").
	Attest       bool
	AttestFormat string
	IMDSInterval time.Duration
	// Coordinators are report RPC addresses; more come from gossip.
	Coordinators []string
	// CoordinatorTLS, when set, is how the agent verifies coordinators
	// (tlsid.CoordinatorClient): reports and attestation go over https only
	// to a certificate with the coordinator identity.
	CoordinatorTLS *tls.Config
	// Gossip, when Name/Seeds are set, joins the pool. Meta and Logger are
	// filled by the agent.
	Gossip      gossip.Config
	GossipLeave time.Duration
	// StateDir keeps health state, repair history, the report spool and
	// drain records across restarts (systemd StateDirectory).
	StateDir string
	// HealthInterval between health rounds. Default 30 s.
	HealthInterval time.Duration
	// HealthEnv configures the checks (tests inject a fake root).
	HealthEnv health.Env
	// Checks overrides the check list (nil: health.DefaultChecks(HealthEnv)).
	Checks []health.Check
	// Repair policy and the systemd it acts through (nil: D-Bus).
	Repair  repair.Policy
	Systemd repair.Systemd
	// DisableRepair only reports.
	DisableRepair bool
	// MaintenanceLead: drain this long before a maintenance event's start.
	// Default 15 min.
	MaintenanceLead time.Duration
	// SpotForceDeleteBefore: on a spot interruption, pods still refused
	// this long before the deadline are deleted (the node is lost anyway).
	// Zero means the default, 10 s; negative disables.
	SpotForceDeleteBefore time.Duration
	// DryRun drains with server-side dry runs and never repairs.
	DryRun bool
	// ListenAddr serves /healthz and /metrics. Empty disables.
	ListenAddr string
	// BootIDFile is the kernel's boot ID (default /proc/sys/kernel/random/boot_id),
	// used to tell that the node survived a reboot.
	BootIDFile string
	Logger     *slog.Logger
	Registry   *prometheus.Registry
	// Ready is called once the agent is watching (systemd READY=1).
	Ready func(status string)
	// Now is the clock.
	Now func() time.Time
}

// Agent is a running node agent.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	watcher  *imds.Watcher
	reporter *reporter.Client
	signer   *nodekey.Signer
	drainer  *drain.Drainer
	health   *health.Runner
	repairer *repair.Repairer
	pool     *gossip.Pool

	identity imds.Identity
	node     string

	mu          sync.Mutex
	meta        report.Meta
	drainCancel map[string]context.CancelFunc // scheduled or running drains by key
	// drains tracks drain goroutines so Run returns only after they have
	// stopped writing reports and state (their contexts derive from Run's).
	drains     sync.WaitGroup
	heartbeat  atomic.Int64 // unix nanos of the last main-loop turn
	lastHealth []health.Result
	lastDrain  atomic.Pointer[drain.Result]

	interruptions prometheus.Counter
	// healthChecks counts check results by check and state; healthState
	// is 1 for each check's current state (a state set, 0 for the others).
	healthChecks *prometheus.CounterVec
	healthState  *prometheus.GaugeVec
	repairs      *prometheus.CounterVec
	// rec records every metric registered (the daemon README's table).
	rec *metricsdoc.Recorder
}

// New builds the agent; nothing runs until Run.
func New(cfg Config) (*Agent, error) {
	if cfg.Kube == nil {
		return nil, errors.New("agent: a Kubernetes client is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 30 * time.Second
	}
	if cfg.MaintenanceLead <= 0 {
		cfg.MaintenanceLead = 15 * time.Minute
	}
	if cfg.SpotForceDeleteBefore == 0 {
		cfg.SpotForceDeleteBefore = 10 * time.Second
	}
	if cfg.SpotForceDeleteBefore < 0 {
		cfg.SpotForceDeleteBefore = 0 // drain.Options: zero never deletes
	}
	if cfg.GossipLeave <= 0 {
		cfg.GossipLeave = 5 * time.Second
	}
	if cfg.BootIDFile == "" {
		cfg.BootIDFile = "/proc/sys/kernel/random/boot_id"
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("agent: state dir: %w", err)
		}
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "agent"), drainCancel: map[string]context.CancelFunc{}}
	a.rec = metricsdoc.NewRecorder(cfg.Registry)
	a.interruptions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dovetail_agent_interruptions_total", Help: "Spot interruptions and imminent maintenance events acted on.",
	})
	a.healthChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dovetail_agent_health_checks_total", Help: "Health check results, by check and state (ok, degraded, failed, unknown); one per check per round.",
	}, []string{"check", "state"})
	a.healthState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dovetail_agent_health_check_state", Help: "1 for each health check's current state (ok, degraded, failed, unknown), 0 for its other states.",
	}, []string{"check", "state"})
	a.repairs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dovetail_agent_repairs_total", Help: "Self-repair actions, by action (restart-unit, reboot, replace-me) and result (done, failed).",
	}, []string{"action", "result"})
	for _, c := range []prometheus.Collector{a.interruptions, a.healthChecks, a.healthState, a.repairs} {
		if err := a.rec.Register(c); err != nil {
			return nil, fmt.Errorf("agent: metrics: %w", err)
		}
	}
	// Every repair action and result starts at 0 (repair disabled included:
	// none is then a fact), so a dashboard's increase() answers 0, not nothing.
	for _, act := range []repair.Action{repair.ActionRestart, repair.ActionReboot, repair.ActionReplace} {
		for _, res := range []string{"done", "failed"} {
			a.repairs.WithLabelValues(string(act), res).Add(0)
		}
	}
	var err error
	if a.watcher, err = imds.New(imds.Config{Endpoint: cfg.IMDSEndpoint, Interval: cfg.IMDSInterval, Logger: cfg.Logger, Registry: a.rec}); err != nil {
		return nil, err
	}
	var signer reporter.Signer
	if cfg.Attest {
		keyFile := ""
		if cfg.StateDir != "" {
			keyFile = a.statePath("node-key.pem")
		}
		var hc *http.Client
		if cfg.CoordinatorTLS != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = cfg.CoordinatorTLS
			hc = &http.Client{Timeout: 5 * time.Second, Transport: tr}
		}
		if a.signer, err = nodekey.New(nodekey.Config{KeyFile: keyFile, Format: cfg.AttestFormat, HTTPClient: hc,
			Evidence: a.watcher.IdentityEvidence, NodeName: a.NodeName, Logger: cfg.Logger}); err != nil {
			return nil, err
		}
		signer = a.signer
	}
	a.reporter, err = reporter.New(reporter.Config{
		Coordinators: cfg.Coordinators, Discover: a.discoverCoordinators, SpoolDir: a.statePath("spool"),
		Logger: cfg.Logger, Registry: a.rec, Signer: signer, TLS: cfg.CoordinatorTLS,
	})
	if err != nil {
		return nil, err
	}
	if a.drainer, err = drain.New(cfg.Kube, drain.Options{
		DryRun: cfg.DryRun, Component: Component, Logger: cfg.Logger, Registry: a.rec,
		EventClient: cfg.EventKube, EventQPS: EventQPS, EventBurst: EventBurst,
	}); err != nil {
		return nil, err
	}
	checks := cfg.Checks
	if checks == nil {
		env := cfg.HealthEnv
		if env.NodeReady == nil {
			env.NodeReady = a.nodeReady
		}
		checks = health.DefaultChecks(env)
	}
	a.health = health.NewRunner(checks, a.statePath("health.json"))
	a.health.Now = cfg.Now
	if !cfg.DisableRepair && !cfg.DryRun {
		sd := cfg.Systemd
		if sd == nil {
			sd = repair.DBus{}
		}
		if a.repairer, err = repair.New(cfg.Repair, sd, a.statePath("repair.json"), cfg.Logger); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *Agent) statePath(name string) string {
	if a.cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(a.cfg.StateDir, name)
}

// NodeName is the resolved node (after Run has started).
func (a *Agent) NodeName() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.node
}

// Alive reports whether the main loop turned recently (systemd watchdog).
func (a *Agent) Alive() bool {
	last := a.heartbeat.Load()
	return last == 0 || time.Since(time.Unix(0, last)) < 3*a.cfg.HealthInterval+time.Minute
}

// Run resolves identity, starts every loop and blocks until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	a.heartbeat.Store(time.Now().UnixNano())
	// Identity: IMDS, then the Node. Both retried until they answer: the
	// agent may start before kubelet has registered.
	var err error
	idCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	a.identity, err = a.watcher.Identity(idCtx)
	cancel()
	if err != nil {
		if a.cfg.NodeName == "" {
			return fmt.Errorf("agent: no instance identity from IMDS and no --node-name: %w", err)
		}
		a.log.Warn("no instance identity from IMDS; using --node-name alone", "err", err)
	}
	node, err := a.resolveNode(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.node = node.Name
	a.mu.Unlock()
	a.log = a.log.With("node", a.node)
	a.log.Info("agent starting", "instance", a.identity.InstanceID, "providerID", node.Spec.ProviderID)
	a.setMeta(func(m *report.Meta) {
		*m = report.Meta{Role: "agent", NodeName: a.node, InstanceID: a.identity.InstanceID}
	})

	if err := a.health.Load(); err != nil {
		a.log.Warn("health state", "err", err)
	}
	a.lastHealth = a.health.Previous()
	a.restoreAfterReboot(ctx)

	var wg sync.WaitGroup
	goRun := func(name string, f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
			a.log.Debug("loop stopped", "loop", name)
		}()
	}
	goRun("reporter", func(ctx context.Context) { _ = a.reporter.Run(ctx) })
	if a.cfg.Gossip.Name != "" || len(a.cfg.Gossip.Seeds) > 0 {
		gc := a.cfg.Gossip
		if gc.Name == "" {
			gc.Name = a.node
		}
		gc.Meta = a.getMeta
		gc.Logger = a.cfg.Logger
		gc.Registry = a.rec
		pool, err := gossip.Start(ctx, gc)
		if err != nil {
			// Reports still go to static coordinators: run without gossip.
			a.log.Error("gossip disabled", "err", err)
		} else {
			a.mu.Lock()
			a.pool = pool
			a.mu.Unlock()
		}
	}
	notices := make(chan imds.Notice, 16)
	goRun("imds", func(ctx context.Context) { _ = a.watcher.Run(ctx, notices) })
	goRun("notices", func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case n := <-notices:
				a.handleNotice(ctx, n)
			}
		}
	})
	var srv *http.Server
	if a.cfg.ListenAddr != "" {
		srv, err = a.serve()
		if err != nil {
			a.log.Error("metrics/healthz listener disabled", "err", err)
		}
	}
	if a.cfg.Ready != nil {
		a.cfg.Ready(fmt.Sprintf("watching %s (%s)", a.node, a.identity.InstanceID))
	}

	a.healthRound(ctx)
	t := time.NewTicker(a.cfg.HealthInterval)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			a.healthRound(ctx)
		}
	}

	// Shutdown: leave gossip gracefully, flush what we can, stop loops.
	a.mu.Lock()
	pool := a.pool
	a.mu.Unlock()
	if pool != nil {
		if err := pool.Leave(a.cfg.GossipLeave); err != nil {
			a.log.Warn("gossip leave", "err", err)
		}
		_ = pool.Shutdown()
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	a.drains.Wait()
	// Events still queued (a drain's last ones) get a moment; the rest are
	// dropped with one line, not an error each.
	ectx, cancel := context.WithTimeout(context.Background(), time.Second)
	a.drainer.Close(ectx)
	cancel()
	return nil
}

func (a *Agent) resolveNode(ctx context.Context) (*corev1.Node, error) {
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := ResolveNode(ctx, a.cfg.Kube, a.cfg.NodeName, a.identity)
		if err == nil {
			return n, nil
		}
		if attempt == 1 || attempt%10 == 0 {
			a.log.Warn("node not found yet; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("agent: resolve node: %w", err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

func (a *Agent) nodeReady(ctx context.Context) (bool, string, error) {
	if a.node == "" {
		return true, "", nil
	}
	n, err := a.cfg.Kube.CoreV1().Nodes().Get(ctx, a.node, metav1.GetOptions{})
	if err != nil {
		return false, "", err
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, c.Reason + ": " + c.Message, nil
		}
	}
	return false, "no Ready condition yet", nil
}

func (a *Agent) discoverCoordinators() []string {
	a.mu.Lock()
	pool := a.pool
	a.mu.Unlock()
	if pool == nil {
		return nil
	}
	var out []string
	for _, m := range pool.Members() {
		if m.State == gossip.StateAlive && m.Meta.Role == "coordinator" && m.Meta.RPCAddr != "" {
			out = append(out, m.Meta.RPCAddr)
		}
	}
	return out
}

func (a *Agent) getMeta() report.Meta {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.meta
}

func (a *Agent) setMeta(f func(*report.Meta)) {
	a.mu.Lock()
	before := a.meta
	f(&a.meta)
	changed := a.meta != before
	pool := a.pool
	a.mu.Unlock()
	if changed && pool != nil {
		go func() {
			if err := pool.UpdateMeta(2 * time.Second); err != nil {
				a.log.Debug("gossip meta update", "err", err)
			}
		}()
	}
}

func (a *Agent) newReport(kind report.Kind) report.Report {
	pid := ""
	if a.identity.InstanceID != "" && a.identity.AvailabilityZone != "" {
		pid = a.identity.ProviderID()
	}
	return report.Report{Kind: kind, NodeName: a.node, InstanceID: a.identity.InstanceID, ProviderID: pid, ObservedAt: a.cfg.Now()}
}

// healthRound runs the checks, writes conditions and Events, reports
// changes and self-repairs.
func (a *Agent) healthRound(ctx context.Context) {
	a.heartbeat.Store(time.Now().UnixNano())
	results := a.health.Run(ctx)
	a.observeHealth(results)
	now := a.cfg.Now()
	verdicts := health.Summarize(results)
	changes, err := updateConditions(ctx, a.cfg.Kube, a.node, verdicts, now)
	if err != nil {
		a.log.Warn("could not update node conditions", "err", err)
	}
	for _, ch := range changes {
		et, reason, msg := eventFor(ch)
		// A first write of a healthy condition is not news.
		if ch.prev == nil && et == corev1.EventTypeNormal {
			continue
		}
		a.drainer.NodeEvent(ctx, a.node, et, reason, msg)
	}

	a.mu.Lock()
	prev := a.lastHealth
	a.lastHealth = results
	a.mu.Unlock()
	if healthChanged(prev, results) {
		r := a.newReport(report.KindHealth)
		for _, res := range results {
			if res.NotApplicable {
				continue
			}
			r.Checks = append(r.Checks, report.CheckResult{Name: res.Name, Condition: res.Condition, State: string(res.State),
				Reason: res.Reason, Message: res.Message, Since: res.Since})
		}
		a.reporter.Send(r)
	}

	if a.repairer != nil {
		decisions := a.repairer.Plan(results)
		done, err := a.repairer.Apply(ctx, results, decisions)
		if err != nil {
			a.log.Error("self-repair", "err", err)
		}
		a.observeRepairs(decisions, done)
		for _, d := range done {
			if d.Action == repair.ActionReplace {
				r := a.newReport(report.KindReplaceMe)
				r.Message = d.Reason
				a.reporter.Send(r)
				a.drainer.NodeEvent(ctx, a.node, corev1.EventTypeWarning, "ReplaceRequested", d.Reason)
			} else {
				a.drainer.NodeEvent(ctx, a.node, corev1.EventTypeWarning, "SelfRepair", fmt.Sprintf("%s %s: %s", d.Action, d.Unit, d.Reason))
			}
		}
	}
}

// healthStates are the states dovetail_agent_health_check_state sets.
var healthStates = []health.State{health.StateOK, health.StateDegraded, health.StateFailed, health.StateUnknown}

func (a *Agent) observeHealth(results []health.Result) {
	for _, r := range results {
		if r.NotApplicable {
			continue
		}
		a.healthChecks.WithLabelValues(r.Name, string(r.State)).Inc()
		for _, st := range healthStates {
			v := 0.0
			if r.State == st {
				v = 1
			}
			a.healthState.WithLabelValues(r.Name, string(st)).Set(v)
		}
	}
}

// observeRepairs counts the planned repairs: done when Apply carried them
// out, failed when it did not (its error says why).
func (a *Agent) observeRepairs(planned, done []repair.Decision) {
	for _, d := range planned {
		if d.Action == repair.ActionNone {
			continue
		}
		result := "failed"
		for _, x := range done {
			if x == d {
				result = "done"
				break
			}
		}
		a.repairs.WithLabelValues(string(d.Action), result).Inc()
	}
}

// Metrics lists every metric the agent registered so far (name, type,
// labels, help): the daemon README's table is generated from it.
func (a *Agent) Metrics() []metricsdoc.Entry { return a.rec.Entries() }

// healthChanged: did any check change state or reason?
func healthChanged(prev, cur []health.Result) bool {
	if len(prev) != len(cur) {
		return true
	}
	m := map[string]health.Result{}
	for _, p := range prev {
		m[p.Name] = p
	}
	for _, c := range cur {
		p, ok := m[c.Name]
		if !ok || p.State != c.State || p.Reason != c.Reason {
			return true
		}
	}
	return false
}

func (a *Agent) serve() (*http.Server, error) {
	ln, err := net.Listen("tcp", a.cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", a.cfg.ListenAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.cfg.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !a.Alive() {
			http.Error(w, "main loop stalled", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		st := map[string]any{"node": a.node, "identity": a.identity, "meta": a.meta, "health": a.lastHealth,
			"spooledReports": a.reporter.Pending(), "lastDrain": a.lastDrain.Load()}
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server", "err", err)
		}
	}()
	a.log.Info("serving /healthz, /metrics and /status", "addr", ln.Addr().String())
	return srv, nil
}
