package devcluster

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// printer writes the user-facing progress lines. Parts may print from their
// own goroutines, hence the lock.
type printer struct {
	w io.Writer
}

var printMu sync.Mutex

func (p printer) line(s string) {
	printMu.Lock()
	defer printMu.Unlock()
	fmt.Fprintln(p.w, s)
}

func (p printer) step(s string) { p.line("→ " + s) }
func (p printer) ok(s string)   { p.line("✓ " + s) }

func (p printer) ready(c *Cluster, cfg Config, took time.Duration) {
	kubectl := filepath.Join(cfg.BinDir, "kubectl")
	if rel, err := filepath.Rel(cfg.RepoDir, kubectl); err == nil && !strings.HasPrefix(rel, "..") {
		kubectl = rel
	}
	if _, err := os.Stat(filepath.Join(cfg.BinDir, "kubectl")); err != nil {
		kubectl = "kubectl" // the user's own; `make tools` puts one in bin/
	}
	logs := filepath.Join(c.ControlPlane.Dir, "logs")
	if rel, err := filepath.Rel(cfg.RepoDir, logs); err == nil {
		logs = rel
	}
	p.line("")
	p.ok(fmt.Sprintf("Dovetail dev cluster ready in %s (API %s)", took.Round(100*time.Millisecond), c.ControlPlane.APIServerURL))
	p.line("")
	p.line("  Use it from another terminal:")
	p.line("    export KUBECONFIG=" + c.Kubeconfig)
	p.line("    " + kubectl + " get nodes")
	p.line("    " + kubectl + " get nodepools,ec2nodeclasses,nodeclaims")
	if c.EC2Endpoint != "" {
		p.line("  EC2 simulator: " + c.EC2Endpoint + " (region " + c.EC2Region + ")")
	}
	p.line("  Logs: " + logs + "/*.log, " + filepath.Join(filepath.Base(cfg.StateDir), "dev.log"))
	if cfg.Demo == nil {
		p.line("  Guided demo (pods get nodes, spot interruption, consolidation, AMI roll): bin/dovetail dev --demo")
	}
	p.line("  Stop: Ctrl-C")
	p.line("")
}

// progressWriter turns the control plane's slog text lines into indented
// progress lines: `level=INFO msg="etcd ready" elapsed=1s` → `  · etcd ready elapsed=1s`.
type progressWriter struct{ p printer }

func (w progressWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		level := ""
		if rest, ok := strings.CutPrefix(l, "level="); ok {
			level, l, _ = strings.Cut(rest, " ")
		}
		if rest, ok := strings.CutPrefix(l, "msg="); ok {
			if strings.HasPrefix(rest, `"`) {
				if end := strings.Index(rest[1:], `"`); end >= 0 {
					rest = rest[1:end+1] + rest[end+2:]
				}
			}
			l = rest
		}
		prefix := "  · "
		if level == "WARN" || level == "ERROR" {
			prefix = "  ! "
		}
		w.p.line(prefix + l)
	}
	return len(b), nil
}
