package devcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Prometheus part scrapes the replicas it is given (with the bearer
// token) and serves its URL; a replica answering /metrics is "up".
func TestPrometheusPartScrapesCoordinators(t *testing.T) {
	repo, _ := filepath.Abs("..")
	bin := filepath.Join(repo, "bin", "prometheus")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bin/prometheus missing: run make tools")
		}
		t.Skip("bin/prometheus missing (make tools builds it)")
	}
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		_, _ = w.Write([]byte("# TYPE dovetail_raft_term gauge\ndovetail_raft_term 3\n" +
			// A Karpenter summary and another one, quantiles as
			// client_golang writes them.
			"# TYPE karpenter_pods_startup_duration_seconds summary\n" +
			"karpenter_pods_startup_duration_seconds{quantile=\"0\"} 1\n" +
			"karpenter_pods_startup_duration_seconds{quantile=\"0.5\"} 2\n" +
			"karpenter_pods_startup_duration_seconds{quantile=\"1\"} 3\n" +
			"karpenter_pods_startup_duration_seconds_sum 6\nkarpenter_pods_startup_duration_seconds_count 3\n" +
			"# TYPE other_seconds summary\nother_seconds{quantile=\"0\"} 1\nother_seconds_sum 1\nother_seconds_count 1\n"))
	}))
	defer srv.Close()
	var out bytes.Buffer
	c := &Cluster{RepoDir: repo, StateDir: t.TempDir(), Out: &out, APIToken: "tok",
		CoordinatorAddrs: []string{strings.TrimPrefix(srv.URL, "http://")}}
	p := &Prometheus{Bin: bin, ScrapeInterval: 200 * time.Millisecond}
	if err := p.Start(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if !strings.Contains(out.String(), p.URL) {
		t.Errorf("URL not printed: %q", out.String())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/api/v1/query?query=" + url.QueryEscape(`dovetail_raft_term`))
		if err == nil {
			var r struct {
				Data struct {
					Result []struct {
						Value []any `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if len(r.Data.Result) == 1 && len(r.Data.Result[0].Value) == 2 && r.Data.Result[0].Value[1] == "3" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus never scraped the replica (err %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if gotAuth != "Bearer tok" {
		t.Errorf("scrape Authorization = %q", gotAuth)
	}
	// Karpenter's dashboards' quantile="0" and quantile="1" find the
	// summary's series (Prometheus 3 stored them as "0.0" and "1.0" before
	// KarpenterQuantileRelabel); other metrics keep the normalised value.
	for q, want := range map[string]int{
		`karpenter_pods_startup_duration_seconds{quantile="0"}`:   1,
		`karpenter_pods_startup_duration_seconds{quantile="1"}`:   1,
		`karpenter_pods_startup_duration_seconds{quantile="0.5"}`: 1,
		`karpenter_pods_startup_duration_seconds{quantile="0.0"}`: 0,
		`other_seconds{quantile="0.0"}`:                           1,
	} {
		resp, err := http.Get(p.URL + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Data.Result) != want {
			t.Errorf("%s: %d series, want %d", q, len(r.Data.Result), want)
		}
	}
}
