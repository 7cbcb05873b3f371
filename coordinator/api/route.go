package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
)

// leadershipErr wraps a leader-side failure of a barrier or commit in a
// *retryable when leadership moved (or raft could not take the entry in
// time); other errors (an FSM refusal) are returned as they are.
func leadershipErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, raftnode.ErrNotLeader) || errors.Is(err, raft.ErrNotLeader) ||
		errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrEnqueueTimeout) ||
		errors.Is(err, raft.ErrRaftShutdown) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return &retryable{err: err, notApplied: refusedBeforeLog(err) || errors.Is(err, raft.ErrEnqueueTimeout)}
	}
	return err
}

// retryable is what a leader-side handler returns when it could not serve
// the request because leadership moved (the barrier or the commit failed
// with leadership lost, or this replica stopped leading): nothing was
// written to the response, and the request may be tried again on whichever
// replica leads next. notApplied says the request certainly had no effect.
type retryable struct {
	err        error
	notApplied bool
}

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

// viaLeader serves a request that only the leader may answer (consistent
// reads, report commits, rollout resumes), across leadership changes.
//
// Why: an election can happen between a follower learning the leader and
// the leader serving the request (a heartbeat missed on a loaded machine is
// enough). Before, the request then failed with "not the leader (request
// already forwarded)" or "leadership lost while committing log" although a
// new leader was elected within milliseconds. Now the replica the client
// reached keeps the request until it is served or the retry window (the
// request's deadline, at most Config.RetryWindow) ends: it serves it itself
// when it leads, else forwards it to the leader it currently knows, and on a
// leadership failure waits for the next leader and tries again.
//
// A forwarded request is never forwarded again (no loops during an
// election): the leader that received it answers, and a replica that is no
// longer leader refuses it so that the origin retries.
//
// idempotent says a retry after an unknown outcome is safe (reads; reports,
// which the FSM dedupes by ID). For other requests only refusals that
// certainly had no effect are retried.
func (h *Handler) viaLeader(w http.ResponseWriter, r *http.Request, body []byte, idempotent bool,
	local func(ctx context.Context, w http.ResponseWriter) error) {
	b := h.cfg.Backend
	if r.Header.Get(HeaderForwarded) != "" {
		if !b.IsLeader() {
			h.refuse(w, http.StatusServiceUnavailable, errors.New("not the leader (request already forwarded)"))
			return
		}
		if err := local(r.Context(), w); err != nil {
			h.answerRetryable(w, err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RetryWindow)
	defer cancel()
	var (
		last    error
		unknown bool // some attempt may have taken effect
		wait    = 10 * time.Millisecond
	)
	for attempt := 1; ; attempt++ {
		var err error
		if b.IsLeader() {
			err = local(ctx, w)
			if err == nil {
				return
			}
		} else {
			var done bool
			done, err = h.forwardOnce(ctx, w, r, body, idempotent, attempt)
			if done {
				return
			}
		}
		var re *retryable
		if errors.As(err, &re) && !re.notApplied {
			unknown = true
			if !idempotent {
				h.fail(w, http.StatusServiceUnavailable, err)
				return
			}
		}
		last = err
		// Wait for leadership to settle. The first waits are short: a new
		// leader is usually known within an election timeout.
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			err := fmt.Errorf("%w (gave up after %d attempts: %w)", last, attempt, ctx.Err())
			if unknown {
				h.fail(w, http.StatusServiceUnavailable, err)
			} else {
				h.refuse(w, http.StatusServiceUnavailable, err)
			}
			return
		case <-t.C:
		}
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}

// answerRetryable writes the answer for a leader-side failure when there is
// no retry to be done here (the request was forwarded to us, and the
// replica that forwarded it retries).
func (h *Handler) answerRetryable(w http.ResponseWriter, err error) {
	var re *retryable
	if errors.As(err, &re) && re.notApplied {
		h.refuse(w, http.StatusServiceUnavailable, err)
		return
	}
	h.fail(w, http.StatusServiceUnavailable, err)
}

// forwardOnce sends the request to the leader this replica knows. done
// reports that the leader's answer was copied to w; otherwise err is a
// *retryable (or another error when no leader is known) and w is untouched.
//
// An idempotent request's attempt is bounded (ForwardAttemptTimeout, doubled
// each attempt so a slow but live leader is still waited for): a connection
// that went dead (the leader's IP changed under its name) otherwise holds
// the request until the whole window, and the client, gave up. A request
// that is not idempotent keeps the whole window: cutting it short would only
// turn a slow success into an unknown outcome.
func (h *Handler) forwardOnce(ctx context.Context, w http.ResponseWriter, r *http.Request, body []byte,
	idempotent bool, attempt int) (done bool, err error) {
	addr := h.cfg.Backend.LeaderHTTPAddr()
	if addr == "" {
		return false, &retryable{err: errors.New("no leader known"), notApplied: true}
	}
	if idempotent {
		bound := h.cfg.ForwardAttemptTimeout << min(attempt-1, 4)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	if !strings.Contains(addr, "://") {
		if h.cfg.ForwardTLS {
			addr = "https://" + addr
		} else {
			addr = "http://" + addr
		}
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, addr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		h.fail(w, http.StatusInternalServerError, err)
		return true, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	copySignedHeaders(req.Header, r.Header)
	// The leader authorises the caller again: a follower is not trusted to
	// vouch for it, and the token only reaches another coordinator.
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	req.Header.Set(HeaderForwarded, h.cfg.Backend.ID())
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		// The pool may hold more connections to an address that is gone:
		// drop them so the next attempt dials (and resolves) the leader
		// afresh. The failed connection itself the transport closed.
		h.cfg.Client.CloseIdleConnections()
		var op *net.OpError
		notApplied := errors.As(err, &op) && op.Op == "dial"
		if !notApplied && !idempotent && ctx.Err() == nil {
			// The leader may have acted before the connection broke.
			h.fail(w, http.StatusBadGateway, fmt.Errorf("forward to leader: %w", err))
			return true, nil
		}
		return false, &retryable{err: fmt.Errorf("forward to leader: %w", err), notApplied: notApplied}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		raw, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e Error
		if rerr == nil && json.Unmarshal(raw, &e) == nil && (e.NotApplied || idempotent) {
			return false, &retryable{err: fmt.Errorf("leader %s: %s", resp.Header.Get(HeaderServedBy), e.Error),
				notApplied: e.NotApplied}
		}
		copyResponse(w, resp, bytes.NewReader(raw))
		return true, nil
	}
	copyResponse(w, resp, resp.Body)
	return true, nil
}

func copyResponse(w http.ResponseWriter, resp *http.Response, body io.Reader) {
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, body)
}
