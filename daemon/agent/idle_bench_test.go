package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/daemon/internal/simtest"
)

// BenchmarkIdleCPU: the real binary, on its shipped defaults (500 ms IMDS
// poll, 30 s health rounds), watching a spot instance of the EC2 simulator
// on which nothing happens. Measured is its CPU time (utime+stime from
// /proc/<pid>/stat) over DOVETAIL_IDLE_SECONDS (default 60) after a 5 s
// settle, reported as CPU-s per minute, with the IMDS requests it sent.
// NTH v1.25.6 (IMDS mode) measured 0.05–0.08 CPU-s/min the same way.
//
//	go test -run '^$' -bench IdleCPU -benchtime 1x ./daemon/agent/
func BenchmarkIdleCPU(b *testing.B) {
	window := 60 * time.Second
	if s := os.Getenv("DOVETAIL_IDLE_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		window = time.Duration(n) * time.Second
	}
	cp := controlplane.Shared(b)
	kc, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		b.Fatal(err)
	}
	sim := ec2sim.New(ec2sim.Config{RESTConfig: cp.RESTConfig})
	if err := sim.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Close)
	dir := b.TempDir()
	bin := filepath.Join(dir, "dovetail-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/dovetail-agent").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	tick := clockTicks()
	// A coordinator that takes every report, as in a cluster (a dead one
	// would have the reporter retrying, which is not idle).
	coord := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	b.Cleanup(coord.Close)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id, err := simtest.Launch(b.Context(), sim, fmt.Sprintf("idle-%d-%d", time.Now().UnixNano(), i), "spot", "m5.large")
		if err != nil {
			b.Fatal(err)
		}
		info, _ := sim.Instance(id)
		waitFor(b, 30*time.Second, "node registered", func() bool {
			nodes, err := kc.CoreV1().Nodes().List(b.Context(), metav1.ListOptions{})
			if err != nil {
				return false
			}
			for _, n := range nodes.Items {
				if n.Spec.ProviderID == info.ProviderID {
					return true
				}
			}
			return false
		})
		// Counting proxy in front of the instance's IMDS: requests by kind.
		target, _ := url.Parse(sim.IMDSEndpoint(id))
		var gets, puts atomic.Int64
		proxy := httputil.NewSingleHostReverseProxy(target)
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				puts.Add(1)
			} else {
				gets.Add(1)
			}
			proxy.ServeHTTP(w, r)
		}))
		requests := func() int64 { return gets.Load() + puts.Load() }
		agent := exec.Command(bin)
		agent.Env = append(os.Environ(),
			"DOVETAIL_AGENT_KUBECONFIG="+cp.Kubeconfig,
			"DOVETAIL_AGENT_IMDS_ENDPOINT="+front.URL,
			"DOVETAIL_AGENT_STATE_DIR="+filepath.Join(dir, fmt.Sprintf("state-%d", i)),
			"DOVETAIL_AGENT_DISABLE_REPAIR=true",
			"DOVETAIL_AGENT_LISTEN=127.0.0.1:0",
			"DOVETAIL_AGENT_COORDINATORS="+strings.TrimPrefix(coord.URL, "http://"),
		)
		stderr, _ := agent.StderrPipe()
		if err := agent.Start(); err != nil {
			b.Fatal(err)
		}
		started := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stderr)
			once := false
			for sc.Scan() {
				if !once && strings.Contains(sc.Text(), "agent starting") {
					once = true
					close(started)
				}
			}
		}()
		select {
		case <-started:
		case <-time.After(60 * time.Second):
			_ = agent.Process.Kill()
			b.Fatal("agent never started")
		}
		time.Sleep(5 * time.Second) // identity, first health round, first report attempt
		cpu0, r0, p0 := procCPU(b, agent.Process.Pid, tick), requests(), puts.Load()
		time.Sleep(window)
		cpu1, r1, p1 := procCPU(b, agent.Process.Pid, tick), requests(), puts.Load()
		rss := procRSS(agent.Process.Pid)
		_ = agent.Process.Kill()
		_ = agent.Wait()
		front.Close()
		perMin := (cpu1 - cpu0).Seconds() * float64(time.Minute) / float64(window)
		reqPerMin := float64(r1-r0) * float64(time.Minute) / float64(window)
		b.ReportMetric(perMin, "CPU-s/min")
		b.ReportMetric(reqPerMin, "IMDS-req/min")
		b.ReportMetric(float64(rss)/(1<<20), "MiB-RSS")
		b.Logf("idle %v: %.3f CPU-s/min, %.0f IMDS requests/min (%d token PUTs in the window), RSS %.1f MiB",
			window, perMin, reqPerMin, p1-p0, float64(rss)/(1<<20))
	}
}

func waitFor(b *testing.B, limit time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("never happened within %s: %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat:
// 100 on every Linux this runs on (getconf CLK_TCK).
func clockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

// procCPU is utime+stime of pid.
func procCPU(b *testing.B, pid int, hz int64) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 overall
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration((utime + stime) * int64(time.Second) / hz)
}

func procRSS(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}
