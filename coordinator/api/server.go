// Package api is the coordinator's HTTP/JSON API: cluster status, nodes with
// health, launches and rollouts for the CLI; report intake from node agents
// (any replica accepts, non-leaders forward to the leader, the leader commits
// to Raft); /healthz, /readyz and /metrics for Kubernetes and Prometheus.
//
// Reads are served from the replica's applied state. ?consistent=1 makes
// a read linearizable: it is forwarded to the leader, which passes a Raft
// barrier before reading.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

// Backend is the replica as the API sees it (raftnode.Node).
type Backend interface {
	ID() string
	IsLeader() bool
	Term() uint64
	Leader() (id, addr string)
	LeaderHTTPAddr() string
	Apply(ctx context.Context, c fsm.Command) error
	Barrier(ctx context.Context) error
	State() *fsm.State
	Raft() *raft.Raft
	Servers() ([]raft.Server, error)
}

// Config configures the handler.
type Config struct {
	Backend Backend
	// Gatherer serves /metrics (default: prometheus.DefaultGatherer).
	Gatherer prometheus.Gatherer
	// NodeGrace is the post-failover grace period reported in status.
	NodeGrace time.Duration
	// MaxLag is how many entries behind the commit index a replica may be
	// and still be ready (default 1000).
	MaxLag uint64
	// Client forwards requests to the leader.
	Client *http.Client
	// RetryWindow bounds how long a request that only the leader may serve
	// is retried across leadership changes when the client's own deadline
	// is longer (default 10s).
	RetryWindow time.Duration
	// ForwardAttemptTimeout bounds the first attempt of a forwarded
	// idempotent request (a consistent read, a report); each retry within
	// the window doubles it (default 1s). See forwardOnce.
	ForwardAttemptTimeout time.Duration
	// Extra handlers mounted on the mux (e.g. disruption's explain pages).
	// They answer from leader-only state, so a follower forwards them to the
	// leader like a consistent read: any replica answers every CLI command.
	// They are read pages: with Auth set each needs AccessPlans.
	Extra map[string]http.Handler
	// Attest, when set, requires every report to be signed by an attested
	// node agent (intake.go); nil accepts unsigned reports.
	Attest *AttestConfig
	// Auth, when set, authenticates and authorises every route but
	// /healthz, /readyz and the agents' report and attestation intake
	// (which authenticate agents themselves); nil serves them to anyone
	// (--insecure-api).
	Auth Authorizer
	// MetricsOpen serves /metrics without Auth (--metrics-open).
	MetricsOpen bool
	// Registerer receives the API's own metrics (default: none registered).
	Registerer prometheus.Registerer
	// ForwardTLS makes forwarding to the leader use https (Client must then
	// trust the coordinators' certificates).
	ForwardTLS bool
	Now        func() time.Time
	Log        *slog.Logger
}

// Handler serves the API.
type Handler struct {
	cfg     Config
	mux     *http.ServeMux
	intake  *intake
	refused *prometheus.CounterVec
}

// New returns the API handler.
func New(cfg Config) *Handler {
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.DefaultGatherer
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = 1000
	}
	if cfg.Client == nil {
		cfg.Client = NewForwardClient(nil)
	}
	if cfg.ForwardAttemptTimeout <= 0 {
		cfg.ForwardAttemptTimeout = defaultForwardAttempt
	}
	if cfg.RetryWindow <= 0 {
		cfg.RetryWindow = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.NodeGrace == 0 {
		cfg.NodeGrace = 2 * time.Minute
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), intake: newIntake(cfg.Attest)}
	h.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dovetail_api_refused_total",
		Help: "API requests refused by authentication or authorisation, by reason (no_token, bad_token, forbidden, authn_unavailable, authz_unavailable).",
	}, []string{"reason"})
	for _, r := range []string{RefusedNoToken, RefusedBadToken, RefusedForbidden, RefusedAuthnFailure, RefusedAuthzFailure} {
		h.refused.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(h.refused); err != nil {
			cfg.Log.Warn("register api metrics", "err", err)
		}
	}
	h.mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	h.mux.HandleFunc("GET "+PathReadyz, h.readyz)
	metrics := promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})
	if !cfg.MetricsOpen {
		metrics = h.Guard(AccessMetrics, metrics)
	}
	h.mux.Handle("GET "+PathMetrics, metrics)
	h.mux.Handle("GET "+PathStatus, h.Guard(AccessStatus, h.read(h.status)))
	h.mux.Handle("GET "+PathNodes, h.Guard(AccessNodes, h.read(h.nodes)))
	h.mux.Handle("GET "+PathNodes+"/{name}", h.Guard(AccessNodes, h.read(h.node)))
	h.mux.Handle("GET "+PathLaunches, h.Guard(AccessLaunches, h.read(h.launches)))
	h.mux.Handle("GET "+PathRollouts, h.Guard(AccessRollouts, h.read(h.rollouts)))
	h.mux.Handle("GET "+PathDisruptions, h.Guard(AccessDisruptions, h.read(h.disruptions)))
	h.mux.HandleFunc("POST "+report.Path, h.postReport)
	h.mux.Handle("POST "+PathRolloutResume, h.Guard(AccessRolloutResume, http.HandlerFunc(h.resumeRollout)))
	h.mux.HandleFunc("POST "+report.AttestPath, h.postAttest)
	// Mutating operator endpoint: behind the API's authorisation.
	h.mux.Handle("POST "+PathAttestReset, h.Guard(AccessAttestReset, http.HandlerFunc(h.resetAttestation)))
	for p, eh := range cfg.Extra {
		h.mux.Handle(p, h.Guard(AccessPlans, h.leaderOnly(eh)))
	}
	return h
}

