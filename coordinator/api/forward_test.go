package api_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/api"
)

// movingLeader stands for the leader's DNS name: it proxies TCP to the
// leader, and after move() every connection it accepted before goes silent
// (what it is sent is swallowed, nothing comes back), as a connection to an
// IP that vanished, while new connections reach the leader, as the name
// resolving to the leader's new IP.
type movingLeader struct {
	ln       net.Listener
	target   string
	gen      atomic.Int64
	accepted atomic.Int64
}

func newMovingLeader(t *testing.T, target string) *movingLeader {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &movingLeader{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m.accepted.Add(1)
			go m.pipe(c)
		}
	}()
	return m
}

func (m *movingLeader) move() { m.gen.Add(1) }

func (m *movingLeader) pipe(c net.Conn) {
	defer c.Close()
	gen := m.gen.Load()
	up, err := net.Dial("tcp", m.target)
	if err != nil {
		return
	}
	defer up.Close()
	go m.copyWhileLive(c, up, gen)
	m.copyWhileLive(up, c, gen)
}

func (m *movingLeader) copyWhileLive(dst io.Writer, src io.Reader, gen int64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && m.gen.Load() == gen {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestConsistentReadSurvivesLeaderAddressChange: the follower's pooled
// keep-alive connection to the leader goes black-hole (the leader's
// container moved networks: same name, new IP). The forwarded consistent
// read must be answered within the client's deadline on a fresh
// connection. Before, the forward hung on the dead connection until the
// client gave up (found by coordinator/dockertest, seed 525016).
func TestConsistentReadSurvivesLeaderAddressChange(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	leader := &fakeReplica{id: "leader"}
	leader.leading.Store(true)
	leaderSrv := httptest.NewServer(api.New(api.Config{Backend: leader, Log: quiet}))
	defer leaderSrv.Close()
	name := newMovingLeader(t, leaderSrv.Listener.Addr().String())
	fol := &fakeReplica{id: "follower", leaderAt: func() string { return name.ln.Addr().String() }}
	folSrv := httptest.NewServer(api.New(api.Config{Backend: fol, Log: quiet}))
	defer folSrv.Close()

	// The suite's client deadline; the follower's retry window (10s) is
	// longer, so only a bounded attempt answers in time.
	c := api.NewClient(folSrv.URL)
	c.HTTP = &http.Client{Timeout: 3 * time.Second}
	read := func() {
		t.Helper()
		var n api.Node
		if err := c.Get(context.Background(), api.PathNodes+"/node-a?consistent=1", &n); err != nil {
			t.Fatalf("consistent read through follower: %v", err)
		}
		if n.InstanceID != "i-leader" {
			t.Fatalf("read served from %q, want the leader", n.InstanceID)
		}
	}
	read() // pools a connection to the leader's first address
	if got := name.accepted.Load(); got != 1 {
		t.Fatalf("%d connections to the leader before the move, want 1", got)
	}
	name.move()
	read()
	if got := name.accepted.Load(); got < 2 {
		t.Fatalf("the follower never dialed the leader's new address (%d connections)", got)
	}
}
