// Package imds watches the EC2 instance metadata service for the notices
// that end or disturb an instance: spot interruptions, rebalance
// recommendations and scheduled maintenance events (and their
// cancellation). It speaks IMDSv2 only, through a small client of its own
// (client.go: one session token reused by every loop, kept-alive
// connections, one GET per read), with short timeouts, and keeps polling
// through every kind of failure: a watcher that gives up is worse than one
// that logs.
package imds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Kind is what a Notice is about.
type Kind string

// Notice kinds.
const (
	KindSpotInterruption Kind = "spot-interruption"
	KindRebalance        Kind = "rebalance"
	KindMaintenance      Kind = "maintenance"
)

// Notice is one change the watcher observed.
type Notice struct {
	Kind Kind
	// Action: terminate, stop or hibernate for spot; the event code
	// (system-reboot, instance-stop, ...) for maintenance.
	Action string
	// Time: when the spot action happens; when a rebalance was noticed; the
	// earliest start (NotBefore) of a maintenance event.
	Time time.Time
	// NotAfter and NotBeforeDeadline bound a maintenance event.
	NotAfter          time.Time
	NotBeforeDeadline time.Time
	EventID           string
	State             string // maintenance: active, completed, canceled
	Description       string
	// Cancelled: a maintenance event was cancelled or vanished before it
	// completed. Completed: it completed (and this instance survived it).
	Cancelled bool
	Completed bool
	// ObservedAt is when the watcher first saw this notice.
	ObservedAt time.Time
}

// Config configures a Watcher.
type Config struct {
	// Endpoint is the IMDS base URL; empty means the instance's own
	// (169.254.169.254, or AWS_EC2_METADATA_SERVICE_ENDPOINT).
	Endpoint string
	// Interval between polls of the spot path. Default 500 ms, so a spot
	// notice is seen within half a second of IMDS showing it.
	Interval time.Duration
	// EventsInterval between polls of the rebalance and maintenance paths.
	// Default 4 × Interval (2 s, as often as NTH polls anything): a
	// rebalance recommendation comes minutes before an interruption, a
	// maintenance event days before it starts, so polling them as often
	// as the 2-minute spot notice only cost idle CPU.
	EventsInterval time.Duration
	// Timeout bounds each request attempt. Default 800 ms.
	Timeout time.Duration
	// Retries is how many more attempts one read gets after a failed one
	// (5xx, connection error, attempt timeout). Default 1; the poll loop
	// is the longer-term retry. RetryBackoff is the wait before the first
	// retry, doubled for each further one. Default 50 ms.
	Retries      int
	RetryBackoff time.Duration
	Logger       *slog.Logger
	// Registry, when set, receives the watcher's metrics.
	Registry prometheus.Registerer
	Now      func() time.Time
	// VanishAfter is how long an active maintenance event must stay absent
	// before it counts as cancelled. IMDS has been seen to answer 404 for a
	// moment (150 ms) and then list the event again; without this the agent
	// would uncordon and re-cordon the node. Default 2 s: undoing a drain
	// is never urgent, while a new or cancelled-by-state event is still
	// reported at once.
	VanishAfter time.Duration
}

// Watcher polls IMDS.
type Watcher struct {
	cfg     Config
	client  *client
	log     *slog.Logger
	metrics *metrics
}

