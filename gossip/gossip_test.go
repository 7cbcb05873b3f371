package gossip

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dovetail-dev/dovetail/report"
)

var key1 = bytes.Repeat([]byte{1}, 32)
var key2 = bytes.Repeat([]byte{2}, 16)

type metaBox struct {
	mu sync.Mutex
	m  report.Meta
}

func (b *metaBox) get() report.Meta { b.mu.Lock(); defer b.mu.Unlock(); return b.m }
func (b *metaBox) set(m report.Meta) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m = m
}

func start(t *testing.T, name string, cfg Config) *Pool {
	t.Helper()
	cfg.Name = name
	cfg.BindAddr = "127.0.0.1"
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.RejoinInterval = 200 * time.Millisecond
	p, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// waitFor polls cond until it holds; a generous bound only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func find(ms []Member, name string) (Member, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func TestPoolJoinMetaUpdateLeave(t *testing.T) {
	coordMeta := &metaBox{m: report.Meta{Role: "coordinator", RPCAddr: "127.0.0.1:7443"}}
	agentMeta := &metaBox{m: report.Meta{Role: "agent", NodeName: "ip-10-0-0-1", InstanceID: "i-1"}}
	reg := prometheus.NewRegistry()
	c := start(t, "coord-0", Config{Keys: [][]byte{key1, key2}, Label: "prod", Meta: coordMeta.get, Registry: reg})
	a := start(t, "node-a", Config{Keys: [][]byte{key1, key2}, Label: "prod", Meta: agentMeta.get, Seeds: []string{c.LocalAddr()}})
	// Mid key rotation: node-b already encrypts with the new key; the others
	// have it installed as a secondary and decrypt with it.
	b := start(t, "node-b", Config{Keys: [][]byte{key2, key1}, Label: "prod", Seeds: []string{a.LocalAddr()}})

	waitFor(t, "3 alive members on coordinator", func() bool { return countState(c.Members(), StateAlive) == 3 })
	m, _ := find(b.Members(), "coord-0")
	if m.Meta.Role != "coordinator" || m.Meta.RPCAddr != "127.0.0.1:7443" {
		t.Fatalf("coordinator meta seen by node-b = %+v", m.Meta)
	}

	agentMeta.set(report.Meta{Role: "agent", NodeName: "ip-10-0-0-1", InstanceID: "i-2"})
	if err := a.UpdateMeta(time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "updated meta reaches coordinator", func() bool {
		m, ok := find(c.Members(), "node-a")
		return ok && m.Meta.InstanceID == "i-2"
	})
	sawUpdate := drainUntil(c.Events(), func(e Event) bool { return e.Type == EventUpdate && e.Member.Name == "node-a" })
	if !sawUpdate {
		t.Error("no update event for node-a on the coordinator")
	}

	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node-b listed as left", func() bool {
		m, ok := find(c.Members(), "node-b")
		return ok && m.State == StateLeft
	})
	waitFor(t, "alive gauge shows 2", func() bool {
		var m dto.Metric
		_ = c.metrics.members.WithLabelValues(StateAlive).Write(&m)
		return m.GetGauge().GetValue() == 2
	})
}

