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

	"github.com/dovetail-dev/dovetail/devcluster"
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

// startPrometheus runs a real Prometheus scraping the coordinator replicas
// at targets and the node agents at agents every second, and returns its
// base URL. It scrapes the coordinators as the chart's ServiceMonitor does:
// https verified against the coordinators' CA, with a bearer token that
// dovetail-view authorises for /metrics.
func startPrometheus(t *testing.T, bin string, targets, agents []string, p *pki) string {
	t.Helper()
	dir := t.TempDir()
	list := func(addrs []string) string {
		q := make([]string, len(addrs))
		for i, a := range addrs {
			q[i] = fmt.Sprintf("%q", a)
		}
		return strings.Join(q, ", ")
	}
	// The job is "karpenter", as a ServiceMonitor names the job after the
	// Service (the chart's is the release name): Karpenter's performance
	// dashboard filters on job="karpenter" (README, Metrics). The
	// coordinators' job carries make dev's (and the chart's) relabelling of
	// Karpenter's summary quantiles, the agents' is a node-exporter-style
	// job of their own.
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: karpenter\n"+
		"    scheme: https\n    tls_config: {ca_file: %q}\n    authorization: {type: Bearer, credentials_file: %q}\n"+
		"    static_configs: [{targets: [%s]}]\n%s", p.caFile, p.tokenFile, list(targets), devcluster.KarpenterQuantileRelabel)
	if len(agents) > 0 {
		cfg += fmt.Sprintf("  - job_name: dovetail-agent\n    static_configs: [{targets: [%s]}]\n", list(agents))
	}
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

// karpenterUnserved are the queries of Karpenter's dashboards that stay
// empty with Dovetail, by a substring of the query, with the reason (the
// README's Metrics section lists the same).
//
// The dashboards' quantile="0" and quantile="1" are not among them:
// Prometheus 3 stores quantile label values in float format ("0.0", "1.0"),
// and the scrape job's devcluster.KarpenterQuantileRelabel maps them back
// for karpenter_* series, so those queries are checked like the others.
var karpenterUnserved = map[string]string{
	"node_time_seconds": "node-exporter's node_time_seconds and node_boot_time_seconds (with a node label added by relabelling), not Karpenter's",
	"karpenter_allocation_controller_bind_duration_seconds": "a metric of early Karpenter (v0.x) that v1.14 no longer has (the allocation dashboard still reads it); " +
		"Dovetail binds no pods (kube-scheduler does)",
	"karpenter_allocation_controller_binpacking_duration_seconds": "a metric of early Karpenter (v0.x) that v1.14 no longer has; " +
		"the packing is timed in karpenter_scheduler_scheduling_duration_seconds",
	"karpenter_allocation_controller_scheduling_duration_seconds": "a metric of early Karpenter (v0.x) that v1.14 no longer has (labelled by provisioner, the old NodePool); " +
		"the same fact is karpenter_scheduler_scheduling_duration_seconds",
}

// prometheusFor starts a real Prometheus scraping the coordinators at
// targets (as the chart's ServiceMonitor, with p's CA and token) and the
// agents at agents, or returns "" when bin/prometheus is missing outside CI.
func prometheusFor(t *testing.T, targets, agents []string, p *pki) string {
	t.Helper()
	bin := prometheusBin(t)
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("bin/prometheus missing: run make tools")
		}
		t.Log("bin/prometheus missing (make tools builds it): dashboard queries not checked")
		return ""
	}
	return startPrometheus(t, bin, targets, agents, p)
}

// checkDashboards queries the real Prometheus at base (scraping the
// replicas) for every panel of Dovetail's dashboards, which must all return
// data, and every query of Karpenter's, which must return data unless
// karpenterUnserved explains why not.
func checkDashboards(t *testing.T, base string) {
	if base == "" {
		return
	}
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
	// Some series appear a scrape or a status write after the last step
	// (e.g. karpenter_nodepools_usage waits for NodePool status.resources):
	// a query that is still empty is asked again until one deadline for
	// all of them, as a dashboard refreshing would.
	settle := time.Now().Add(30 * time.Second)
	query := func(expr string) (int, error) {
		for {
			n, err := promQuery(base, expr)
			if (err == nil && n > 0) || time.Now().After(settle) {
				return n, err
			}
			time.Sleep(time.Second)
		}
	}
	for _, q := range dovetailPanelQueries(t) {
		n, err := query(grafanaVars.Replace(q.expr))
		switch {
		case err != nil:
			t.Errorf("%s: %s: %v", q.where, q.expr, err)
		case n == 0:
			t.Errorf("%s: %s: no data", q.where, q.expr)
		}
	}
	ok, total := 0, 0
	for _, q := range karpenterDashboardQueries(t) {
		total++
		why := ""
		for sub, r := range karpenterUnserved {
			if strings.Contains(q.expr, sub) {
				why = r
			}
		}
		var n int
		var err error
		if why == "" {
			n, err = query(grafanaVars.Replace(q.expr))
		} else {
			n, err = promQuery(base, grafanaVars.Replace(q.expr))
		}
		switch {
		case err == nil && n > 0:
			ok++
			if why != "" {
				t.Errorf("Karpenter %s returns data but is listed as unserved (%s): %s", q.where, why, q.expr)
			}
		case why != "":
			t.Logf("Karpenter %s: empty as expected (%s): %s", q.where, why, q.expr)
		default:
			t.Errorf("Karpenter %s: empty (%v): %s", q.where, err, q.expr)
		}
	}
	// Every empty query is explained above (the rest must answer); the
	// share is logged (39 of 43 with make tools' Prometheus 3 and the
	// quantile relabelling).
	t.Logf("Karpenter's dashboards: %d of %d queries return data (%.0f%%)", ok, total, 100*float64(ok)/float64(total))
}
