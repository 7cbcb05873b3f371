package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
)

// follower is a replica that does not lead and knows where the leader's API is.
type follower struct {
	*raftnode.Node
	leaderHTTP string
}

func (f follower) ID() string             { return "follower" }
func (f follower) IsLeader() bool         { return false }
func (f follower) LeaderHTTPAddr() string { return f.leaderHTTP }

// TestExtraHandlersAreAnsweredByTheLeader: the explain pages hold leader-only
// state (the latest disruption plan), so asked through a follower they are
// forwarded to the leader instead of answering "no plan on this replica".
func TestExtraHandlersAreAnsweredByTheLeader(t *testing.T) {
	n := soloNode(t)
	page := func(who string) map[string]http.Handler {
		return map[string]http.Handler{"GET /v1/explain/node/": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, who+" "+r.URL.Path)
		})}
	}
	leader := httptest.NewServer(api.New(api.Config{Backend: n, Extra: page("leader")}))
	defer leader.Close()
	fol := httptest.NewServer(api.New(api.Config{Backend: follower{Node: n, leaderHTTP: leader.URL}, Extra: page("follower")}))
	defer fol.Close()

	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, fol.URL+"/v1/explain/node/n1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "leader /v1/explain/node/n1" {
		t.Fatalf("via follower: %s %q, want the leader's answer", resp.Status, b)
	}
	if got := resp.Header.Get(api.HeaderServedBy); got != "solo" {
		t.Fatalf("served by %q, want the leader (solo)", got)
	}
}
