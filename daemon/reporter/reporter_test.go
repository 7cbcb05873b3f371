package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/report"
)

// coordinator records reports and can be told to fail.
type coordinator struct {
	mu      sync.Mutex
	got     []report.Report
	ids     map[string]int
	failing bool
	status  int
}

func (c *coordinator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.URL.Path != report.Path || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	if c.failing {
		http.Error(w, "no leader", http.StatusServiceUnavailable)
		return
	}
	if c.status != 0 {
		http.Error(w, "bad", c.status)
		return
	}
	var rep report.Report
	if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if c.ids == nil {
		c.ids = map[string]int{}
	}
	c.ids[rep.ID]++
	c.got = append(c.got, rep)
	w.WriteHeader(http.StatusAccepted)
}

func (c *coordinator) reports() []report.Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]report.Report(nil), c.got...)
}

func (c *coordinator) set(failing bool) { c.mu.Lock(); c.failing = failing; c.mu.Unlock() }

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.BaseBackoff = 10 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func runClient(t *testing.T, c *Client) context.CancelFunc {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return func() { cancel(); <-done }
}

func flush(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolsWhileDownAndDeliversInPriorityOrder(t *testing.T) {
	coord := &coordinator{failing: true}
	srv := httptest.NewServer(coord)
	defer srv.Close()
	spool := t.TempDir()

	// First agent process: coordinator down; reports spooled to disk.
	c1 := newClient(t, Config{Coordinators: []string{srv.URL}, SpoolDir: spool})
	stop := runClient(t, c1)
	c1.Send(report.Report{Kind: report.KindHealth, NodeName: "n1", Message: "old"})
	c1.Send(report.Report{Kind: report.KindRebalance, NodeName: "n1"})
	c1.Send(report.Report{Kind: report.KindHealth, NodeName: "n1", Message: "new"})
	spot := c1.Send(report.Report{Kind: report.KindInterruption, NodeName: "n1", Action: "terminate"})
	time.Sleep(100 * time.Millisecond) // a few failed rounds
	stop()
	if c1.Pending() != 3 {
		t.Fatalf("pending %d, want 3 (older health superseded)", c1.Pending())
	}

	// The agent restarts, the coordinator comes back.
	coord.set(false)
	c2 := newClient(t, Config{Coordinators: []string{srv.URL}, SpoolDir: spool})
	if c2.Pending() != 3 {
		t.Fatalf("spool not reloaded: %d", c2.Pending())
	}
	runClient(t, c2)
	flush(t, c2)
	// The contract is at-least-once: a POST the coordinator applied but
	// whose answer the agent lost (timeout under load, agent stopped
	// mid-request) is sent again under the same ID, and the coordinator
	// applies each ID once. So: every spooled report arrives, duplicates
	// carry the same ID, and the first arrivals follow priority order.
	var got []report.Report
	seen := map[string]bool{}
	for _, r := range coord.reports() {
		if !seen[r.ID] {
			seen[r.ID] = true
			got = append(got, r)
		}
	}
	if len(got) != 3 || got[0].ID != spot.ID || got[1].Kind != report.KindRebalance || got[2].Message != "new" {
		t.Fatalf("delivered (first arrivals) %+v", got)
	}
	if len(coord.ids) != 3 {
		t.Fatalf("distinct report IDs delivered: %d, want 3 (superseded health must not be sent)", len(coord.ids))
	}
	if got[0].ObservedAt.IsZero() || got[0].ID == "" {
		t.Fatal("ID/ObservedAt not stamped")
	}
}

func TestFailsOverToAnotherReplicaAndDiscovers(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer down.Close()
	coord := &coordinator{}
	up := httptest.NewServer(coord)
	defer up.Close()
	addr := strings.TrimPrefix(up.URL, "http://") // host:port from gossip Meta.RPCAddr
	c := newClient(t, Config{Coordinators: []string{down.URL, "127.0.0.1:1"}, Discover: func() []string { return []string{addr} }})
	runClient(t, c)
	for range 5 {
		c.Send(report.Report{Kind: report.KindMaintenance, NodeName: "n1"})
	}
	flush(t, c)
	if n := len(coord.reports()); n != 5 {
		t.Fatalf("delivered %d", n)
	}
}

func TestRejectedReportIsDroppedNotRetriedForever(t *testing.T) {
	coord := &coordinator{status: http.StatusBadRequest}
	srv := httptest.NewServer(coord)
	defer srv.Close()
	c := newClient(t, Config{Coordinators: []string{srv.URL}})
	runClient(t, c)
	c.Send(report.Report{Kind: report.KindReplaceMe, NodeName: "n1"})
	flush(t, c)
}

func TestSpoolBound(t *testing.T) {
	c := newClient(t, Config{MaxSpool: 3})
	c.Send(report.Report{Kind: report.KindInterruption})
	for range 5 {
		c.Send(report.Report{Kind: report.KindRebalance})
	}
	if c.Pending() != 3 {
		t.Fatalf("pending %d", c.Pending())
	}
	c.mu.Lock()
	first := c.pending[0].Report.Kind
	c.mu.Unlock()
	if first != report.KindInterruption {
		t.Fatal("the interruption report was dropped for rebalance noise")
	}
}

func TestNoAddressKeepsSpooling(t *testing.T) {
	c := newClient(t, Config{})
	runClient(t, c)
	c.Send(report.Report{Kind: report.KindHealth})
	time.Sleep(50 * time.Millisecond)
	if c.Pending() != 1 {
		t.Fatal("report lost without any coordinator")
	}
}

// Issue 10: with two replicas known and one answering 404 (or any other
// 4xx that is not about the report itself), every report reaches the
// other replica; nothing is dropped.
func TestOneReplicaAnswering404DoesNotLoseReports(t *testing.T) {
	var notFound sync.Map
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		notFound.Store(r.RemoteAddr, true)
		http.NotFound(w, r)
	}))
	defer bad.Close()
	coord := &coordinator{}
	good := httptest.NewServer(coord)
	defer good.Close()
	c := newClient(t, Config{Coordinators: []string{bad.URL, good.URL}})
	runClient(t, c)
	var sent []report.Report
	for range 6 {
		sent = append(sent, c.Send(report.Report{Kind: report.KindInterruption, NodeName: "n1", Action: "terminate"}))
	}
	flush(t, c)
	for _, r := range sent {
		if coord.ids[r.ID] == 0 {
			t.Fatalf("report %s was dropped after a 404 from the other replica", r.ID)
		}
	}
	hit := false
	notFound.Range(func(any, any) bool { hit = true; return false })
	if !hit {
		t.Fatal("the 404 replica was never tried; the test did not exercise the failover")
	}
}

