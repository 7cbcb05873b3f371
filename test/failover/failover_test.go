// Package failover measures failover of the real dovetail-coordinator
// binary: three processes on loopback with the SHIPPED Raft defaults (no
// timeout flags), the leader killed with SIGKILL again and again, and the
// time until a new leader accepts a write. Optionally with CPU hogs on every
// core (DOVETAIL_FAILOVER_HOG=1), and a steady run that counts leader changes
// nobody caused (false elections):
//
//	go test ./test/failover/ -run XXX -bench Failover -benchtime 20x
//	DOVETAIL_FAILOVER_HOG=1 go test ./test/failover/ -run XXX -bench Failover -benchtime 20x
//	DOVETAIL_FAILOVER_STEADY=60s DOVETAIL_FAILOVER_HOG=1 go test ./test/failover/ -run TestSteady -v
//
// Extra flags for every replica (to compare settings): DOVETAIL_FAILOVER_FLAGS;
// a prebuilt binary: DOVETAIL_COORDINATOR_BIN.
package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/internal/freeport"
	"github.com/dovetail-dev/dovetail/report"
	"github.com/dovetail-dev/dovetail/tlsid"
)

type replica struct {
	id, raft, http, dir string
	// raftTLS are the --raft-tls-* flags: Raft runs mutual TLS, as shipped.
	raftTLS []string
	cmd     *exec.Cmd
}

type cluster struct {
	tb    testing.TB
	bin   string
	peers string
	reps  []*replica
	extra []string
}

