package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// prometheusBin is bin/prometheus (make tools builds it), or "" when absent.
func prometheusBin(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "bin", "prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// startPrometheus runs a real Prometheus scraping targets every second and
// returns its base URL.
func startPrometheus(t *testing.T, bin string, targets []string) string {
	t.Helper()
	dir := t.TempDir()
	q := make([]string, len(targets))
	for i, a := range targets {
		q[i] = fmt.Sprintf("%q", a)
	}
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: dovetail-coordinator\n    static_configs: [{targets: [%s]}]\n", strings.Join(q, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logf, err := os.Create(filepath.Join(os.TempDir(), fmt.Sprintf("dovetail-e2e-prometheus-%d.log", time.Now().Unix())))
	if err == nil {
		cmd.Stdout, cmd.Stderr = logf, logf
		t.Logf("prometheus log: %s", logf.Name())
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if logf != nil {
			_ = logf.Close()
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready at %s: %v", base, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promQuery runs an instant query; it returns the number of series (or 1
// for a scalar), or an error from Prometheus.
func promQuery(base, expr string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	if r.Data.ResultType == "scalar" || r.Data.ResultType == "string" {
		return 1, nil
	}
	var series []json.RawMessage
	if err := json.Unmarshal(r.Data.Result, &series); err != nil {
		return 0, err
	}
	return len(series), nil
}

// grafanaVars substitutes Grafana's template variables the way a dashboard
// with every variable on "All" does.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m", "$__interval", "1m", "$trailing", "1m",
	"$distribution_filter", "nodepool",
	`"$nodepool"`, `".*"`, `"$arch"`, `".*"`, `"$capacity_type"`, `".*"`, `"$instance_type"`, `".*"`, `"$zone"`, `".*"`,
	`"$controller"`, `".*"`, `"$provisioner"`, `".*"`,
	`="$controller"`, `=~".*"`, `="$provisioner"`, `=~".*"`,
)

type panelQuery struct{ where, expr string }

// dovetailPanelQueries are the targets of packaging/grafana/*.json.
func dovetailPanelQueries(t *testing.T) []panelQuery {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "packaging", "grafana", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	var out []panelQuery
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, tg := range p.Targets {
				out = append(out, panelQuery{filepath.Base(f) + ": " + p.Title, tg.Expr})
			}
		}
	}
	return out
}

func karpenterDashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "karpenter-dashboards.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []panelQuery
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			where, expr, _ := strings.Cut(line, "\t")
			out = append(out, panelQuery{where, expr})
		}
	}
	return out
}

// needsDisruption are the Dovetail panels whose metrics only have samples
// after a disruption, an interruption, a rollout or a panic; TestMetrics
// only scales up, so they may be empty (and are listed in the log).
var needsDisruption = map[string]bool{
	"Disruption decisions": true, "NodeClaims disrupted by NodePool": true, "Disruption blocked": true,
	"Disruption failures": true, "AMI rollout progress": true, "Rollouts halted": true,
	"Interruption notices": true, "Node termination time": true, "Leader component panics": true,
}

// checkDashboards queries a real Prometheus scraping the replicas for every
// panel of Dovetail's dashboards and every query of Karpenter's.
func checkDashboards(t *testing.T, targets []string) {
	bin := prometheusBin(t)
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("bin/prometheus missing: run make tools")
		}
		t.Log("bin/prometheus missing (make tools builds it): dashboard queries not checked")
		return
	}
	base := startPrometheus(t, bin, targets)
	// Rates need two samples in their window; wait for a few scrapes.
	deadline := time.Now().Add(40 * time.Second)
	for {
		n, err := promQuery(base, `count(count_over_time(dovetail_raft_term[1m]) >= 5)`)
		if err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus did not scrape the replicas: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	empty := 0
	for _, q := range dovetailPanelQueries(t) {
		n, err := promQuery(base, grafanaVars.Replace(q.expr))
		switch {
		case err != nil:
			t.Errorf("%s: %s: %v", q.where, q.expr, err)
		case n == 0 && needsDisruption[q.where[strings.Index(q.where, ": ")+2:]]:
			t.Logf("empty after a scale-up only (needs a disruption): %s", q.where)
		case n == 0:
			empty++
			t.Errorf("%s: %s: no data", q.where, q.expr)
		}
	}
	ok, total := 0, 0
	for _, q := range karpenterDashboardQueries(t) {
		total++
		n, err := promQuery(base, grafanaVars.Replace(q.expr))
		if err == nil && n > 0 {
			ok++
			continue
		}
		t.Logf("Karpenter %s: empty (%v): %s", q.where, err, q.expr)
	}
	t.Logf("Karpenter's dashboards: %d of %d queries return data (%.0f%%)", ok, total, 100*float64(ok)/float64(total))
}