// A replica-specific refusal from the only replica keeps the report
// spooled (retried) instead of dropping it.
func TestOnlyReplicaAnswering404KeepsReportSpooled(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	c := newClient(t, Config{Coordinators: []string{srv.URL}})
	runClient(t, c)
	c.Send(report.Report{Kind: report.KindInterruption, NodeName: "n1"})
	time.Sleep(100 * time.Millisecond) // several delivery rounds
	if c.Pending() != 1 {
		t.Fatalf("pending %d, want the report still spooled", c.Pending())
	}
}

// A verbose health report is clipped below report.MaxBytes, so the
// coordinator's size cap never refuses what an agent really sends.
func TestVerboseReportFitsTheCoordinatorsCap(t *testing.T) {
	c := newClient(t, Config{})
	var checks []report.CheckResult
	for range 100 {
		checks = append(checks, report.CheckResult{Name: "disk", State: "failed", Message: strings.Repeat("é", 4000)})
	}
	r := c.Send(report.Report{Kind: report.KindHealth, NodeName: "n1", Message: strings.Repeat("m", 9000), Checks: checks})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > report.MaxBytes {
		t.Fatalf("clipped report is %d bytes, cap %d", len(b), report.MaxBytes)
	}
}

// flakySigner fails its first attestations as replicas do during an
// election (503, no leader), then attests.
type flakySigner struct {
	mu       sync.Mutex
	fails    int
	calls    int
	ok       bool
	attested chan struct{}
}

func (s *flakySigner) Attested() bool             { s.mu.Lock(); defer s.mu.Unlock(); return s.ok }
func (s *flakySigner) Invalidate()                { s.mu.Lock(); s.ok = false; s.mu.Unlock() }
func (s *flakySigner) Sign(*http.Request, []byte) {}
func (s *flakySigner) Attest(context.Context, *http.Client, string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= s.fails {
		return errors.New(`attest: HTTP 503: {"error": "no leader known"}`)
	}
	if !s.ok {
		s.ok = true
		close(s.attested)
	}
	return nil
}

func (s *flakySigner) attempts() int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls }

// TestAttestsAtStartUntilAReplicaAnswers: an agent started while no replica
// can attest (an election) keeps trying with its backoff, without waiting
// for a report, so its first report — maybe a spot notice — is only signed.
// Once attested it stops; the report then goes out without attesting again.
func TestAttestsAtStartUntilAReplicaAnswers(t *testing.T) {
	coord := &coordinator{}
	srv := httptest.NewServer(coord)
	defer srv.Close()
	s := &flakySigner{fails: 4, attested: make(chan struct{})}
	c := newClient(t, Config{Coordinators: []string{srv.URL}, Signer: s})
	runClient(t, c)
	select {
	case <-s.attested:
	case <-time.After(10 * time.Second): // a bound, not a speed target
		t.Fatalf("not attested before any report after %d attempts: the first report would attest on its way", s.attempts())
	}
	if got := s.attempts(); got != s.fails+1 {
		t.Errorf("%d attestation attempts, want %d (the failures, then one success)", got, s.fails+1)
	}
	c.Send(report.Report{Kind: report.KindInterruption, NodeName: "n1", Action: "terminate"})
	flush(t, c)
	if got := s.attempts(); got != s.fails+1 {
		t.Errorf("the report attested again: %d attempts", got)
	}
	if n := len(coord.reports()); n != 1 {
		t.Errorf("%d reports delivered, want 1", n)
	}
}
