package api

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/coordinator/attest"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

// PathAttestReset is POST /v1/attestations/{instance}/reset: forget an
// instance's key binding so a reinstalled agent (new key) may attest again.
// A mutating operator endpoint: it must sit behind the API's authorisation.
const PathAttestReset = "/v1/attestations/{instance}/reset"

// AttestResetPath is the URL path that resets instance's binding.
func AttestResetPath(instance string) string {
	return strings.Replace(PathAttestReset, "{instance}", instance, 1)
}

// Refusal reasons of the report intake: the log field and the reason label
// of dovetail_report_refused_total. Stable values.
const (
	RefusedNoCredentials = "no_credentials"
	RefusedBadSignature  = "bad_signature"
	RefusedMalformed     = "malformed_document"
	RefusedOtherAccount  = "other_account"
	RefusedOtherRegion   = "other_region"
	RefusedNotOwned      = "not_owned"
	RefusedOtherNode     = "other_node"
	// RefusedReplayedDocument: an identity document for an instance already
	// bound to another key (a captured document replayed by someone else,
	// or a reinstalled agent awaiting an operator's reset).
	RefusedReplayedDocument = "replayed_document"
	RefusedNotAttested      = "not_attested"
	RefusedReplayedRequest  = "replayed_request"
	RefusedStale            = "stale_request"
	RefusedRateLimited      = "rate_limited"
	RefusedTooLarge         = "too_large"
)

// AttestConfig turns on node attestation for the report intake: every
// report must be signed with a key bound to an EC2 instance this cluster
// launched, through POST report.AttestPath first.
type AttestConfig struct {
	Verifier *attest.Verifier
	// MaxSkew bounds a signed request's time against this clock (default
	// report.MaxClockSkew).
	MaxSkew time.Duration
	// Rate and Burst are the token bucket per attested instance: Burst
	// requests at once, refilled at Rate per second (defaults 2/s, 30). An
	// agent sends a few reports a minute; a spot notice with its drain
	// progress is a burst of a handful.
	Rate  float64
	Burst int
	// AttestRate and AttestBurst bound attestations before they are
	// verified, over all senders (defaults 100/s, 500): verifying an RSA
	// signature is the one thing an unauthenticated sender can make the
	// leader do, and a whole cluster's agents starting at once fit the burst.
	AttestRate  float64
	AttestBurst int
	// Registerer receives dovetail_report_refused_total.
	Registerer prometheus.Registerer
}

// maxAttestBytes bounds an attestation request: document, rsa2048 PKCS #7
// and key are ~3 KiB together.
const maxAttestBytes = 16 << 10

type intake struct {
	cfg     AttestConfig
	refused *prometheus.CounterVec
	mu      sync.Mutex
	buckets map[string]*bucket
	global  *bucket // unverified attestations, all senders
}

// allowAttest takes a token from the shared bucket of unverified
// attestations.
func (in *intake) allowAttest(now time.Time) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	b := in.global
	if b.at.IsZero() {
		b.at = now
	}
	if el := now.Sub(b.at).Seconds(); el > 0 {
		b.tokens = min(float64(in.cfg.AttestBurst), b.tokens+el*in.cfg.AttestRate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func newIntake(cfg *AttestConfig) *intake {
	if cfg == nil {
		return nil
	}
	c := *cfg
	if c.MaxSkew <= 0 {
		c.MaxSkew = report.MaxClockSkew
	}
	if c.Rate <= 0 {
		c.Rate = 2
	}
	if c.Burst <= 0 {
		c.Burst = 30
	}
	if c.AttestRate <= 0 {
		c.AttestRate = 100
	}
	if c.AttestBurst <= 0 {
		c.AttestBurst = 500
	}
	in := &intake{cfg: c, buckets: map[string]*bucket{}, global: &bucket{tokens: float64(c.AttestBurst)}}
	in.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dovetail_report_refused_total",
		Help: "Agent reports and attestations refused, by reason.",
	}, []string{"reason"})
	for _, r := range []string{RefusedNoCredentials, RefusedBadSignature, RefusedMalformed, RefusedOtherAccount,
		RefusedOtherRegion, RefusedNotOwned, RefusedOtherNode, RefusedReplayedDocument, RefusedNotAttested,
		RefusedReplayedRequest, RefusedStale, RefusedRateLimited, RefusedTooLarge} {
		in.refused.WithLabelValues(r)
	}
	if c.Registerer != nil {
		if err := c.Registerer.Register(in.refused); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					in.refused = existing
				}
			}
		}
	}
	return in
}

// bucket is a token bucket on the injected clock.
type bucket struct {
	tokens float64
	at     time.Time
}

