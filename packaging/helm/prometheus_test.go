package helm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/controlplane/manifest"
	"github.com/dovetail-dev/dovetail/internal/syncbuffer"
)

// metricRelabelConfigs turns a ServiceMonitor endpoint's metricRelabelings
// into prometheus.yml metric_relabel_configs, as the Prometheus Operator does
// (its camelCase field names in Prometheus' snake_case).
func metricRelabelConfigs(ep map[string]any) []any {
	in, _, _ := unstructured.NestedSlice(ep, "metricRelabelings")
	names := map[string]string{"sourceLabels": "source_labels", "targetLabel": "target_label"}
	out := make([]any, 0, len(in))
	for _, r := range in {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		c := map[string]any{}
		for k, v := range m {
			if n, ok := names[k]; ok {
				k = n
			}
			c[k] = v
		}
		out = append(out, c)
	}
	return out
}

// checkAlertsOnRealPrometheus runs bin/prometheus with the rendered
// PrometheusRule's groups as its rule file, scraping the running coordinator
// as the rendered ServiceMonitor says (HTTPS with the API CA and server name,
// a bearer token, the job and namespace labels the operator would set).
// Prometheus must load every rule (valid PromQL and rule fields) and, as the
// lone replica has no leader, hold DovetailNoLeader pending or firing while
// every other alert stays inactive.
func checkAlertsOnRealPrometheus(t *testing.T, objs []manifest.Object, target, caFile, tokenFile string) {
	t.Helper()
	binDir := os.Getenv("DOVETAIL_BIN")
	if binDir == "" {
		binDir = filepath.Join(repoRoot(), "bin")
	}
	bin := filepath.Join(binDir, "prometheus")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing (CI=true: make tools must have built it)", bin)
		}
		t.Logf("skipping the Prometheus check: %s missing", bin)
		return
	}
	dir := t.TempDir()
	rule := find(t, objs, "PrometheusRule", release)
	rules, err := yaml.Marshal(rule.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	sm := find(t, objs, "ServiceMonitor", release)
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ep := eps[0].(map[string]any)
	str := func(fields ...string) string { v, _, _ := unstructured.NestedString(ep, fields...); return v }
	cfg := map[string]any{
		"global":     map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"rule_files": []string{filepath.Join(dir, "rules.yml")},
		"scrape_configs": []any{map[string]any{
			// The operator names the job after the scraped Service.
			"job_name":      release,
			"scheme":        str("scheme"),
			"metrics_path":  str("path"),
			"tls_config":    map[string]any{"ca_file": caFile, "server_name": str("tlsConfig", "serverName")},
			"authorization": map[string]any{"type": str("authorization", "type"), "credentials_file": tokenFile},
			"static_configs": []any{map[string]any{"targets": []string{target},
				"labels": map[string]string{"namespace": namespace}}},
			// The operator's translation of metricRelabelings: Prometheus
			// must accept them (a bad regex would stop it loading).
			"metric_relabel_configs": metricRelabelConfigs(ep),
		}},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := controlplane.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	logs := &syncbuffer.Buffer{}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+strings.TrimPrefix(url, "http://"))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	}()

	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus exited (a rule it could not load?): %v", err)
		case <-time.After(500 * time.Millisecond):
		}
		states, health, err := alertStates(url)
		if err == nil && len(health) > 0 {
			for name, h := range health {
				if h.Health == "err" {
					t.Fatalf("alert %s: prometheus evaluates it with an error: %s", name, h.LastError)
				}
			}
			if len(health) != len(alertNames) {
				t.Fatalf("prometheus loaded %d alerting rules, want %d: %v", len(health), len(alertNames), health)
			}
			s := states["DovetailNoLeader"]
			if s == "pending" || s == "firing" {
				for name, other := range states {
					if name != "DovetailNoLeader" && other != "inactive" {
						t.Errorf("alert %s is %s against one healthy, leaderless replica", name, other)
					}
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("DovetailNoLeader not pending after 90 s (states %v, err %v)", states, err)
		}
	}
}

type ruleHealth struct {
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	State     string `json:"state"`
	Name      string `json:"name"`
	Type      string `json:"type"`
}

// alertStates reads /api/v1/rules: each alerting rule's state and health.
func alertStates(url string) (map[string]string, map[string]ruleHealth, error) {
	resp, err := http.Get(url + "/api/v1/rules")
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Groups []struct {
				Rules []ruleHealth `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, nil, err
	}
	states, health := map[string]string{}, map[string]ruleHealth{}
	for _, g := range body.Data.Groups {
		for _, r := range g.Rules {
			if r.Type == "alerting" && r.Health != "unknown" {
				states[r.Name], health[r.Name] = r.State, r
			}
		}
	}
	return states, health, nil
}