// Guard wraps a route so only callers Auth allows reach it: 401 without or
// with a bad token, 403 when RBAC does not grant a, 503 when the Kubernetes
// API server cannot be asked; each refusal is logged with its reason and
// counted. Without Auth (--insecure-api) it returns next unchanged. Every
// mutating route must be mounted through Guard.
func (h *Handler) Guard(a Access, next http.Handler) http.Handler {
	if h.cfg.Auth == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := h.cfg.Auth.Authorize(r, a)
		if d.Code == 0 {
			next.ServeHTTP(w, r)
			return
		}
		h.refused.WithLabelValues(d.Reason).Inc()
		h.cfg.Log.Warn("api request refused", "reason", d.Reason, "user", d.Caller.User, "method", r.Method,
			"path", r.URL.Path, "access", a.String(), "remote", r.RemoteAddr, "why", d.Message)
		if d.Code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dovetail"`)
		}
		id, _ := h.cfg.Backend.Leader()
		writeJSON(w, d.Code, Error{Error: d.Message, Reason: d.Reason, Leader: id, NotApplied: true})
	})
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderServedBy, h.cfg.Backend.ID())
	h.mux.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (h *Handler) fail(w http.ResponseWriter, code int, err error) {
	id, _ := h.cfg.Backend.Leader()
	writeJSON(w, code, Error{Error: err.Error(), Leader: id})
}