func drainUntil(ch <-chan Event, match func(Event) bool) bool {
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return false
			}
			if match(e) {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

func countState(ms []Member, state string) int {
	n := 0
	for _, m := range ms {
		if m.State == state {
			n++
		}
	}
	return n
}

func TestPoolRefusesStrangers(t *testing.T) {
	c := start(t, "coord-0", Config{Keys: [][]byte{key1}, Label: "prod"})
	wrongKey := start(t, "intruder", Config{Keys: [][]byte{key2}, Label: "prod", Seeds: []string{c.LocalAddr()}})
	wrongLabel := start(t, "other-cluster", Config{Keys: [][]byte{key1}, Label: "staging", Seeds: []string{c.LocalAddr()}})
	time.Sleep(500 * time.Millisecond) // let any (wrong) join attempts play out
	if n := len(c.Members()); n != 1 {
		t.Fatalf("coordinator sees %d members, want only itself: %+v", n, c.Members())
	}
	if n := len(wrongKey.Members()); n != 1 {
		t.Fatalf("wrong-key member sees %d", n)
	}
	if n := len(wrongLabel.Members()); n != 1 {
		t.Fatalf("wrong-label member sees %d", n)
	}
}

func TestPoolRejoinsWhenSeedComesLater(t *testing.T) {
	// Reserve an address for the seed by starting and stopping it.
	probe := start(t, "probe", Config{Dev: true})
	addr := probe.LocalAddr()
	_ = probe.Shutdown()

	a := start(t, "node-a", Config{Dev: true, Seeds: []string{addr}})
	if len(a.Members()) != 1 {
		t.Fatal("joined a seed that does not exist")
	}
	port := mustPort(t, addr)
	seed := start(t, "coord-0", Config{Dev: true, BindPort: port})
	waitFor(t, "agent rejoins the late seed", func() bool { return len(seed.Members()) == 2 })
}

func TestConfigValidation(t *testing.T) {
	ctx := context.Background()
	if _, err := Start(ctx, Config{Name: "x", BindAddr: "127.0.0.1"}); err == nil {
		t.Error("started without keys and without Dev")
	}
	if _, err := Start(ctx, Config{Name: "x", BindAddr: "127.0.0.1", Keys: [][]byte{[]byte("short")}}); err == nil {
		t.Error("accepted a 5-byte key")
	}
	if _, err := Start(ctx, Config{BindAddr: "127.0.0.1", Dev: true}); err == nil {
		t.Error("accepted an empty name")
	}
}

func TestOversizedMetaIsNotAdvertised(t *testing.T) {
	big := report.Meta{Role: "agent", NodeName: strings.Repeat("n", 600)}
	a := start(t, "node-a", Config{Dev: true, Meta: func() report.Meta { return big }})
	b := start(t, "node-b", Config{Dev: true, Seeds: []string{a.LocalAddr()}})
	waitFor(t, "join", func() bool { return len(b.Members()) == 2 })
	m, _ := find(b.Members(), "node-a")
	if m.Meta.NodeName != "" {
		t.Fatalf("oversized meta leaked: %d bytes", len(m.Meta.NodeName))
	}
	if m.State != StateAlive {
		t.Fatalf("member with bad meta not alive: %s", m.State)
	}
}

func TestShutdownTwiceAndLeaveAfter(t *testing.T) {
	a := start(t, "node-a", Config{Dev: true})
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(time.Millisecond); err == nil {
		t.Fatal("leave after shutdown succeeded")
	}
	if _, ok := <-a.Events(); ok {
		// drain: events buffered before shutdown are fine, but the channel must close
		for range a.Events() {
		}
	}
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	var p int
	for _, c := range addr[i+1:] {
		p = p*10 + int(c-'0')
	}
	if p == 0 {
		t.Fatalf("no port in %q", addr)
	}
	return p
}

// BenchmarkConvergence: time for n members on loopback (LAN timings,
// encrypted) to all see each other, each joining through one seed.
//
//	go test -run '^$' -bench Convergence -benchtime 3x ./gossip/
func BenchmarkConvergence(b *testing.B) {
	const n = 20
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		seed, err := Start(b.Context(), Config{Name: "seed", BindAddr: "127.0.0.1", Keys: [][]byte{key1}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		pools := []*Pool{seed}
		b.StartTimer()
		for j := 1; j < n; j++ {
			p, err := Start(b.Context(), Config{Name: fmt.Sprintf("node-%02d", j), BindAddr: "127.0.0.1", Keys: [][]byte{key1},
				Seeds: []string{seed.LocalAddr()}, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			pools = append(pools, p)
		}
		for _, p := range pools {
			for countState(p.Members(), StateAlive) < n {
				time.Sleep(5 * time.Millisecond)
			}
		}
		b.StopTimer()
		for _, p := range pools {
			_ = p.Shutdown()
		}
	}
}

// Departed members are forgotten after DepartedRetention on the pool's own
// clock (the process's one clock), not the wall clock.
func TestDepartedMembersForgottenOnThePoolsClock(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	c := start(t, "coord-0", Config{Keys: [][]byte{key1}, Label: "prod", Now: clock})
	b := start(t, "node-b", Config{Keys: [][]byte{key1}, Label: "prod", Seeds: []string{c.LocalAddr()}})
	waitFor(t, "2 alive members", func() bool { return countState(c.Members(), StateAlive) == 2 })
	// With one peer the leave broadcast may not be acknowledged in time;
	// the member is listed as departed either way.
	_ = b.Leave(time.Second)
	waitFor(t, "node-b listed as departed", func() bool {
		m, ok := find(c.Members(), "node-b")
		return ok && m.State != StateAlive
	})
	offset.Store(int64(DepartedRetention + time.Minute))
	waitFor(t, "node-b forgotten once the pool's clock passed the retention", func() bool {
		_, ok := find(c.Members(), "node-b")
		return !ok
	})
}
