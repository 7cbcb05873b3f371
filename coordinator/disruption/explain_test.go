package disruption

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type planSource struct {
	p  *Plan
	s  *Snapshot
	ok bool
}

func (ps planSource) LatestPlan() (*Plan, *Snapshot, bool) { return ps.p, ps.s, ps.ok }

func TestExplainHandler(t *testing.T) {
	p := testPool("gp")
	p.ConsolidateAfter = dur(0)
	s := snapshot(t, []Pool{p}, testNode(t, "a", "gp", "m5.large", od), testNode(t, "b", "gp", "m5a.large", od, pod("x", 1500, 4)))
	plan := Decide(s, t0, Options{})
	h := ExplainHandler(planSource{&plan, s, true})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	code, body := get(ExplainNodePath + "a")
	var e Explanation
	if code != 200 || json.Unmarshal([]byte(body), &e) != nil || e.Decision == nil || e.Decision.Reason != ReasonEmpty {
		t.Fatalf("node a: %d %s", code, body)
	}
	code, body = get(ExplainNodePath + "b")
	if code != 200 || !strings.Contains(body, SkipNoCheaperFit) {
		t.Fatalf("node b should say why it stays: %d %s", code, body)
	}
	code, body = get(ExplainPodPath + "default/x")
	if code != 200 || !strings.Contains(body, `"node":"b"`) {
		t.Fatalf("pod: %d %s", code, body)
	}
	if code, _ = get(ExplainPodPath + "only-namespace"); code != http.StatusBadRequest {
		t.Fatalf("bad pod path: %d", code)
	}
	if code, body = get(SnapshotPath); code != 200 || !strings.Contains(body, `"pools"`) {
		t.Fatalf("snapshot: %d", code)
	}
	if code, _ = get(ExplainNodePath + "missing"); code != 200 {
		t.Fatalf("missing node still explains: %d", code)
	}
	rec := httptest.NewRecorder()
	ExplainHandler(planSource{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, ExplainNodePath+"a", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("no plan: %d", rec.Code)
	}
}