func buildBinary(tb testing.TB) string {
	tb.Helper()
	if b := os.Getenv("DOVETAIL_COORDINATOR_BIN"); b != "" {
		return b // a prebuilt binary (saves a build on a busy machine)
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(tb.TempDir(), "dovetail-coordinator")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/dovetail-coordinator")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func newCluster(tb testing.TB, n int) *cluster {
	c := &cluster{tb: tb, bin: buildBinary(tb), extra: strings.Fields(os.Getenv("DOVETAIL_FAILOVER_FLAGS"))}
	addrs := freeport.Addrs(tb, 2*n)
	base := tb.TempDir()
	// Raft on mutual TLS with the peer name checked, as the chart ships it:
	// the failover measured includes the TLS handshakes of re-dialled peers.
	ca, err := tlsid.NewCA("failover", time.Now(), 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	pki := filepath.Join(base, "pki")
	caFile := filepath.Join(base, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	var ps []string
	for i := 0; i < n; i++ {
		r := &replica{id: fmt.Sprintf("c%d", i), raft: addrs[2*i], http: addrs[2*i+1], dir: filepath.Join(base, fmt.Sprint(i))}
		kp, err := ca.Issue(tlsid.Leaf{CommonName: r.id, DNSNames: []string{"raft.failover"}, Server: true, Client: true}, time.Now())
		if err != nil {
			tb.Fatal(err)
		}
		cert, key, err := kp.Write(pki, r.id)
		if err != nil {
			tb.Fatal(err)
		}
		r.raftTLS = []string{"--raft-tls-ca", caFile, "--raft-tls-cert", cert, "--raft-tls-key", key, "--raft-tls-server-name", "raft.failover"}
		c.reps = append(c.reps, r)
		ps = append(ps, r.id+"="+r.raft+"|"+r.http)
	}
	c.peers = strings.Join(ps, ",")
	for _, r := range c.reps {
		c.start(r)
	}
	tb.Cleanup(func() {
		for _, r := range c.reps {
			c.kill(r)
		}
	})
	return c
}

func (c *cluster) start(r *replica) {
	// --insecure-api: there is no API server here (--no-kube) to review
	// tokens with; the API only carries the test's writes. Raft is on TLS.
	args := append([]string{"--id", r.id, "--peers", c.peers, "--data-dir", r.dir, "--raft-addr", r.raft,
		"--http-addr", r.http, "--no-kube", "--no-cloud", "--no-gossip", "--insecure-api", "--log-level", "warn"}, r.raftTLS...)
	args = append(args, c.extra...)
	r.cmd = exec.Command(c.bin, args...)
	if os.Getenv("DOVETAIL_TEST_LOG") != "" {
		r.cmd.Stderr = os.Stderr
	}
	if err := r.cmd.Start(); err != nil {
		c.tb.Fatal(err)
	}
}

func (c *cluster) kill(r *replica) {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	_ = r.cmd.Wait()
	r.cmd = nil
}

var httpc = &http.Client{Timeout: 300 * time.Millisecond}

func status(addr string) (*api.Status, error) {
	resp, err := httpc.Get("http://" + addr + api.PathStatus)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s api.Status
	return &s, json.NewDecoder(resp.Body).Decode(&s)
}

// leader returns the replica that says it leads (nil if none does).
func (c *cluster) leader() (*replica, uint64) {
	for _, r := range c.reps {
		if r.cmd == nil {
			continue
		}
		if s, err := status(r.http); err == nil && s.State == "Leader" {
			return r, s.Term
		}
	}
	return nil, 0
}

// write posts a report directly to r (no forwarding) and reports whether it
// was committed.
func write(r *replica, id string) bool {
	b, _ := json.Marshal(report.Report{ID: id, Kind: report.KindHealth, NodeName: "n", InstanceID: id})
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.http+report.Path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.HeaderForwarded, "bench") // the leader must answer itself
	resp, err := httpc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// writable waits for a leader (other than not) that commits a write.
func (c *cluster) writable(not *replica, timeout time.Duration) (*replica, error) {
	deadline := time.Now().Add(timeout)
	for i := 0; time.Now().Before(deadline); i++ {
		if l, _ := c.leader(); l != nil && l != not && write(l, fmt.Sprintf("w-%d-%d", time.Now().UnixNano(), i)) {
			return l, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil, fmt.Errorf("no writable leader within %v", timeout)
}

// hog keeps every core busy for the test's duration when asked to.
func hog(tb testing.TB) {
	if os.Getenv("DOVETAIL_FAILOVER_HOG") == "" {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	for i := 0; i < runtime.NumCPU(); i++ {
		cmd := exec.CommandContext(ctx, "sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		go func() { _ = cmd.Wait() }()
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	i := int(p * float64(len(s)-1))
	return s[i]
}

// BenchmarkFailover: b.N leader kills; each kill is timed from SIGKILL to
// the first write a new leader commits. The killed replica is restarted
// with its data dir and allowed to catch up before the next kill.
func BenchmarkFailover(b *testing.B) {
	c := newCluster(b, 3)
	hog(b)
	if _, err := c.writable(nil, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l, _ := c.leader()
		if l == nil {
			var err error
			if l, err = c.writable(nil, 30*time.Second); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		c.kill(l)
		if _, err := c.writable(l, 30*time.Second); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		c.start(l)
		time.Sleep(1500 * time.Millisecond) // restarted replica catches up
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(took, 0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(percentile(took, 0.9).Milliseconds()), "p90-ms")
	b.ReportMetric(float64(percentile(took, 1).Milliseconds()), "max-ms")
	b.Logf("kills=%d failover %v", len(took), took)
}

// TestSteadyHasNoFalseElections runs the cluster undisturbed for
// DOVETAIL_FAILOVER_STEADY (skipped when unset) and counts leader changes.
func TestSteadyHasNoFalseElections(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("DOVETAIL_FAILOVER_STEADY"))
	if err != nil {
		t.Skip("set DOVETAIL_FAILOVER_STEADY=60s to count false elections in a steady run")
	}
	c := newCluster(t, 3)
	hog(t)
	if _, err := c.writable(nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	_, term0 := c.leader()
	end := time.Now().Add(d)
	writes, failed := 0, 0
	for time.Now().Before(end) {
		l, _ := c.leader()
		if l != nil && write(l, fmt.Sprintf("s-%d", writes+failed)) {
			writes++
		} else {
			failed++
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, term1 := c.leader()
	t.Logf("steady %v: term %d -> %d (%d leader changes), %d writes committed, %d failed", d, term0, term1, term1-term0, writes, failed)
	if term1 != term0 {
		t.Errorf("%d elections in a steady run", term1-term0)
	}
}
