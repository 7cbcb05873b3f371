package devcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Prometheus runs the real Prometheus server (bin/prometheus, built by make
// tools) scraping every coordinator replica on loopback, so Dovetail's and
// Karpenter's dashboards can be pointed at the dev cluster. A missing binary
// is reported and skipped, not fatal.
type Prometheus struct {
	// Bin is the server binary (default <repo>/bin/prometheus or $DOVETAIL_BIN/prometheus).
	Bin string
	// Addr is the listen address (default 127.0.0.1:9090, or a free
	// loopback port when that is taken).
	Addr string
	// ScrapeInterval defaults to 5 s.
	ScrapeInterval time.Duration

	// URL is where it serves, once started.
	URL    string
	cancel context.CancelFunc
	done   chan struct{}
}

// Name implements Part.
func (p *Prometheus) Name() string { return "prometheus" }

// KarpenterQuantileRelabel is the metric_relabel_configs entry, as
// prometheus.yml YAML indented for a scrape job, that gives Karpenter's
// summaries their quantile labels back on Prometheus 3. Prometheus 3's
// scrape parser normalises quantile (and le) values to floats, "0" to "0.0"
// and "1" to "1.0", before metric relabelling runs; Karpenter's published
// dashboards ask for quantile="0" and quantile="1", which then match
// nothing — for Karpenter's own metrics too. Relabelling sees the
// normalised value and its result is stored as is, so this maps those two
// back on karpenter_* series; on Prometheus 2 (no normalisation) it matches
// nothing. The chart's ServiceMonitor carries the same rule
// (serviceMonitor.karpenterQuantileLabels).
const KarpenterQuantileRelabel = `    metric_relabel_configs:
      - source_labels: [__name__, quantile]
        regex: 'karpenter_.+;(0|1)\.0'
        target_label: quantile
        replacement: '$1'
`

// scrapeConfig is the prometheus.yml for the cluster's replicas.
func (p *Prometheus) scrapeConfig(c *Cluster, dir string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "global: {scrape_interval: %s, evaluation_interval: %s}\nscrape_configs:\n", p.ScrapeInterval, p.ScrapeInterval)
	// The job Karpenter's performance dashboard filters on (job="karpenter").
	b.WriteString("  - job_name: karpenter\n")
	if c.CoordinatorCA != "" {
		fmt.Fprintf(&b, "    scheme: https\n    tls_config: {ca_file: %q}\n", c.CoordinatorCA)
	}
	if c.APIToken != "" {
		tok := filepath.Join(dir, "token")
		if err := os.WriteFile(tok, []byte(c.APIToken), 0o600); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "    authorization: {type: Bearer, credentials_file: %q}\n", tok)
	}
	q := make([]string, len(c.CoordinatorAddrs))
	for i, a := range c.CoordinatorAddrs {
		q[i] = fmt.Sprintf("%q", a)
	}
	fmt.Fprintf(&b, "    static_configs: [{targets: [%s]}]\n", strings.Join(q, ", "))
	b.WriteString(KarpenterQuantileRelabel)
	return b.String(), nil
}

// Start implements Part.
func (p *Prometheus) Start(ctx context.Context, c *Cluster) error {
	if p.ScrapeInterval <= 0 {
		p.ScrapeInterval = 5 * time.Second
	}
	bin := p.Bin
	if bin == "" {
		dir := os.Getenv("DOVETAIL_BIN")
		if dir == "" {
			dir = filepath.Join(c.RepoDir, "bin")
		}
		bin = filepath.Join(dir, "prometheus")
	}
	if _, err := os.Stat(bin); err != nil {
		fmt.Fprintf(c.Out, "  prometheus: %s not found (make tools builds it); running without it\n", bin)
		return nil
	}
	dir := filepath.Join(c.StateDir, "prometheus")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfg, err := p.scrapeConfig(c, dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	addr := p.Addr
	if addr == "" {
		addr = "127.0.0.1:9090"
		if l, err := net.Listen("tcp", addr); err == nil {
			_ = l.Close()
		} else if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
			addr = l.Addr().String()
			_ = l.Close()
		}
	}
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(pctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		cancel()
		_ = log.Close()
		return fmt.Errorf("start prometheus: %w", err)
	}
	p.cancel, p.done = cancel, make(chan struct{})
	go func() { _ = cmd.Wait(); _ = log.Close(); close(p.done) }()
	p.URL = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-p.done:
			return errors.New("prometheus exited; see " + log.Name())
		default:
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("prometheus not ready at %s after 30s; see %s", p.URL, log.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(c.Out, "  prometheus: %s (scraping %d coordinators every %s; dashboards in packaging/grafana)\n", p.URL, len(c.CoordinatorAddrs), p.ScrapeInterval)
	return nil
}

// Stop implements Part.
func (p *Prometheus) Stop() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
		p.cancel = nil
	}
}
