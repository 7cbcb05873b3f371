// Package dockertest is the multi-host fault suite: the coordinator runs as
// containers of the FROM-scratch image (packaging/Dockerfile) on private
// Docker networks, each replica its own host as far as Raft can tell, with
// Raft over mutual TLS and encrypted gossip, while a seeded schedule of
// faults (kill -9, freezer pause, SIGSTOP, partitions, restarts with the data
// dir kept or wiped) hits them and clients drive reports and consistent
// reads. The history is checked with porcupine (linearizable per node: no
// acknowledged write lost), and every replica must converge on it.
//
// It runs in `go test ./...` (make test) whenever Docker is reachable and
// skips only when it is not (or with -short). Default: 3 schedules (two of
// 3 replicas, one of 5) with time-derived seeds; -seeds N runs more, -seed S
// replays one (see coordinator/README.md).
package dockertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/linearcheck"
	"github.com/dovetail-dev/dovetail/report"
	"github.com/dovetail-dev/dovetail/tlsid"
)

var (
	flagSeeds    = flag.Int("seeds", envInt("DOVETAIL_FAULT_SEEDS", 3), "fault schedules to run (every third with 5 replicas, the others 3); env DOVETAIL_FAULT_SEEDS")
	flagSeed     = flag.Int64("seed", int64(envInt("DOVETAIL_FAULT_SEED", 0)), "first schedule's seed, the next ones +1 (0: from the clock); env DOVETAIL_FAULT_SEED")
	flagParallel = flag.Int("parallel-schedules", envInt("DOVETAIL_FAULT_PARALLEL", 2), "schedules run at the same time; env DOVETAIL_FAULT_PARALLEL")
	flagReplicas = flag.Int("replicas", envInt("DOVETAIL_FAULT_REPLICAS", 0), "replicas of every schedule (0: 3, 3, 5, 3, 3, 5, ...); env DOVETAIL_FAULT_REPLICAS")
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// raftServerName is the peer name the Raft certificate carries (the chart's
// raftTLS.serverName; one certificate for every replica, as the chart's
// Secret).
const raftServerName = "dovetail-coordinator-raft"

func docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := dockerErr(args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func dockerErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// requireDocker skips when there is no Docker to talk to, and only then.
func requireDocker(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the Docker fault suite builds an image and runs containers for minutes")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed: the multi-host fault suite needs it")
	}
	if out, err := dockerErr("info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("docker daemon not reachable (%v: %s): the multi-host fault suite needs it", err, out)
	}
}