// refuse answers a request that certainly had no effect.
func (h *Handler) refuse(w http.ResponseWriter, code int, err error) {
	id, _ := h.cfg.Backend.Leader()
	writeJSON(w, code, Error{Error: err.Error(), Leader: id, NotApplied: true})
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	b := h.cfg.Backend
	id, _ := b.Leader()
	if id == "" {
		h.fail(w, http.StatusServiceUnavailable, errors.New("no leader known"))
		return
	}
	rf := b.Raft()
	applied, commit := rf.AppliedIndex(), rf.CommitIndex()
	if commit > applied+h.cfg.MaxLag {
		h.fail(w, http.StatusServiceUnavailable, fmt.Errorf("fsm behind: applied %d, commit %d", applied, commit))
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// read wraps a read handler: ?consistent=1 routes it to the leader, which
// passes a barrier first (retried across leadership changes, see viaLeader).
func (h *Handler) read(fn func(w http.ResponseWriter, r *http.Request, st *fsm.State)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query().Get("consistent"); q == "1" || q == "true" {
			h.viaLeader(w, r, nil, true, func(ctx context.Context, w http.ResponseWriter) error {
				if err := h.cfg.Backend.Barrier(ctx); err != nil {
					// A barrier writes nothing the state machine acts on.
					return &retryable{err: err, notApplied: true}
				}
				fn(w, r, h.cfg.Backend.State())
				return nil
			})
			return
		}
		fn(w, r, h.cfg.Backend.State())
	}
}

// leaderOnly serves next on the leader and forwards the request to it from
// any other replica.
func (h *Handler) leaderOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.cfg.Backend.IsLeader() {
			h.forward(w, r, nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// forward proxies a request to the leader once.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Header.Get(HeaderForwarded) != "" {
		h.refuse(w, http.StatusServiceUnavailable, errors.New("not the leader (request already forwarded)"))
		return
	}
	addr := h.cfg.Backend.LeaderHTTPAddr()
	if addr == "" {
		h.refuse(w, http.StatusServiceUnavailable, errors.New("no leader known"))
		return
	}
	if !strings.Contains(addr, "://") {
		if h.cfg.ForwardTLS {
			addr = "https://" + addr
		} else {
			addr = "http://" + addr
		}
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, addr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		h.fail(w, http.StatusInternalServerError, err)
		return
	}
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	copySignedHeaders(req.Header, r.Header)
	// The leader authorises the caller again: a follower is not trusted to
	// vouch for it, and the token only reaches another coordinator.
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	req.Header.Set(HeaderForwarded, h.cfg.Backend.ID())
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		// As in forwardOnce: the next request must not reuse a pooled
		// connection to an address that may be gone.
		h.cfg.Client.CloseIdleConnections()
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			h.refuse(w, http.StatusBadGateway, fmt.Errorf("forward to leader: %w", err))
			return
		}
		h.fail(w, http.StatusBadGateway, fmt.Errorf("forward to leader: %w", err))
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (h *Handler) postReport(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, report.MaxBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			if h.intake != nil {
				h.intake.refused.WithLabelValues(RefusedTooLarge).Inc()
			}
			h.cfg.Log.Warn("report refused", "reason", RefusedTooLarge, "limit", report.MaxBytes, "remote", r.RemoteAddr)
			h.fail(w, http.StatusRequestEntityTooLarge, fmt.Errorf("report larger than %d bytes", report.MaxBytes))
			return
		}
		h.fail(w, http.StatusBadRequest, err)
		return
	}
	if h.intake != nil && r.Header.Get(report.HeaderSignature) == "" {
		// Refused on any replica, before decoding: nothing unsigned is read.
		h.deny(w, r, refuseWith(http.StatusUnauthorized, RefusedNoCredentials, "report is not signed (attestation required)"), "", "")
		return
	}
	var rep report.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		h.fail(w, http.StatusBadRequest, fmt.Errorf("decode report: %w", err))
		return
	}
	if rep.ID == "" || rep.NodeName == "" || rep.Kind == "" {
		h.fail(w, http.StatusBadRequest, errors.New("report needs id, kind and nodeName"))
		return
	}
	cmd := fsm.ReportReceived{Report: rep, ReceivedAt: h.cfg.Now()}
	// Reports are deduplicated by ID in the FSM, so a retry after a commit
	// with unknown outcome (leadership lost mid-commit) is safe. A signed
	// report carries a sequence number the FSM refuses to see twice, so it
	// is only retried when the attempt certainly wrote nothing.
	h.viaLeader(w, r, body, h.intake == nil, func(ctx context.Context, w http.ResponseWriter) error {
		cmd := cmd
		if h.intake != nil {
			// The leader judges the signature against the committed binding; a
			// follower's forward carries the agent's headers, never its own word.
			inst, seq, rf := h.authenticateReport(r, body, &cmd.Report)
			if rf != nil {
				h.deny(w, r, rf, inst, rep.NodeName)
				return nil
			}
			cmd.AttestedInstance, cmd.Seq = inst, seq
		}
		err := h.cfg.Backend.Apply(ctx, cmd)
		if err != nil {
			if errors.Is(err, fsm.ErrReplayed) {
				h.deny(w, r, refuseWith(http.StatusForbidden, RefusedReplayedRequest, "%w", err), cmd.AttestedInstance, rep.NodeName)
				return nil
			}
			h.cfg.Log.Warn("commit report", "id", rep.ID, "node", rep.NodeName, "err", err)
			if le := leadershipErr(err); le != err {
				return le
			}
			h.fail(w, http.StatusServiceUnavailable, err)
			return nil
		}
		writeJSON(w, http.StatusOK, ReportAck{ID: rep.ID, Accepted: true, Leader: h.cfg.Backend.ID()})
		return nil
	})
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request, st *fsm.State) {
	b := h.cfg.Backend
	rf := b.Raft()
	id, addr := b.Leader()
	s := Status{
		Replica: b.ID(), State: rf.State().String(), Term: b.Term(), LeaderID: id, LeaderAddr: addr,
		AppliedIndex: rf.AppliedIndex(), CommitIndex: rf.CommitIndex(),
		EpochTerm: st.Epoch.Term, EpochLeader: st.Epoch.Leader, EpochSince: st.Epoch.At,
		InGrace: st.InGracePeriod(h.cfg.Now(), h.cfg.NodeGrace), Launches: len(st.Intents),
		OpenLaunches: len(st.OpenIntents()), Nodes: len(st.Nodes), Disruptions: len(st.Disruptions),
		Rollouts: len(st.Rollouts), ICE: len(st.ICE),
	}
	if servers, err := b.Servers(); err == nil {
		for _, sv := range servers {
			s.Servers = append(s.Servers, Server{ID: string(sv.ID), Address: string(sv.Address),
				Suffrage: sv.Suffrage.String(), Leader: string(sv.ID) == id})
		}
	}
	writeJSON(w, http.StatusOK, s)
}

