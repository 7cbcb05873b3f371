// Package reporter delivers the agent's authoritative reports to the
// coordinator: POST report.Path on any replica (it forwards to the Raft
// leader), with jittered backoff, rotating through the known replicas. Every
// report is spooled to disk first, so reports survive an unreachable
// coordinator and an agent restart, and are delivered when one is back.
// Each report has a unique ID, so a retried delivery is applied once.
package reporter

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/report"
)

// Config configures a Client.
type Config struct {
	// Coordinators are static addresses (host:port or URLs) of replicas.
	Coordinators []string
	// Discover, when set, returns more addresses (from gossip: members with
	// Meta.Role "coordinator" and their Meta.RPCAddr). Called per attempt.
	Discover func() []string
	// SpoolDir keeps undelivered reports across restarts; empty keeps them
	// in memory only.
	SpoolDir string
	// MaxSpool bounds the spool; the oldest low-priority reports go first.
	// Default 1000.
	MaxSpool int
	// HTTPClient defaults to one with a 5 s timeout (over TLS when TLS is set).
	HTTPClient *http.Client
	// TLS, when set, makes host:port addresses https and verifies the
	// coordinator's certificate with it (tlsid.CoordinatorClient): a node
	// that holds the gossip key and advertises itself as a coordinator gets
	// no reports without a coordinator's certificate.
	TLS *tls.Config
	// BaseBackoff / MaxBackoff bound the retry delay. Defaults 200 ms / 10 s.
	BaseBackoff, MaxBackoff time.Duration
	Logger                  *slog.Logger
	Registry                prometheus.Registerer
	Now                     func() time.Time
	// Signer, when set, signs every report with the agent's attested key
	// (daemon/nodekey). A delivery attests first when not attested (start,
	// or after a 401); until then reports stay spooled.
	Signer Signer
}

// Signer authenticates reports (daemon/nodekey.Signer).
type Signer interface {
	Attested() bool
	// Attest binds the key at the coordinator at base, through client (the
	// reporter's own, so it shares its TLS configuration).
	Attest(ctx context.Context, client *http.Client, base string) error
	Invalidate()
	Sign(req *http.Request, body []byte)
}

// Client is the report sender.
type Client struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	pending []*entry
	seq     uint64
	wake    chan struct{}
	idle    chan struct{} // closed while the spool is empty
	isIdle  bool
	next    int // address rotation
}

type entry struct {
	Seq    uint64        `json:"seq"`
	Report report.Report `json:"report"`
	file   string
}

// New returns a Client and loads any spooled reports.
func New(cfg Config) (*Client, error) {
	if cfg.MaxSpool <= 0 {
		cfg.MaxSpool = 1000
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
		if cfg.TLS != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = cfg.TLS
			cfg.HTTPClient.Transport = tr
		}
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger.With("component", "reporter"), metrics: m, wake: make(chan struct{}, 1), idle: make(chan struct{})}
	close(c.idle)
	c.isIdle = true
	if cfg.SpoolDir != "" {
		if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
			return nil, fmt.Errorf("reporter: spool dir: %w", err)
		}
		if err := c.load(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// NewID returns a fresh report ID.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Client) load() error {
	files, err := filepath.Glob(filepath.Join(c.cfg.SpoolDir, "*.json"))
	if err != nil {
		return fmt.Errorf("reporter: read spool: %w", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		var e entry
		if err == nil {
			err = json.Unmarshal(b, &e)
		}
		if err != nil || e.Report.ID == "" {
			// A torn write from a crash: drop it rather than wedge the queue.
			c.log.Warn("dropping unreadable spooled report", "file", f, "err", err)
			_ = os.Remove(f)
			continue
		}
		e.file = f
		c.pending = append(c.pending, &e)
		c.seq = max(c.seq, e.Seq)
	}
	c.sortLocked()
	if len(c.pending) > 0 {
		c.idle, c.isIdle = make(chan struct{}), false
		c.log.Info("loaded spooled reports", "count", len(c.pending))
	}
	c.metrics.spooled.Set(float64(len(c.pending)))
	return nil
}

// priority: what the coordinator must hear first.
func priority(k report.Kind) int {
	switch k {
	case report.KindInterruption:
		return 0
	case report.KindMaintenance, report.KindReplaceMe:
		return 1
	case report.KindDrainProgress, report.KindRebalance:
		return 2
	default:
		return 3
	}
}

// coalesces: reports of these kinds are full snapshots; only the newest
// pending one matters.
func coalesces(k report.Kind) bool { return k == report.KindHealth || k == report.KindDrainProgress }

func (c *Client) sortLocked() {
	sort.SliceStable(c.pending, func(i, j int) bool {
		pi, pj := priority(c.pending[i].Report.Kind), priority(c.pending[j].Report.Kind)
		if pi != pj {
			return pi < pj
		}
		return c.pending[i].Seq < c.pending[j].Seq
	})
}

// Send queues r for delivery (assigning an ID and ObservedAt when empty)
// and returns at once; the spool write happens before it returns.
func (c *Client) Send(r report.Report) report.Report {
	if r.ID == "" {
		r.ID = NewID()
	}
	if r.ObservedAt.IsZero() {
		r.ObservedAt = c.cfg.Now()
	}
	r = r.Clipped() // the coordinator refuses reports over report.MaxBytes
	c.mu.Lock()
	if coalesces(r.Kind) {
		kept := c.pending[:0]
		for _, e := range c.pending {
			if e.Report.Kind == r.Kind {
				c.removeFile(e)
				c.metrics.dropped.WithLabelValues("superseded").Inc()
				c.log.Info("report dropped from spool", "id", e.Report.ID, "kind", e.Report.Kind, "reason", "superseded", "by", r.ID)
				continue
			}
			kept = append(kept, e)
		}
		c.pending = kept
	}
	c.seq++
	e := &entry{Seq: c.seq, Report: r}
	if c.cfg.SpoolDir != "" {
		e.file = filepath.Join(c.cfg.SpoolDir, fmt.Sprintf("%020d-%s.json", e.Seq, r.ID))
		if err := writeFileAtomic(e.file, e); err != nil {
			c.log.Warn("could not spool report to disk; keeping it in memory", "id", r.ID, "err", err)
			e.file = ""
		}
	}
	c.pending = append(c.pending, e)
	c.sortLocked()
	for len(c.pending) > c.cfg.MaxSpool {
		// Drop the least important, oldest report.
		worst := len(c.pending) - 1
		gone := c.pending[worst]
		c.removeFile(gone)
		c.pending = c.pending[:worst]
		c.metrics.dropped.WithLabelValues("spool-full").Inc()
		c.log.Warn("report dropped from spool", "id", gone.Report.ID, "kind", gone.Report.Kind, "reason", "spool-full")
	}
	if c.isIdle {
		c.idle, c.isIdle = make(chan struct{}), false
	}
	c.metrics.spooled.Set(float64(len(c.pending)))
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return r
}

func (c *Client) removeFile(e *entry) {
	if e.file != "" {
		_ = os.Remove(e.file)
	}
}

// Pending is the number of undelivered reports.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Flush waits until every queued report is delivered or ctx ends.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reporter: %d reports undelivered: %w", c.Pending(), ctx.Err())
	}
}

