package api_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dovetail-dev/dovetail/coordinator/api"
)

// reviewer answers TokenReviews and SubjectAccessReviews like an API server
// whose RBAC gives "alice" everything and "bob" only gets, and counts calls.
type reviewer struct {
	mu           sync.Mutex
	tokenReviews int
	sars         []authzv1.SubjectAccessReviewSpec
}

func (rv *reviewer) client() *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rv.mu.Lock()
		rv.tokenReviews++
		rv.mu.Unlock()
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		switch tr.Spec.Token {
		case "alice-token":
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "alice", Groups: []string{"admins"}}}
		case "bob-token":
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "bob"}}
		default:
			tr.Status = authnv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		return true, tr, nil
	})
	c.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		rv.mu.Lock()
		rv.sars = append(rv.sars, sar.Spec)
		rv.mu.Unlock()
		switch {
		case sar.Spec.User == "alice":
			sar.Status.Allowed = true
		case sar.Spec.User == "bob" && (sar.Spec.ResourceAttributes == nil || sar.Spec.ResourceAttributes.Verb == "get"):
			sar.Status.Allowed = true
		default:
			sar.Status.Reason = "no RBAC policy matched"
		}
		return true, sar, nil
	})
	return c
}

func TestGuardRefusesAndCounts(t *testing.T) {
	n := soloNode(t)
	rv := &reviewer{}
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	auth, err := api.NewKubeAuth(api.KubeAuthConfig{Client: rv.client(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h := api.New(api.Config{Backend: n, Auth: auth, Registerer: reg, Gatherer: reg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(h)
	defer srv.Close()

	do := func(method, path, token string) (int, api.Error) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &e)
		if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without a Bearer challenge")
		}
		return resp.StatusCode, e
	}
	refused := func(reason string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "dovetail_api_refused_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
		return -1
	}

	if code, _ := do("GET", api.PathHealthz, ""); code != 200 {
		t.Errorf("/healthz without a token = %d, want 200", code)
	}
	if code, e := do("POST", api.RolloutResumePath("gp"), ""); code != 401 || e.Reason != api.RefusedNoToken || !e.NotApplied {
		t.Errorf("resume without a token = %d %+v, want 401 no_token", code, e)
	}
	if code, e := do("POST", api.RolloutResumePath("gp"), "forged"); code != 401 || e.Reason != api.RefusedBadToken ||
		!strings.Contains(e.Error, "invalid bearer token") {
		t.Errorf("resume with a bad token = %d %+v, want 401 bad_token", code, e)
	}
	if code, e := do("POST", api.RolloutResumePath("gp"), "bob-token"); code != 403 || e.Reason != api.RefusedForbidden ||
		!strings.Contains(e.Error, `"bob" may not update dovetail.dev/rollouts/resume gp`) {
		t.Errorf("resume by a viewer = %d %+v, want 403 forbidden", code, e)
	}
	if code, _ := do("GET", api.PathStatus, "bob-token"); code != 200 {
		t.Errorf("status by a viewer = %d, want 200", code)
	}
	if code, _ := do("GET", api.PathMetrics, ""); code != 401 {
		t.Errorf("/metrics without a token = %d, want 401", code)
	}
	// Alice passes authorisation; the rollout does not exist, so the
	// handler itself answers 404.
	if code, e := do("POST", api.RolloutResumePath("gp"), "alice-token"); code != 404 {
		t.Errorf("resume by an admin = %d %+v, want the handler's 404", code, e)
	}
	for reason, want := range map[string]float64{api.RefusedNoToken: 2, api.RefusedBadToken: 1, api.RefusedForbidden: 1} {
		if got := refused(reason); got != want {
			t.Errorf("dovetail_api_refused_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	last := rv.sars[len(rv.sars)-1]
	if ra := last.ResourceAttributes; ra == nil || ra.Group != api.Group || ra.Resource != "rollouts" ||
		ra.Subresource != "resume" || ra.Verb != "update" || ra.Name != "gp" || last.User != "alice" || last.Groups[0] != "admins" {
		t.Errorf("SubjectAccessReview = %+v", last)
	}

	// Cached: repeating requests within the TTLs asks the API server nothing.
	rv.mu.Lock()
	trs, sars := rv.tokenReviews, len(rv.sars)
	rv.mu.Unlock()
	for range 5 {
		do("GET", api.PathStatus, "bob-token")
		do("POST", api.RolloutResumePath("gp"), "forged")
	}
	rv.mu.Lock()
	if rv.tokenReviews != trs || len(rv.sars) != sars {
		t.Errorf("cached answers asked again: %d→%d token reviews, %d→%d SARs", trs, rv.tokenReviews, sars, len(rv.sars))
	}
	rv.mu.Unlock()
	// Past the TTLs both are asked again.
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	do("GET", api.PathStatus, "bob-token")
	rv.mu.Lock()
	if rv.tokenReviews != trs+1 || len(rv.sars) != sars+1 {
		t.Errorf("expired answers not asked again: %d→%d token reviews, %d→%d SARs", trs, rv.tokenReviews, sars, len(rv.sars))
	}
	rv.mu.Unlock()
}

func TestMetricsOpen(t *testing.T) {
	n := soloNode(t)
	auth, err := api.NewKubeAuth(api.KubeAuthConfig{Client: (&reviewer{}).client()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Backend: n, Auth: auth, MetricsOpen: true, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()
	for path, want := range map[string]int{api.PathMetrics: 200, api.PathNodes: 401} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a token = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