// NodesFromState joins reports, bindings, intents and the ledger into rows.
func NodesFromState(st *fsm.State) []Node {
	rows := map[string]*Node{}
	get := func(name string) *Node {
		n := rows[name]
		if n == nil {
			n = &Node{Name: name}
			rows[name] = n
		}
		return n
	}
	for _, in := range st.Intents {
		if in.NodeName == "" {
			continue
		}
		n := get(in.NodeName)
		n.NodeClaim, n.NodePool = in.NodeClaim, in.NodePool
		if in.Instance != nil {
			n.InstanceID = in.Instance.ID
		}
	}
	for _, b := range st.Bindings {
		if b.NodeName == "" {
			continue
		}
		n := get(b.NodeName)
		n.InstanceID, n.NodeClaim = b.InstanceID, b.NodeClaim
		if b.NodePool != "" {
			n.NodePool = b.NodePool
		}
	}
	for name, s := range st.Nodes {
		n := get(name)
		if s.InstanceID != "" {
			n.InstanceID = s.InstanceID
		}
		n.Health, n.Replace, n.LastReport = s.Health, s.ReplaceRequested, s.LastReportAt
		for _, c := range s.Checks {
			if c.State != "ok" {
				n.Checks = append(n.Checks, c.Name+"="+c.State)
			}
		}
		if s.Interruption != nil {
			n.Interruption = string(s.Interruption.Kind)
			if s.Interruption.Action != "" {
				n.Interruption += "/" + s.Interruption.Action
			}
			n.Deadline = s.Interruption.Deadline
		}
		if s.Drain != nil {
			switch {
			case s.Drain.Done:
				n.Drain = "done"
			case s.Drain.Blocked != "":
				n.Drain = "blocked: " + s.Drain.Blocked
			default:
				n.Drain = fmt.Sprintf("%d remaining", s.Drain.PodsRemaining)
			}
		}
	}
	for name, d := range st.Disruptions {
		n := get(name)
		n.Disruption = d.Reason
		if d.Phase != "" {
			n.Disruption += "/" + d.Phase
		}
	}
	out := make([]Node, 0, len(rows))
	for _, n := range rows {
		out = append(out, *n)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

func (h *Handler) nodes(w http.ResponseWriter, r *http.Request, st *fsm.State) {
	writeJSON(w, http.StatusOK, NodesFromState(st))
}

func (h *Handler) node(w http.ResponseWriter, r *http.Request, st *fsm.State) {
	name := r.PathValue("name")
	for _, n := range NodesFromState(st) {
		if n.Name == name {
			writeJSON(w, http.StatusOK, n)
			return
		}
	}
	h.fail(w, http.StatusNotFound, fmt.Errorf("node %q unknown", name))
}

func (h *Handler) launches(w http.ResponseWriter, r *http.Request, st *fsm.State) {
	var out []*fsm.Intent
	open := r.URL.Query().Get("open") != ""
	for _, in := range st.Intents {
		if !open || in.Open() {
			out = append(out, in)
		}
	}
	fsm.SortIntents(out)
	writeJSON(w, http.StatusOK, Launches{Intents: out})
}

func (h *Handler) rollouts(w http.ResponseWriter, r *http.Request, st *fsm.State) {
	out := make([]*fsm.Rollout, 0, len(st.Rollouts))
	for _, ro := range st.Rollouts {
		out = append(out, ro)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].NodePool < out[b].NodePool })
	writeJSON(w, http.StatusOK, Rollouts{Rollouts: out})
}

func (h *Handler) disruptions(w http.ResponseWriter, r *http.Request, st *fsm.State) {
	out := make([]*fsm.Disruption, 0, len(st.Disruptions))
	for _, d := range st.Disruptions {
		out = append(out, d)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].NodeName < out[b].NodeName })
	writeJSON(w, http.StatusOK, Disruptions{Disruptions: out})
}
