package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

// fakeReplica is a replica whose leadership the test moves by hand.
type fakeReplica struct {
	id       string
	leading  atomic.Bool
	leaderAt func() string // HTTP address of the leader this replica believes in
	barrier  func() error  // also the outcome of Apply, when set
	mu       sync.Mutex
	applied  []fsm.Command
}

func (f *fakeReplica) ID() string                      { return f.id }
func (f *fakeReplica) IsLeader() bool                  { return f.leading.Load() }
func (f *fakeReplica) Term() uint64                    { return 1 }
func (f *fakeReplica) Leader() (string, string)        { return "", "" }
func (f *fakeReplica) LeaderHTTPAddr() string          { return f.leaderAt() }
func (f *fakeReplica) Raft() *raft.Raft                { return nil }
func (f *fakeReplica) Servers() ([]raft.Server, error) { return nil, nil }
func (f *fakeReplica) State() *fsm.State {
	st := fsm.NewState()
	st.Nodes["node-a"] = &fsm.NodeStatus{InstanceID: "i-" + f.id}
	return st
}
func (f *fakeReplica) Barrier(context.Context) error {
	if f.barrier != nil {
		return f.barrier()
	}
	return nil
}
func (f *fakeReplica) Apply(_ context.Context, c fsm.Command) error {
	if !f.leading.Load() {
		return raft.ErrNotLeader
	}
	if f.barrier != nil {
		if err := f.barrier(); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.applied = append(f.applied, c)
	f.mu.Unlock()
	return nil
}

// TestRequestsThroughFollowerSurviveLeaderChange: the follower forwards to
// the leader it knows, which has just stepped down (it refuses, or its
// barrier fails with leadership lost); the follower waits for the new
// leader and the request is served there. Before, the client got
// "503 not the leader (request already forwarded)".
func TestRequestsThroughFollowerSurviveLeaderChange(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	old := &fakeReplica{id: "old"}
	next := &fakeReplica{id: "next"}
	fol := &fakeReplica{id: "follower"}
	oldSrv := httptest.NewServer(api.New(api.Config{Backend: old, Log: quiet}))
	defer oldSrv.Close()
	nextSrv := httptest.NewServer(api.New(api.Config{Backend: next, Log: quiet}))
	defer nextSrv.Close()
	folSrv := httptest.NewServer(api.New(api.Config{Backend: fol, Log: quiet, RetryWindow: 5 * time.Second}))
	defer folSrv.Close()

	for _, tc := range []struct {
		name  string
		setup func()
	}{
		{"ex-leader refuses", func() { old.leading.Store(false); old.barrier = nil }},
		{"barrier loses leadership", func() { old.leading.Store(true); old.barrier = func() error { return raft.ErrLeadershipLost } }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			var asked atomic.Int64
			// The follower still believes in the old leader for its first
			// attempt; the election completes meanwhile.
			fol.leaderAt = func() string {
				if asked.Add(1) == 1 {
					return oldSrv.Listener.Addr().String()
				}
				next.leading.Store(true)
				return nextSrv.Listener.Addr().String()
			}
			next.leading.Store(false)
			old.leaderAt = func() string { return nextSrv.Listener.Addr().String() }
			next.leaderAt = old.leaderAt

			var n api.Node
			if err := api.NewClient(folSrv.URL).Get(context.Background(), api.PathNodes+"/node-a?consistent=1", &n); err != nil {
				t.Fatalf("consistent read through follower: %v", err)
			}
			if n.InstanceID != "i-next" {
				t.Fatalf("read served from %q, want the new leader", n.InstanceID)
			}

			asked.Store(0)
			next.leading.Store(false)
			b, _ := json.Marshal(report.Report{ID: "r-" + tc.name, Kind: report.KindHealth, NodeName: "node-a"})
			resp, err := http.Post(folSrv.URL+report.Path, "application/json", strings.NewReader(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			var ack api.ReportAck
			_ = json.NewDecoder(resp.Body).Decode(&ack)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || ack.Leader != "next" {
				t.Fatalf("report through follower: %s, ack %+v", resp.Status, ack)
			}
		})
	}
	if len(old.applied) != 0 {
		t.Fatalf("the deposed leader committed %d reports", len(old.applied))
	}
}

// TestRetryWindowEndsWithNotApplied: with no leader ever known the request
// fails within the window, marked notApplied so callers retry elsewhere.
func TestRetryWindowEndsWithNotApplied(t *testing.T) {
	fol := &fakeReplica{id: "follower", leaderAt: func() string { return "" }}
	srv := httptest.NewServer(api.New(api.Config{Backend: fol, RetryWindow: 300 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()
	start := time.Now()
	resp, err := http.Get(srv.URL + api.PathNodes + "?consistent=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	_ = json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != http.StatusServiceUnavailable || !e.NotApplied {
		t.Fatalf("got %s %+v", resp.Status, e)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("gave up after %v, window 300ms", d)
	}
}