// New returns a Watcher. Nothing is contacted until Run or Identity.
func New(cfg Config) (*Watcher, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.EventsInterval <= 0 {
		cfg.EventsInterval = 4 * cfg.Interval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 800 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	} else if cfg.Retries == 0 {
		cfg.Retries = 1
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = 50 * time.Millisecond
	}
	if cfg.VanishAfter <= 0 {
		cfg.VanishAfter = 2 * time.Second
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	// Retries are ours (get), each attempt with its own timeout. (The SDK's
	// retryer, wrapped by its imds client in a 1 s max backoff, slept up to
	// a second after a 500 and so ran into our deadline: the status was
	// lost, the retry never sent, the log said "context deadline exceeded".)
	client := newClient(cfg.Endpoint, time.Now)
	return &Watcher{cfg: cfg, client: client, log: cfg.Logger.With("component", "imds"), metrics: m}, nil
}

// errNotFound means the path does not exist now (no notice).
var errNotFound = errors.New("not found")

// get reads one metadata path as bytes, mapping 404 to errNotFound.
// Each attempt has its own Timeout; failed attempts are retried Retries
// times after RetryBackoff (doubling). The error returned is the last
// attempt's and names its HTTP status when there was one.
func (w *Watcher) get(ctx context.Context, path string) ([]byte, error) {
	return w.getOn(ctx, path, nil)
}

// getOn is get over a poll loop's own connection (nil: the shared client).
func (w *Watcher) getOn(ctx context.Context, path string, lc *loopConn) ([]byte, error) {
	backoff := w.cfg.RetryBackoff
	var err error
	for attempt := 0; ; attempt++ {
		var b []byte
		b, err = w.getOnce(ctx, path, lc)
		if err == nil || errors.Is(err, errNotFound) {
			return b, err
		}
		w.metrics.errors.WithLabelValues(path).Inc()
		if attempt >= w.cfg.Retries || ctx.Err() != nil {
			break
		}
		if !sleep(ctx, backoff) {
			break
		}
		backoff *= 2
	}
	return nil, fmt.Errorf("imds get %s: %w", path, err)
}

// StatusError is an IMDS answer other than 200 or 404.
type StatusError struct {
	Status int
	Err    error
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %v", e.Status, e.Err) }
func (e *StatusError) Unwrap() error { return e.Err }

func (w *Watcher) getOnce(ctx context.Context, path string, lc *loopConn) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	start := time.Now()
	var b []byte
	var err error
	if lc != nil {
		b, err = lc.getMetadata(ctx, path)
	} else {
		b, err = w.client.getMetadata(ctx, path)
	}
	w.metrics.latency.Observe(time.Since(start).Seconds())
	w.metrics.requests.WithLabelValues(path).Inc()
	// The path's error series exists from its first request, at 0, so a
	// rate of errors is 0 rather than absent until the first failure.
	w.metrics.errors.WithLabelValues(path)
	return b, err
}

// Identity is what the instance says about itself.
type Identity struct {
	InstanceID       string
	InstanceType     string
	AvailabilityZone string
	Region           string
	Hostname         string // local-hostname, the name kubelet uses by default
}

// ProviderID is the Kubernetes providerID of this instance.
func (i Identity) ProviderID() string {
	return "aws:///" + i.AvailabilityZone + "/" + i.InstanceID
}

// Identity reads the instance's identity, retrying each field until ctx
// ends. instance-id is required; the rest are best effort.
func (w *Watcher) Identity(ctx context.Context) (Identity, error) {
	var id Identity
	fields := []struct {
		path     string
		dst      *string
		required bool
	}{
		{"instance-id", &id.InstanceID, true},
		{"placement/availability-zone", &id.AvailabilityZone, false},
		{"instance-type", &id.InstanceType, false},
		{"local-hostname", &id.Hostname, false},
		{"placement/region", &id.Region, false},
	}
	for _, f := range fields {
		for attempt := 0; ; attempt++ {
			b, err := w.get(ctx, f.path)
			if err == nil {
				*f.dst = strings.TrimSpace(string(b))
				break
			}
			if !f.required && (errors.Is(err, errNotFound) || attempt >= 2) {
				break
			}
			if ctx.Err() != nil {
				return id, fmt.Errorf("imds identity: %s: %w", f.path, err)
			}
			w.log.Warn("reading identity from IMDS, retrying", "path", f.path, "err", err)
			if !sleep(ctx, jitter(w.cfg.Interval)) {
				return id, fmt.Errorf("imds identity: %s: %w", f.path, ctx.Err())
			}
		}
	}
	if id.Region == "" && len(id.AvailabilityZone) > 1 {
		// Older IMDS (and some mocks) lack placement/region: trim the zone letter.
		id.Region = strings.TrimRightFunc(id.AvailabilityZone, func(r rune) bool { return r >= 'a' && r <= 'z' })
	}
	return id, nil
}

// Run polls until ctx ends, sending each new notice (and each change of a
// maintenance event) to out. Each path is read by its own goroutine, so a
// slow answer on one never delays the spot notice, but all are driven by
// the spot loop's one timer: the rebalance and maintenance reads happen on
// every EventsInterval/Interval-th spot tick, in the same wake-up. Idle, the
// agent's CPU is almost all Go runtime wake-up cost (the scheduler and
// sysmon spinning up), so one wake-up per tick rather than one per path
// per tick is what makes it cheap.
func (w *Watcher) Run(ctx context.Context, out chan<- Notice) error {
	var wg sync.WaitGroup
	events := []struct {
		path    string
		parse   func([]byte, *pollState) ([]Notice, error)
		trigger chan struct{}
	}{
		{"events/recommendations/rebalance", w.parseRebalance, make(chan struct{}, 1)},
		{"events/maintenance/scheduled", w.parseScheduled, make(chan struct{}, 1)},
	}
	for _, p := range events {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.pollLoop(ctx, p.path, p.parse, p.trigger, nil, out)
		}()
	}
	every := max(int((w.cfg.EventsInterval+w.cfg.Interval/2)/w.cfg.Interval), 1)
	n := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.pollLoop(ctx, "spot/instance-action", w.parseSpot, nil, func() {
			// Before the spot read, so the three run side by side. A loop
			// still busy with its last read (slow IMDS) skips this turn.
			if n%every == 0 {
				for _, p := range events {
					select {
					case p.trigger <- struct{}{}:
					default:
					}
				}
			}
			n++
		}, out)
	}()
	wg.Wait()
	w.client.close()
	return ctx.Err()
}

// pollState is what one path's loop remembers between polls.
type pollState struct {
	seen   map[string]bool   // keys of notices already sent
	events map[string]Notice // maintenance events by id, as last seen
	// missing: when an active maintenance event was first seen absent, so
	// a short 404 flap is not taken for a cancellation.
	missing map[string]time.Time
}

func newPollState() *pollState {
	return &pollState{seen: map[string]bool{}, events: map[string]Notice{}, missing: map[string]time.Time{}}
}

// pollLoop reads path each time trigger fires or, with a nil trigger, every
// jittered Interval (calling tick before each read).
func (w *Watcher) pollLoop(ctx context.Context, path string, parse func([]byte, *pollState) ([]Notice, error),
	trigger <-chan struct{}, tick func(), out chan<- Notice) {
	st := newPollState()
	failing := false
	// One timer and one connection for the loop's life, not one per poll.
	var t *time.Timer
	if trigger == nil {
		t = time.NewTimer(0)
		defer t.Stop()
	}
	lc := w.client.newLoopConn()
	defer lc.close()
	for {
		if trigger != nil {
			select {
			case <-ctx.Done():
				return
			case <-trigger:
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			t.Reset(jitter(w.cfg.Interval))
			tick()
		}
		b, err := w.getOn(ctx, path, lc)
		if errors.Is(err, errNotFound) {
			b, err = nil, nil
		}
		if err == nil {
			var notices []Notice
			notices, err = parse(b, st)
			if err == nil {
				for _, n := range notices {
					w.metrics.notices.WithLabelValues(string(n.Kind)).Inc()
					select {
					case out <- n:
					case <-ctx.Done():
						return
					}
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			// Log the first failure and the recovery, not every poll.
			if !failing {
				w.log.Warn("IMDS poll failing; still polling", "path", path, "err", err)
			}
			failing = true
		} else if failing && err == nil {
			w.log.Info("IMDS poll recovered", "path", path)
			failing = false
		}
	}
}

type spotAction struct {
	Action string `json:"action"`
	Time   string `json:"time"`
}

func (w *Watcher) parseSpot(b []byte, st *pollState) ([]Notice, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var a spotAction
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("spot/instance-action: malformed JSON: %w", err)
	}
	t, err := time.Parse(time.RFC3339, a.Time)
	if err != nil {
		return nil, fmt.Errorf("spot/instance-action: bad time %q: %w", a.Time, err)
	}
	key := a.Action + "@" + a.Time
	if st.seen[key] {
		return nil, nil
	}
	st.seen[key] = true
	n := Notice{Kind: KindSpotInterruption, Action: a.Action, Time: t, ObservedAt: w.cfg.Now()}
	switch a.Action {
	case "terminate", "stop", "hibernate":
	default:
		// A well-formed notice with an action this agent does not know
		// (a new EC2 action, or a typo upstream) still means the instance
		// is going away: act as for the most disruptive known action,
		// terminate, and say so, rather than ignore it and lose the pods.
		w.log.Warn("unknown spot instance-action; treating it as terminate", "action", a.Action, "time", a.Time)
		n.Action = "terminate"
		n.Description = fmt.Sprintf("unknown spot action %q treated as terminate", a.Action)
	}
	return []Notice{n}, nil
}

func (w *Watcher) parseRebalance(b []byte, st *pollState) ([]Notice, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var r struct {
		NoticeTime string `json:"noticeTime"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("rebalance: malformed JSON: %w", err)
	}
	t, err := time.Parse(time.RFC3339, r.NoticeTime)
	if err != nil {
		return nil, fmt.Errorf("rebalance: bad noticeTime %q: %w", r.NoticeTime, err)
	}
	if st.seen[r.NoticeTime] {
		return nil, nil
	}
	st.seen[r.NoticeTime] = true
	return []Notice{{Kind: KindRebalance, Time: t, ObservedAt: w.cfg.Now()}}, nil
}

type scheduledEvent struct {
	Code              string `json:"Code"`
	Description       string `json:"Description"`
	EventID           string `json:"EventId"`
	NotBefore         string `json:"NotBefore"`
	NotAfter          string `json:"NotAfter"`
	NotBeforeDeadline string `json:"NotBeforeDeadline"`
	State             string `json:"State"`
}

// IMDS spells maintenance times like "21 Jan 2019 09:00:43 GMT".
const eventTimeLayout = "2 Jan 2006 15:04:05 GMT"

func parseEventTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	for _, layout := range []string{eventTimeLayout, time.RFC3339, time.RFC1123} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

func (w *Watcher) parseScheduled(b []byte, st *pollState) ([]Notice, error) {
	var evs []scheduledEvent
	if len(strings.TrimSpace(string(b))) > 0 {
		if err := json.Unmarshal(b, &evs); err != nil {
			return nil, fmt.Errorf("maintenance/scheduled: malformed JSON: %w", err)
		}
	}
	now := w.cfg.Now()
	var out []Notice
	current := map[string]bool{}
	for _, e := range evs {
		if e.EventID == "" {
			continue
		}
		current[e.EventID] = true
		delete(st.missing, e.EventID)
		n := Notice{
			Kind: KindMaintenance, Action: e.Code, EventID: e.EventID, State: e.State, Description: e.Description,
			Time: parseEventTime(e.NotBefore), NotAfter: parseEventTime(e.NotAfter),
			NotBeforeDeadline: parseEventTime(e.NotBeforeDeadline), ObservedAt: now,
		}
		switch strings.ToLower(e.State) {
		case "canceled", "cancelled":
			n.Cancelled = true
		case "completed":
			n.Completed = true
		}
		// Description changes too ("[Canceled] ..."), so key on state only.
		prev, known := st.events[e.EventID]
		if known && prev.State == n.State && prev.Time.Equal(n.Time) {
			continue
		}
		if !known && (n.Cancelled || n.Completed) {
			// Already over when first seen (agent restarted): tell once so
			// a drain left from before the restart is undone.
			n.ObservedAt = now
		}
		st.events[e.EventID] = n
		out = append(out, n)
	}
	for id, prev := range st.events {
		if current[id] {
			continue
		}
		if prev.Cancelled || prev.Completed {
			delete(st.events, id)
			continue
		}
		// An active event that vanished did not happen: treat as cancelled,
		// once it has stayed away for VanishAfter (debounce a 404 flap).
		since, ok := st.missing[id]
		if !ok {
			st.missing[id] = now
			continue
		}
		if now.Sub(since) < w.cfg.VanishAfter {
			continue
		}
		delete(st.missing, id)
		delete(st.events, id)
		gone := prev
		gone.Cancelled, gone.State, gone.ObservedAt = true, "vanished", now
		out = append(out, gone)
	}
	return out, nil
}

func jitter(d time.Duration) time.Duration {
	return d*8/10 + rand.N(d*4/10+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type metrics struct {
	latency  prometheus.Histogram
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	notices  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dovetail_agent_imds_request_seconds", Help: "IMDS request latency.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 12),
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_agent_imds_requests_total", Help: "IMDS requests (polls) made, by path, retries included.",
		}, []string{"path"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_agent_imds_errors_total", Help: "IMDS requests that failed (not counting 404: no notice).",
		}, []string{"path"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_agent_imds_notices_total", Help: "Notices observed, by kind.",
		}, []string{"kind"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.latency, m.requests, m.errors, m.notices} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("imds: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// IdentityEvidence reads the instance identity document and its signature
// in the given form ("rsa2048" or "signature": the file under
// dynamic/instance-identity/), through the watcher's IMDS client with the
// watcher's timeout and retries. The coordinator verifies them against
// AWS's certificates to learn which instance this agent runs on.
func (w *Watcher) IdentityEvidence(ctx context.Context, format string) (doc, sig []byte, err error) {
	if doc, err = w.dynamic(ctx, "instance-identity/document"); err != nil {
		return nil, nil, err
	}
	if sig, err = w.dynamic(ctx, "instance-identity/"+format); err != nil {
		return nil, nil, err
	}
	return doc, sig, nil
}

func (w *Watcher) dynamic(ctx context.Context, path string) ([]byte, error) {
	backoff := w.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		b, err := func() ([]byte, error) {
			ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
			defer cancel()
			return w.client.getDynamic(ctx, path)
		}()
		if err == nil {
			return b, nil
		}
		if attempt >= w.cfg.Retries+2 || ctx.Err() != nil || !sleep(ctx, backoff) {
			return nil, fmt.Errorf("imds get dynamic/%s: %w", path, err)
		}
		backoff *= 2
	}
}