// Run delivers reports until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	if c.cfg.Signer != nil {
		attested := make(chan struct{})
		go func() { defer close(attested); c.attestAtStart(ctx) }()
		defer func() { <-attested }()
	}
	attempt := 0
	for {
		c.mu.Lock()
		var e *entry
		if len(c.pending) > 0 {
			e = c.pending[0]
		}
		c.mu.Unlock()
		if e == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-c.wake:
				continue
			}
		}
		err := c.deliver(ctx, e)
		var perm *permanentError
		switch {
		case err == nil:
			attempt = 0
			c.done(e)
			c.metrics.delivered.WithLabelValues(string(e.Report.Kind)).Inc()
			continue
		case errors.As(err, &perm):
			c.log.Error("every coordinator replica rejected the report as malformed; dropping it", "id", e.Report.ID, "kind", e.Report.Kind, "reason", "rejected", "err", err)
			c.metrics.dropped.WithLabelValues("rejected").Inc()
			c.done(e)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		attempt++
		c.metrics.failures.Inc()
		if attempt == 1 || attempt%20 == 0 {
			c.log.Warn("coordinator unreachable; report spooled, retrying", "id", e.Report.ID, "kind", e.Report.Kind,
				"pending", c.Pending(), "attempt", attempt, "err", err)
		}
		d := min(c.cfg.BaseBackoff<<min(attempt-1, 16), c.cfg.MaxBackoff)
		d = d/2 + mrand.N(d/2+1) // full jitter on the upper half
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-c.wake:
			// A new report (maybe more urgent) arrived: retry now with it first.
			t.Stop()
		case <-t.C:
		}
	}
}

// attestAtStart proves the instance's identity before any report needs it,
// so the first report (maybe a spot notice) is only signed, not preceded by
// an attestation round trip. It goes on, with the delivery backoff, until a
// replica attests, the coordinator says attestation is not required, a
// report's delivery attested first, or ctx ends: one round at start was not
// enough — started during an election, every replica answered 503 (no
// leader) and the attestation then happened on the spot-notice path
// (TestAutoMode, a loaded machine).
func (c *Client) attestAtStart(ctx context.Context) {
	for attempt := 1; ; attempt++ {
		for _, a := range c.addresses() {
			if c.cfg.Signer.Attested() {
				return
			}
			err := c.cfg.Signer.Attest(ctx, c.cfg.HTTPClient, c.baseURL(a))
			if err == nil || errors.Is(err, ErrNotRequired) || ctx.Err() != nil {
				return
			}
			if attempt == 1 || attempt%20 == 0 {
				c.log.Warn("attestation at start failed; retrying (and with the first report)", "coordinator", a, "attempt", attempt, "err", err)
			}
		}
		d := min(c.cfg.BaseBackoff<<min(attempt-1, 16), c.cfg.MaxBackoff)
		t := time.NewTimer(d/2 + mrand.N(d/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (c *Client) done(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.pending {
		if p == e {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			break
		}
	}
	c.removeFile(e)
	c.metrics.spooled.Set(float64(len(c.pending)))
	if len(c.pending) == 0 && !c.isIdle {
		close(c.idle)
		c.isIdle = true
	}
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// addresses returns the static and discovered addresses, deduplicated,
// starting at the rotation point.
func (c *Client) addresses() []string {
	seen := map[string]bool{}
	var all []string
	add := func(a string) {
		a = strings.TrimSpace(a)
		if a != "" && !seen[a] {
			seen[a] = true
			all = append(all, a)
		}
	}
	for _, a := range c.cfg.Coordinators {
		add(a)
	}
	if c.cfg.Discover != nil {
		for _, a := range c.cfg.Discover() {
			add(a)
		}
	}
	if len(all) == 0 {
		return nil
	}
	c.mu.Lock()
	start := c.next % len(all)
	c.next++
	c.mu.Unlock()
	return append(all[start:], all[:start]...)
}

// deliver tries each known replica once.
func (c *Client) deliver(ctx context.Context, e *entry) error {
	addrs := c.addresses()
	if len(addrs) == 0 {
		return errors.New("no coordinator address known (flag, env or gossip)")
	}
	body, err := json.Marshal(e.Report)
	if err != nil {
		return &permanentError{fmt.Errorf("encode report: %w", err)}
	}
	// Any failure from one replica means "try the next": a replica that is
	// restarting, behind a proxy, on an older version (404) or refusing a
	// request it cannot judge must not cost the report. Only when every
	// replica answered that the report itself is malformed is it dropped.
	var errs []error
	unanimous := true
	for _, a := range addrs {
		err := c.post(ctx, a, body)
		if err == nil {
			return nil
		}
		var perm *permanentError
		if !errors.As(err, &perm) {
			unanimous = false
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			unanimous = false
			break
		}
	}
	if unanimous {
		return &permanentError{errors.Join(errs...)}
	}
	return errors.Join(errs...)
}

// ErrNotRequired may be returned (or wrapped) by Signer.Attest when the
// coordinator takes unsigned reports; delivery then goes on.
var ErrNotRequired = errors.New("attestation not required")

func (c *Client) baseURL(addr string) string {
	if !strings.Contains(addr, "://") {
		if c.cfg.TLS != nil {
			addr = "https://" + addr
		} else {
			addr = "http://" + addr
		}
	}
	return strings.TrimSuffix(addr, "/")
}

func (c *Client) post(ctx context.Context, addr string, body []byte) error {
	base := c.baseURL(addr)
	url := base + report.Path
	if s := c.cfg.Signer; s != nil && !s.Attested() {
		if err := s.Attest(ctx, c.cfg.HTTPClient, base); err != nil && !errors.Is(err, ErrNotRequired) {
			return fmt.Errorf("not attested: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return &permanentError{fmt.Errorf("build request for %s: %w", addr, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	if s := c.cfg.Signer; s != nil {
		// Signed per attempt: a retry carries a fresh sequence.
		s.Sign(req, body)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", url, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode == http.StatusConflict:
		// 409: already applied under this ID.
		return nil
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusRequestEntityTooLarge,
		resp.StatusCode == http.StatusUnprocessableEntity:
		// The report itself is refused; the caller drops it only if every
		// replica says so.
		return &permanentError{fmt.Errorf("post %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(msg)))}
	case resp.StatusCode == http.StatusUnauthorized && c.cfg.Signer != nil:
		// The coordinator does not (or no longer) accept our key: attest
		// again before the next attempt.
		c.cfg.Signer.Invalidate()
		return fmt.Errorf("post %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(msg)))
	default:
		// 401/403 (credentials to renew), 404 (a replica without the route),
		// 408, 429, 5xx: retried, here or on the next replica.
		return fmt.Errorf("post %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
}

func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

type metrics struct {
	spooled   prometheus.Gauge
	delivered *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	failures  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		spooled: prometheus.NewGauge(prometheus.GaugeOpts{Name: "dovetail_agent_reports_spooled", Help: "Reports waiting for delivery."}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_agent_reports_delivered_total", Help: "Reports the coordinator accepted, by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_agent_reports_dropped_total", Help: "Reports dropped (superseded, spool-full, rejected).",
		}, []string{"reason"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dovetail_agent_report_delivery_failures_total", Help: "Delivery rounds in which no coordinator accepted a report.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.spooled, m.delivered, m.dropped, m.failures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("reporter: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