// allow takes a token for key at now.
func (in *intake) allow(key string, now time.Time) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	b := in.buckets[key]
	if b == nil {
		if len(in.buckets) >= 10000 {
			// Keys are attested instances (bounded by the cluster's nodes);
			// drop the full, idle buckets if that bound is ever reached.
			for k, o := range in.buckets {
				if now.Sub(o.at).Seconds()*in.cfg.Rate >= float64(in.cfg.Burst) {
					delete(in.buckets, k)
				}
			}
		}
		b = &bucket{tokens: float64(in.cfg.Burst), at: now}
		in.buckets[key] = b
	}
	if el := now.Sub(b.at).Seconds(); el > 0 {
		b.tokens = min(float64(in.cfg.Burst), b.tokens+el*in.cfg.Rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// refusal is a refused intake request.
type refusal struct {
	code   int
	reason string
	err    error
}

func (r *refusal) Error() string { return r.reason + ": " + r.err.Error() }

func refuseWith(code int, reason string, format string, args ...any) *refusal {
	return &refusal{code: code, reason: reason, err: fmt.Errorf(format, args...)}
}

// deny answers a refused request, logs the reason and counts it. Nothing
// was committed.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, rf *refusal, instance, node string) {
	if h.intake != nil {
		h.intake.refused.WithLabelValues(rf.reason).Inc()
	}
	h.cfg.Log.Warn("report refused", "reason", rf.reason, "path", r.URL.Path, "instance", instance, "node", node,
		"remote", r.RemoteAddr, "err", rf.err)
	if rf.code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Dovetail-Node realm="dovetail"`)
	}
	if rf.code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	id, _ := h.cfg.Backend.Leader()
	writeJSON(w, rf.code, Error{Error: rf.Error(), Leader: id, NotApplied: true})
}

// view runs fn on the applied state without copying it when the backend
// allows (raftnode.Node does); the intake runs on every report.
func (h *Handler) view(fn func(*fsm.State)) {
	if v, ok := h.cfg.Backend.(interface{ View(func(*fsm.State)) }); ok {
		v.View(fn)
		return
	}
	fn(h.cfg.Backend.State())
}

// checkSigned verifies a signed request's headers against key and clock.
func (in *intake) checkSigned(r *http.Request, body []byte, key ed25519.PublicKey, now time.Time) (string, int64, *refusal) {
	inst, seq, sig, err := report.SignedBy(r.Header)
	if errors.Is(err, report.ErrUnsigned) {
		return "", 0, refuseWith(http.StatusUnauthorized, RefusedNoCredentials, "%w", err)
	}
	if err != nil {
		return "", 0, refuseWith(http.StatusUnauthorized, RefusedBadSignature, "%w", err)
	}
	if d := now.Sub(time.Unix(0, seq)); d > in.cfg.MaxSkew || d < -in.cfg.MaxSkew {
		return inst, seq, refuseWith(http.StatusUnauthorized, RefusedStale, "request signed at %s, %s from this coordinator's clock (limit %s)",
			time.Unix(0, seq).UTC().Format(time.RFC3339Nano), d.Round(time.Millisecond), in.cfg.MaxSkew)
	}
	if key != nil && !ed25519.Verify(key, report.StringToSign(r.Method, r.URL.Path, inst, seq, body), sig) {
		return inst, seq, refuseWith(http.StatusUnauthorized, RefusedBadSignature, "request signature does not verify with the key bound to %s", inst)
	}
	return inst, seq, nil
}

// authenticateReport runs on the leader for a decoded report: the request
// must be signed by the key bound to an instance this cluster launched, the
// report must be about that instance's node, within the rate limit, and not
// a replay.
func (h *Handler) authenticateReport(r *http.Request, body []byte, rep *report.Report) (string, int64, *refusal) {
	in := h.intake
	now := h.cfg.Now()
	inst, seq, rf := in.checkSigned(r, body, nil, now)
	if rf != nil {
		return inst, seq, rf
	}
	var (
		key       ed25519.PublicKey
		lastSeq   int64
		owned     bool
		node      string
		otherInst string
	)
	h.view(func(st *fsm.State) {
		if a := st.Attestations[inst]; a != nil {
			key, lastSeq, node = append(ed25519.PublicKey(nil), a.PublicKey...), a.LastSeq, a.NodeName
		}
		owned = st.Bindings[inst] != nil
		if n := st.NodeOfInstance(inst); n != "" {
			node = n
		}
		otherInst = st.InstanceOfNode(rep.NodeName)
	})
	switch {
	case !owned:
		return inst, seq, refuseWith(http.StatusForbidden, RefusedNotOwned, "no NodeClaim of this cluster owns instance %s", inst)
	case key == nil:
		return inst, seq, refuseWith(http.StatusUnauthorized, RefusedNotAttested, "instance %s has not attested (POST %s first)", inst, report.AttestPath)
	}
	if _, _, rf := in.checkSigned(r, body, key, now); rf != nil {
		return inst, seq, rf
	}
	if seq <= lastSeq {
		return inst, seq, refuseWith(http.StatusForbidden, RefusedReplayedRequest, "sequence %d already used (last %d)", seq, lastSeq)
	}
	if rep.NodeName != node || (otherInst != "" && otherInst != inst) || (rep.InstanceID != "" && rep.InstanceID != inst) {
		return inst, seq, refuseWith(http.StatusForbidden, RefusedOtherNode, "instance %s (node %q) may not report about node %q", inst, node, rep.NodeName)
	}
	if !in.allow(inst, now) {
		return inst, seq, refuseWith(http.StatusTooManyRequests, RefusedRateLimited, "instance %s is over %g reports/s (burst %d)", inst, in.cfg.Rate, in.cfg.Burst)
	}
	// The attested identity is what the report is about, whatever it said.
	rep.InstanceID = inst
	return inst, seq, nil
}

// AttestAck is the answer of POST report.AttestPath.
type AttestAck struct {
	InstanceID string `json:"instanceID"`
	NodeName   string `json:"nodeName"`
	// Renewed is set when the instance was already bound to this key.
	Renewed bool   `json:"renewed,omitempty"`
	Leader  string `json:"leader"`
}

// postAttest binds an instance to the agent's key (trust on first use). It
// runs on the leader: followers forward the request unchanged.
func (h *Handler) postAttest(w http.ResponseWriter, r *http.Request) {
	if h.intake == nil {
		h.refuse(w, http.StatusNotFound, errors.New("attestation is not enabled on this coordinator"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAttestBytes))
	if err != nil {
		h.deny(w, r, refuseWith(http.StatusRequestEntityTooLarge, RefusedTooLarge, "attestation over %d bytes", maxAttestBytes), "", "")
		return
	}
	if !h.cfg.Backend.IsLeader() {
		h.forward(w, r, body)
		return
	}
	var req report.Attestation
	if err := json.Unmarshal(body, &req); err != nil {
		h.deny(w, r, refuseWith(http.StatusBadRequest, RefusedMalformed, "decode attestation: %w", err), "", "")
		return
	}
	ack, rf := h.attest(r, body, &req)
	if rf != nil {
		h.deny(w, r, rf, r.Header.Get(report.HeaderInstance), req.NodeName)
		return
	}
	h.cfg.Log.Info("instance attested", "instance", ack.InstanceID, "node", ack.NodeName, "format", req.Format, "renewed", ack.Renewed)
	writeJSON(w, http.StatusOK, ack)
}

func (h *Handler) attest(r *http.Request, body []byte, req *report.Attestation) (AttestAck, *refusal) {
	in := h.intake
	if req.Document == "" && req.Signature == "" {
		return AttestAck{}, refuseWith(http.StatusUnauthorized, RefusedNoCredentials, "no identity document or signature")
	}
	if !in.allowAttest(h.cfg.Now()) {
		return AttestAck{}, refuseWith(http.StatusTooManyRequests, RefusedRateLimited, "over %g unverified attestations/s (burst %d)", in.cfg.AttestRate, in.cfg.AttestBurst)
	}
	doc, err := in.cfg.Verifier.VerifyFormat(attest.Format(req.Format), []byte(req.Document), []byte(req.Signature))
	if err != nil {
		reason := string(attest.ReasonOf(err))
		code := http.StatusUnauthorized
		switch attest.ReasonOf(err) {
		case attest.ReasonOtherAccount, attest.ReasonOtherRegion:
			code = http.StatusForbidden
		case "":
			reason = RefusedBadSignature
		}
		return AttestAck{}, refuseWith(code, reason, "%w", err)
	}
	pub, err := base64.StdEncoding.DecodeString(req.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return AttestAck{}, refuseWith(http.StatusBadRequest, RefusedMalformed, "publicKey must be a base64 %d-byte Ed25519 key", ed25519.PublicKeySize)
	}
	// Proof of possession: the request is signed by the key it presents,
	// for the instance the document names.
	now := h.cfg.Now()
	inst, seq, rf := in.checkSigned(r, body, pub, now)
	if rf != nil {
		return AttestAck{}, rf
	}
	if inst != doc.InstanceID {
		return AttestAck{}, refuseWith(http.StatusUnauthorized, RefusedBadSignature, "request signed for %s, document is %s", inst, doc.InstanceID)
	}
	var (
		owned     bool
		node      string
		otherInst string
		bound     ed25519.PublicKey
		lastSeq   int64
	)
	h.view(func(st *fsm.State) {
		owned = st.Bindings[inst] != nil
		node = st.NodeOfInstance(inst)
		otherInst = st.InstanceOfNode(req.NodeName)
		if a := st.Attestations[inst]; a != nil {
			bound, lastSeq = append(ed25519.PublicKey(nil), a.PublicKey...), a.LastSeq
		}
	})
	switch {
	case !owned:
		return AttestAck{}, refuseWith(http.StatusForbidden, RefusedNotOwned, "no NodeClaim of this cluster owns instance %s", inst)
	case req.NodeName == "" || (node != "" && node != req.NodeName) || (otherInst != "" && otherInst != inst):
		return AttestAck{}, refuseWith(http.StatusForbidden, RefusedOtherNode, "instance %s is node %q, not %q", inst, node, req.NodeName)
	case bound != nil && !bound.Equal(ed25519.PublicKey(pub)):
		return AttestAck{}, refuseWith(http.StatusForbidden, RefusedReplayedDocument,
			"instance %s is bound to another key (key_mismatch); an operator must reset it (dovetail attestation reset %s)", inst, inst)
	case seq <= lastSeq:
		return AttestAck{}, refuseWith(http.StatusForbidden, RefusedReplayedRequest, "sequence %d already used (last %d)", seq, lastSeq)
	}
	if !in.allow(inst, now) {
		return AttestAck{}, refuseWith(http.StatusTooManyRequests, RefusedRateLimited, "instance %s is over %g requests/s", inst, in.cfg.Rate)
	}
	err = h.cfg.Backend.Apply(r.Context(), fsm.AttestBind{Attestation: fsm.Attestation{
		InstanceID: inst, NodeName: req.NodeName, PublicKey: pub, Format: req.Format, Since: now, LastSeq: seq}})
	switch {
	case errors.Is(err, fsm.ErrKeyMismatch):
		return AttestAck{}, refuseWith(http.StatusForbidden, RefusedReplayedDocument, "%w", err)
	case errors.Is(err, fsm.ErrNotOwned):
		return AttestAck{}, refuseWith(http.StatusForbidden, RefusedNotOwned, "%w", err)
	case err != nil:
		return AttestAck{}, &refusal{code: http.StatusServiceUnavailable, reason: "commit_failed", err: err}
	}
	id := h.cfg.Backend.ID()
	return AttestAck{InstanceID: inst, NodeName: req.NodeName, Renewed: bound != nil, Leader: id}, nil
}

// AttestResetAck is the answer of POST PathAttestReset.
type AttestResetAck struct {
	InstanceID string `json:"instanceID"`
	// Was is false when the instance had no binding.
	Was    bool   `json:"was"`
	Leader string `json:"leader"`
}

func (h *Handler) resetAttestation(w http.ResponseWriter, r *http.Request) {
	inst := r.PathValue("instance")
	if inst == "" || len(inst) > 64 {
		h.refuse(w, http.StatusBadRequest, errors.New("instance ID required"))
		return
	}
	if !h.cfg.Backend.IsLeader() {
		h.forward(w, r, nil)
		return
	}
	was := false
	h.view(func(st *fsm.State) { was = st.Attestations[inst] != nil })
	if err := h.cfg.Backend.Apply(r.Context(), fsm.AttestReset{InstanceID: inst}); err != nil {
		h.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	h.cfg.Log.Warn("attestation reset by operator", "instance", inst, "was", was, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, AttestResetAck{InstanceID: inst, Was: was, Leader: h.cfg.Backend.ID()})
}

// copySignedHeaders carries the agent's signature to the leader when a
// follower forwards: the leader verifies it itself, a follower's word is
// worth nothing.
func copySignedHeaders(dst, src http.Header) {
	for _, k := range []string{report.HeaderInstance, report.HeaderSeq, report.HeaderSignature} {
		if v := src.Get(k); v != "" {
			dst.Set(k, v)
		}
	}
}

// ResetAttestation forgets instance's key binding (POST PathAttestReset on
// any replica), so its agent may attest again with a new key.
func (c *Client) ResetAttestation(ctx context.Context, instance string) (*AttestResetAck, error) {
	var r AttestResetAck
	if err := c.Post(ctx, AttestResetPath(url.PathEscape(instance)), &r); err != nil {
		return nil, err
	}
	return &r, nil
}