// buildImage builds the binary and packaging/Dockerfile's image, then a test
// layer on top adding the PKI (copied in rather than bind-mounted, so a
// remote daemon works too). Both images are removed at the end.
//
// The binary is built as `make build` builds it (CGO_ENABLED=0, -trimpath:
// the same compile cache, so after `make build` only the link is left), or
// taken from $DOVETAIL_COORDINATOR_BIN.
func buildImage(t *testing.T, suffix string) string {
	root := repoRoot()
	ctxDir := t.TempDir()
	bin := filepath.Join(ctxDir, "dovetail-coordinator")
	if prebuilt := os.Getenv("DOVETAIL_COORDINATOR_BIN"); prebuilt != "" {
		if out, err := exec.Command("cp", prebuilt, bin).CombinedOutput(); err != nil {
			t.Fatalf("copy $DOVETAIL_COORDINATOR_BIN: %v\n%s", err, out)
		}
	} else {
		start := time.Now()
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/dovetail-coordinator")
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		t.Logf("built the coordinator in %v", time.Since(start).Round(time.Second))
	}
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "packaging", "Dockerfile"), filepath.Join(root, "packaging", "rootfs"), ctxDir).CombinedOutput(); err != nil {
		t.Fatalf("copy build context: %v\n%s", err, out)
	}
	base := "dovetail-coordinator:dockertest-" + suffix
	docker(t, "build", "-q", "-t", base, ctxDir)
	t.Cleanup(func() { _, _ = dockerErr("rmi", "-f", base) })

	pkiDir := t.TempDir()
	writePKI(t, filepath.Join(pkiDir, "pki"))
	df := "FROM " + base + "\nCOPY --chown=65532:65532 pki/ /pki/\n"
	if err := os.WriteFile(filepath.Join(pkiDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	image := "dovetail-coordinator:dockertest-pki-" + suffix
	docker(t, "build", "-q", "-t", image, pkiDir)
	t.Cleanup(func() { _, _ = dockerErr("rmi", "-f", image) })
	return image
}

// writePKI mints what the secure path needs with tlsid, as `dovetail dev`
// does: a CA, the Raft certificate (client and server, shared peer name) and
// a gossip keyring.
func writePKI(t *testing.T, dir string) {
	now := time.Now()
	ca, err := tlsid.NewCA("dovetail-dockertest", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(tlsid.Leaf{CommonName: "dockertest-raft", DNSNames: []string{raftServerName}, Server: true, Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := kp.Write(dir, "raft"); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(rand.Intn(256))
	}
	if err := os.WriteFile(filepath.Join(dir, "gossip.keys"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

type schedule struct {
	replicas int
	seed     int64
}

func schedules() []schedule {
	base := *flagSeed
	if base == 0 {
		base = time.Now().UnixNano() % 1_000_000
	}
	var out []schedule
	for i := range max(*flagSeeds, 1) {
		n := 3
		if i%3 == 2 {
			n = 5
		}
		if *flagReplicas > 0 {
			n = *flagReplicas
		}
		out = append(out, schedule{replicas: n, seed: base + int64(i)})
	}
	return out
}

// TestFaultSchedules runs the seeded fault schedules; see the package doc.
func TestFaultSchedules(t *testing.T) {
	requireDocker(t)
	suffix := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1_000_000)
	image := buildImage(t, suffix)
	tally := newTally()
	// Schedules run -parallel-schedules at a time (default 2: the two
	// 3-replica ones together, then the 5-replica one) to keep the suite
	// within a few minutes on a 2-core box.
	slots := make(chan struct{}, max(*flagParallel, 1))
	t.Run("schedules", func(t *testing.T) {
		for i, s := range schedules() {
			t.Run(fmt.Sprintf("replicas=%d/seed=%d", s.replicas, s.seed), func(t *testing.T) {
				t.Parallel()
				slots <- struct{}{}
				defer func() { <-slots }()
				start := time.Now()
				runSchedule(t, image, fmt.Sprintf("%s-%d", suffix, i), s, tally)
				t.Logf("schedule replicas=%d seed=%d took %v", s.replicas, s.seed, time.Since(start).Round(time.Second))
			})
		}
	})
	t.Log("faults tried (kind: times):\n" + tally.String())
}

// tally counts what the suite tried, for the README's reliability table.
type tally struct {
	mu    sync.Mutex
	kinds map[string]int
	notes []string
}

func newTally() *tally { return &tally{kinds: map[string]int{}} }

func (t *tally) add(kind string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.kinds[kind]++
}

func (t *tally) note(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.notes = append(t.notes, s)
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ks []string
	for k := range t.kinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	for _, k := range ks {
		fmt.Fprintf(&b, "  %-26s %d\n", k, t.kinds[k])
	}
	for _, n := range t.notes {
		b.WriteString("  " + n + "\n")
	}
	return b.String()
}

// cluster is one schedule's replicas.
type cluster struct {
	t      *testing.T
	image  string
	netA   string // where the replicas live
	netB   string // the far side of a partition
	names  []string
	seed   int64
	mu     sync.Mutex
	ports  map[string]string // replica -> 127.0.0.1:port of its API
	httpc  *http.Client
	wipes  map[string]int // replica -> times wiped
	stderr map[string]string
}

func (c *cluster) args(name string) []string {
	var seeds []string
	for _, n := range c.names {
		seeds = append(seeds, n+":7946")
	}
	// The same command line for every replica, only the pod name differs
	// (as in a StatefulSet); the shipped Raft timeouts. Raft and gossip take
	// the secure path; --insecure-api because the binary's TLS API
	// authenticates people with Kubernetes TokenReview and there is no API
	// server here (--no-kube), which also leaves reports unsigned (a signed
	// one needs an instance a NodeClaim owns); the secure API path is the
	// chart's (packaging/helm TestCoordinatorRunsAsRendered) and test/e2e's.
	return []string{
		"run", "-d", "--name", name, "--hostname", name, "--network", c.netA, "-e", "POD_NAME=" + name,
		"-p", "127.0.0.1::8080", c.image,
		"--bootstrap-expect=" + strconv.Itoa(len(c.names)), "--no-kube", "--no-cloud",
		"--raft-tls-ca=/pki/ca.crt", "--raft-tls-cert=/pki/raft.crt", "--raft-tls-key=/pki/raft.key",
		"--raft-tls-server-name=" + raftServerName,
		"--gossip-key-file=/pki/gossip.keys", "--gossip-seeds=" + strings.Join(seeds, ","), "--cluster-name=dockertest",
		"--insecure-api", "--log-format=text",
	}
}

func (c *cluster) run(name string) {
	c.t.Helper()
	docker(c.t, c.args(name)...)
	c.refreshPort(name)
}

// refreshPort reads the host port Docker published for a replica's API (it
// changes when a container restarts or moves between networks).
func (c *cluster) refreshPort(name string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := dockerErr("port", name, "8080/tcp")
		if err == nil && out != "" {
			c.mu.Lock()
			c.ports[name] = strings.Split(out, "\n")[0]
			c.mu.Unlock()
			return
		}
		if time.Now().After(deadline) {
			c.fatalf("no published port for %s: %v %s", name, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cluster) port(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ports[name]
}

func (c *cluster) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("[replicas=%d seed=%d] %s", len(c.names), c.seed, fmt.Sprintf(format, args...))
}

func (c *cluster) client(name string) *api.Client {
	return &api.Client{Base: "http://" + c.port(name), HTTP: c.httpc}
}

// status asks one replica.
func (c *cluster) status(name string) (*api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.client(name).Status(ctx)
}

// agreed waits until every replica in names reports the same leader (one of
// names), then until each has applied what that leader had committed once
// they agreed (the commit index moves on under load; catching up to a
// moment is what "caught up" can mean).
func (c *cluster) agreed(names []string, timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	leader, commit := "", uint64(0)
	for leader == "" && time.Now().Before(deadline) {
		cand := ""
		for _, n := range names {
			st, err := c.status(n)
			if err != nil || st.LeaderID == "" || (cand != "" && st.LeaderID != cand) || !contains(names, st.LeaderID) {
				cand, last = "", fmt.Sprintf("%s: %+v %v", n, st, err)
				break
			}
			cand = st.LeaderID
		}
		if cand != "" {
			if st, err := c.status(cand); err == nil && st.State == "Leader" {
				leader, commit = cand, st.CommitIndex
				break
			}
		}
		time.Sleep(150 * time.Millisecond)
	}
	for _, n := range names {
		for leader != "" {
			st, err := c.status(n)
			if err == nil && st.AppliedIndex >= commit {
				break
			}
			last = fmt.Sprintf("%s has not applied the leader's commit index %d: %+v %v", n, commit, st, err)
			if time.Now().After(deadline) {
				leader = ""
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if leader == "" {
		c.fatalf("replicas %v never agreed on a leader and caught up with it within %v (last: %s)", names, timeout, last)
	}
	return leader
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func without(s []string, drop ...string) []string {
	var out []string
	for _, x := range s {
		if !contains(drop, x) {
			out = append(out, x)
		}
	}
	return out
}

// load is the clients: reports (writes of a node's instance ID) and
// consistent reads through random replicas, recorded in a history.
type load struct {
	c       *cluster
	h       *linearcheck.History
	keys    []string
	seq     atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
	acked   atomic.Int64
	skipped atomic.Int64
}

func (l *load) start(clients int, seed int64) {
	for id := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewSource(seed*100 + int64(id)))
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(time.Duration(10+rng.Intn(20)) * time.Millisecond):
				}
				name := l.c.names[rng.Intn(len(l.c.names))]
				key := l.keys[rng.Intn(len(l.keys))]
				if rng.Intn(2) == 0 {
					l.write(id, name, key)
				} else {
					l.read(id, name, key)
				}
			}
		}()
	}
}

func (l *load) write(client int, via, key string) {
	v := fmt.Sprintf("i-%d", l.seq.Add(1))
	b, _ := json.Marshal(report.Report{ID: v, Kind: report.KindHealth, NodeName: key, InstanceID: v,
		Checks: []report.CheckResult{{Name: "kubelet", State: "ok"}}})
	call := l.h.Now()
	resp, err := l.c.httpc.Post("http://"+l.c.port(via)+report.Path, "application/json", bytes.NewReader(b))
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			l.skipped.Add(1) // never reached a replica: did not happen
			return
		}
		l.h.Write(client, key, v, call, false) // sent, maybe applied
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		l.h.Write(client, key, v, call, true)
		l.acked.Add(1)
		return
	}
	var e api.Error
	if json.NewDecoder(resp.Body).Decode(&e) == nil && e.NotApplied {
		l.skipped.Add(1) // the API guarantees it had no effect
		return
	}
	l.h.Write(client, key, v, call, false)
}

func (l *load) read(client int, via, key string) {
	call := l.h.Now()
	var n api.Node
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := l.c.client(via).Get(ctx, api.PathNodes+"/"+key+"?consistent=1", &n)
	switch {
	case err == nil:
		l.h.Read(client, key, n.InstanceID, call)
	case strings.Contains(err.Error(), " 404 "):
		l.h.Read(client, key, "", call)
	}
	// Any other failed read tells nothing.
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

// fault is one step of a schedule: inject, hold, heal.
type fault struct {
	kind string
	// apply injects the fault and returns the replicas that must still
	// elect a leader and take writes while it holds (nil: no quorum is
	// expected, e.g. the leader's side of a partition is the majority)
	// and how to heal it.
	apply func(c *cluster, rng *rand.Rand, leader string) (healthy []string, heal func())
}

var faults = []fault{
	{"kill-9 leader", func(c *cluster, _ *rand.Rand, leader string) ([]string, func()) {
		docker(c.t, "kill", "-s", "KILL", leader)
		return without(c.names, leader), func() { docker(c.t, "start", leader); c.refreshPort(leader) }
	}},
	{"kill-9 follower", func(c *cluster, rng *rand.Rand, leader string) ([]string, func()) {
		f := pick(rng, without(c.names, leader), 1)[0]
		docker(c.t, "kill", "-s", "KILL", f)
		return without(c.names, f), func() { docker(c.t, "start", f); c.refreshPort(f) }
	}},
	{"pause (freezer) leader", func(c *cluster, _ *rand.Rand, leader string) ([]string, func()) {
		docker(c.t, "pause", leader)
		return without(c.names, leader), func() { docker(c.t, "unpause", leader) }
	}},
	{"SIGSTOP/SIGCONT follower", func(c *cluster, rng *rand.Rand, leader string) ([]string, func()) {
		f := pick(rng, without(c.names, leader), 1)[0]
		docker(c.t, "kill", "-s", "STOP", f)
		return without(c.names, f), func() { docker(c.t, "kill", "-s", "CONT", f) }
	}},
	{"SIGSTOP/SIGCONT leader", func(c *cluster, _ *rand.Rand, leader string) ([]string, func()) {
		docker(c.t, "kill", "-s", "STOP", leader)
		return without(c.names, leader), func() { docker(c.t, "kill", "-s", "CONT", leader) }
	}},
	{"partition: minority cut", func(c *cluster, rng *rand.Rand, leader string) ([]string, func()) {
		// Followers that are a minority move to the far network: they can
		// talk among themselves, not with the leader's majority.
		side := pick(rng, without(c.names, leader), (len(c.names)-1)/2)
		return without(c.names, side...), c.partition(side)
	}},
	{"partition: leader in minority", func(c *cluster, rng *rand.Rand, leader string) ([]string, func()) {
		// The leader and followers short of a majority on the far side:
		// the majority left behind elects a new leader.
		side := append([]string{leader}, pick(rng, without(c.names, leader), (len(c.names)-1)/2-1)...)
		return without(c.names, side...), c.partition(side)
	}},
	{"partition: leader isolated", func(c *cluster, _ *rand.Rand, leader string) ([]string, func()) {
		docker(c.t, "network", "disconnect", c.netA, leader)
		return without(c.names, leader), func() { docker(c.t, "network", "connect", c.netA, leader); c.refreshPort(leader) }
	}},
	{"partition: no quorum anywhere", func(c *cluster, rng *rand.Rand, _ string) ([]string, func()) {
		// Three sides, none a majority: one replica cut off alone, the rest
		// split between the two networks. Nothing may commit until healed.
		all := pick(rng, c.names, len(c.names))
		alone, far := all[0], all[1:1+(len(all)-1)/2]
		docker(c.t, "network", "disconnect", c.netA, alone)
		healFar := c.partition(far)
		return nil, func() {
			docker(c.t, "network", "connect", c.netA, alone)
			c.refreshPort(alone)
			healFar()
		}
	}},
	{"restart (SIGTERM), data kept", func(c *cluster, rng *rand.Rand, leader string) ([]string, func()) {
		v := pick(rng, c.names, 1)[0]
		docker(c.t, "stop", "-t", "20", v)
		if v == leader {
			logs, _ := dockerErr("logs", v)
			if !strings.Contains(logs, "leadership transfer on shutdown") {
				c.fatalf("the stopped leader %s did not hand leadership over", v)
			}
		}
		return without(c.names, v), func() { docker(c.t, "start", v); c.refreshPort(v) }
	}},
	{"restart, data dir wiped", func(c *cluster, rng *rand.Rand, leader string) ([]string, func()) {
		// A StatefulSet pod whose PVC was lost: same flags, empty volume.
		v := pick(rng, c.names, 1)[0]
		logs, _ := dockerErr("logs", v)
		c.stderr[v] += logs
		docker(c.t, "rm", "-f", "-v", v)
		c.wipes[v]++
		return without(c.names, v), func() {
			c.run(v)
			deadline := time.Now().Add(20 * time.Second)
			for {
				logs, _ := dockerErr("logs", v)
				if strings.Contains(logs, "bootstrapped raft cluster") {
					c.fatalf("the wiped replica %s bootstrapped a cluster of its own:\n%s", v, logs)
				}
				if strings.Contains(logs, "joining through the leader instead of bootstrapping") {
					return
				}
				if time.Now().After(deadline) {
					c.fatalf("the wiped replica %s never said it joins through the leader:\n%s", v, logs)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}},
}

func pick(rng *rand.Rand, from []string, n int) []string {
	s := append([]string(nil), from...)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	if n > len(s) {
		n = len(s)
	}
	if n < 0 {
		n = 0
	}
	return s[:n]
}

// partition moves side to the far network and returns the heal.
func (c *cluster) partition(side []string) func() {
	for _, n := range side {
		docker(c.t, "network", "connect", c.netB, n)
		docker(c.t, "network", "disconnect", c.netA, n)
	}
	return func() {
		for _, n := range side {
			docker(c.t, "network", "connect", c.netA, n)
			docker(c.t, "network", "disconnect", c.netB, n)
			c.refreshPort(n)
		}
	}
}

func runSchedule(t *testing.T, image, suffix string, s schedule, tl *tally) {
	c := &cluster{t: t, image: image, seed: s.seed, ports: map[string]string{}, wipes: map[string]int{}, stderr: map[string]string{},
		netA: "dovetail-dt-" + suffix, netB: "dovetail-dt-far-" + suffix,
		httpc: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{Timeout: time.Second}).DialContext, MaxIdleConnsPerHost: 4}}}
	for i := range s.replicas {
		c.names = append(c.names, fmt.Sprintf("dc-%s-%d", suffix, i))
	}
	t.Logf("schedule replicas=%d seed=%d; replay: go test ./coordinator/dockertest -run TestFaultSchedules -v -seeds=1 -replicas=%d -seed=%d",
		s.replicas, s.seed, s.replicas, s.seed)
	docker(t, "network", "create", c.netA)
	t.Cleanup(func() { _, _ = dockerErr("network", "rm", c.netA) })
	docker(t, "network", "create", c.netB)
	t.Cleanup(func() { _, _ = dockerErr("network", "rm", c.netB) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED: replicas=%d seed=%d (replay with -seeds=1 -replicas=%d -seed=%d)", s.replicas, s.seed, s.replicas, s.seed)
			for _, n := range c.names {
				logs, _ := dockerErr("logs", "--tail", "60", n)
				t.Logf("--- %s (last 60 lines) ---\n%s", n, logs)
			}
		}
		// Unfreeze first: a paused container cannot be removed.
		for _, n := range c.names {
			_, _ = dockerErr("unpause", n)
			_, _ = dockerErr("rm", "-f", "-v", n)
		}
	})
	for _, n := range c.names {
		c.run(n)
	}
	formed := time.Now()
	leader := c.agreed(c.names, 60*time.Second)
	t.Logf("cluster of %d formed on its own in %v; leader %s", s.replicas, time.Since(formed).Round(100*time.Millisecond), leader)

	l := &load{c: c, h: linearcheck.NewHistory(), stop: make(chan struct{})}
	for i := range 6 {
		l.keys = append(l.keys, fmt.Sprintf("node-%d", i))
	}
	l.start(3, s.seed)
	defer func() {
		select {
		case <-l.stop:
		default:
			l.finish()
		}
	}()

	// Every fault kind once, in a seeded order with seeded targets and hold
	// times.
	rng := rand.New(rand.NewSource(s.seed))
	order := rng.Perm(len(faults))
	for step, fi := range order {
		f := faults[fi]
		time.Sleep(time.Duration(200+rng.Intn(300)) * time.Millisecond)
		leader = c.agreed(c.names, 30*time.Second)
		before := l.acked.Load()
		begin := time.Now()
		healthy, heal := f.apply(c, rng, leader)
		hold := time.Duration(1000+rng.Intn(1500)) * time.Millisecond
		if healthy != nil {
			// The rest keep a quorum: a leader among them serves writes
			// while the fault holds.
			nl := c.agreed(healthy, 30*time.Second)
			mid := l.acked.Load()
			deadline := time.Now().Add(20 * time.Second)
			for l.acked.Load() == mid && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if l.acked.Load() == mid {
				c.fatalf("step %d (%s): no write acknowledged while %v (leader %s) had a quorum", step, f.kind, healthy, nl)
			}
		}
		time.Sleep(hold)
		healAt := time.Now()
		heal()
		back := c.agreed(c.names, 60*time.Second)
		tl.add(f.kind)
		t.Logf("step %d: %-30s leader %s -> %s; fault lasted %v, every replica caught up %v after the heal; %d writes acknowledged meanwhile",
			step, f.kind, leader, back, healAt.Sub(begin).Round(100*time.Millisecond), time.Since(healAt).Round(100*time.Millisecond), l.acked.Load()-before)
	}
	time.Sleep(500 * time.Millisecond)
	l.finish()
	leader = c.agreed(c.names, 60*time.Second)

	// Final consistent reads through every replica join the history; then
	// every replica's own applied state must show the same values.
	// A failed read tells nothing and is asked again: a replica's
	// forwarding connection to a leader whose address changed (a container
	// moved between networks) can stall until its timeout.
	final := map[string]string{}
	stalled := 0
	for i, key := range l.keys {
		for _, n := range c.names {
			deadline := time.Now().Add(45 * time.Second)
			for {
				call := l.h.Now()
				var node api.Node
				err := c.client(n).Get(context.Background(), api.PathNodes+"/"+key+"?consistent=1", &node)
				if err == nil {
					l.h.Read(100+i, key, node.InstanceID, call)
					final[key] = node.InstanceID
					break
				}
				if strings.Contains(err.Error(), " 404 ") {
					l.h.Read(100+i, key, "", call)
					final[key] = ""
					break
				}
				stalled++
				if time.Now().After(deadline) {
					c.fatalf("final consistent read of %s via %s: %v", key, n, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	if stalled > 0 {
		t.Logf("%d final consistent reads failed first and were asked again", stalled)
	}
	for _, n := range c.names {
		for _, key := range l.keys {
			var node api.Node
			err := c.client(n).Get(context.Background(), api.PathNodes+"/"+key, &node)
			got := node.InstanceID
			if err != nil && !strings.Contains(err.Error(), " 404 ") {
				c.fatalf("local read of %s on %s: %v", key, n, err)
			}
			if got != final[key] {
				c.fatalf("replica %s (wiped %d times) holds %s=%q, the cluster %q", n, c.wipes[n], key, got, final[key])
			}
		}
	}
	writes, unknown, reads := l.h.Counts()
	if l.acked.Load() < 50 || reads < 50 {
		c.fatalf("history too thin to mean anything: %d acknowledged writes, %d reads", l.acked.Load(), reads)
	}
	checkStart := time.Now()
	res, info := l.h.Check(2 * time.Minute)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("dockertest-history-%d.html", s.seed))
		if f, err := os.Create(path); err == nil {
			_ = porcupine.Visualize(linearcheck.Model, info, f)
			_ = f.Close()
		}
		c.fatalf("history NOT linearizable (%d writes, %d unknown, %d reads); visualisation: %s", writes, unknown, reads, path)
	default:
		c.fatalf("porcupine could not decide within its budget (%d writes, %d unknown, %d reads)", writes, unknown, reads)
	}
	tl.note(fmt.Sprintf("replicas=%d seed=%d: %d writes (%d acked, %d unknown outcome), %d consistent reads, %d requests with no effect; linearizable (checked in %v), all replicas converged",
		s.replicas, s.seed, writes, l.acked.Load(), unknown, reads, l.skipped.Load(), time.Since(checkStart).Round(time.Millisecond)))
	t.Logf("linearizable: %d writes (%d acked, %d unknown outcome), %d consistent reads; %d requests had no effect; final leader %s",
		writes, l.acked.Load(), unknown, reads, l.skipped.Load(), leader)
}

func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }
