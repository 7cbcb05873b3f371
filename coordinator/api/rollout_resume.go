package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
)

// PathRolloutResume is POST /v1/rollouts/{nodepool}/resume: resume a
// rollout that halted itself because replacements did not become Ready.
const PathRolloutResume = PathRollouts + "/{nodepool}/resume"

// RolloutResumePath is the URL path that resumes pool's rollout.
func RolloutResumePath(pool string) string {
	return strings.Replace(PathRolloutResume, "{nodepool}", pool, 1)
}

// RolloutResumed is the answer of POST /v1/rollouts/{nodepool}/resume.
type RolloutResumed struct {
	Rollout fsm.Rollout `json:"rollout"`
	// Cleared are the nodes whose failed replacement step was forgotten, so
	// the planner may try them again.
	Cleared []string `json:"cleared,omitempty"`
	Leader  string   `json:"leader"`
}

// termApplier is the fenced apply of raftnode.Node; used when the backend
// has it, so a resume never writes across a leadership change.
type termApplier interface {
	ApplyInTerm(ctx context.Context, term uint64, c fsm.Command) error
}

// resumeRollout runs on the leader only (followers forward): the rollout's
// halted state is judged on the leader's state after a barrier, never on a
// follower's possibly stale copy.
func (h *Handler) resumeRollout(w http.ResponseWriter, r *http.Request) {
	pool := r.PathValue("nodepool")
	if pool == "" {
		h.refuse(w, http.StatusBadRequest, errors.New("nodepool name required"))
		return
	}
	b := h.cfg.Backend
	// Not idempotent (a second resume answers 409), so viaLeader retries
	// only refusals that certainly wrote nothing.
	h.viaLeader(w, r, nil, false, func(ctx context.Context, w http.ResponseWriter) error {
		term := b.Term()
		if err := b.Barrier(ctx); err != nil {
			return &retryable{err: err, notApplied: true}
		}
		st := b.State()
		ro, ok := st.Rollouts[pool]
		if !ok {
			h.refuse(w, http.StatusNotFound, fmt.Errorf("nodepool %q has no rollout", pool))
			return nil
		}
		if !ro.Paused {
			_, _, state := disruption.RolloutProgress(*ro)
			h.refuse(w, http.StatusConflict, fmt.Errorf("rollout of nodepool %q is not halted (%s)", pool, state))
			return nil
		}
		ledger := make(map[string]fsm.Disruption, len(st.Disruptions))
		for name, d := range st.Disruptions {
			ledger[name] = *d
		}
		cmds := disruption.ResumeRollout(*ro, ledger)
		var cleared []string
		for i, c := range cmds {
			var err error
			if ta, ok := b.(termApplier); ok {
				err = ta.ApplyInTerm(ctx, term, c)
			} else {
				err = b.Apply(ctx, c)
			}
			if err != nil {
				h.cfg.Log.Warn("resume rollout", "nodepool", pool, "step", i, "err", err)
				// Nothing written yet only when the first command was refused
				// for not leading; later failures leave a partial (idempotent)
				// resume that a retry completes.
				if i == 0 && refusedBeforeLog(err) {
					return &retryable{err: err, notApplied: true}
				}
				h.fail(w, http.StatusServiceUnavailable, err)
				return nil
			}
			if e, ok := c.(fsm.DisruptionEnd); ok {
				cleared = append(cleared, e.NodeName)
			}
		}
		out := RolloutResumed{Cleared: cleared, Leader: b.ID()}
		if cur, ok := b.State().Rollouts[pool]; ok {
			out.Rollout = *cur
		}
		h.cfg.Log.Info("rollout resumed", "nodepool", pool, "target", out.Rollout.TargetAMI, "cleared", cleared)
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

// refusedBeforeLog reports whether an apply error certainly wrote nothing:
// the term fence or raft itself refused the entry. Leadership lost after
// the entry was appended leaves the outcome unknown.
func refusedBeforeLog(err error) bool {
	if errors.Is(err, raft.ErrLeadershipLost) {
		return false
	}
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) ||
		errors.Is(err, raftnode.ErrNotLeader)
}
