package nodekey

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/daemon/reporter"
	"github.com/dovetail-dev/dovetail/report"
)

// fakeIntake is a coordinator's report intake reduced to the protocol:
// it binds a key on attestation, verifies every report's signature and
// forgets the binding on reset (as an operator's reset or a lost state
// would), answering 401 until the agent attests again.
type fakeIntake struct {
	mu       sync.Mutex
	key      ed25519.PublicKey
	attests  int
	accepted []string
	refuse   bool // refuse attestation (coordinator does not know the instance yet)
}

func (f *fakeIntake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	inst, seq, sig, err := report.SignedBy(r.Header)
	if err != nil {
		http.Error(w, "no_credentials", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case report.AttestPath:
		if f.refuse {
			http.Error(w, "not_owned", http.StatusForbidden)
			return
		}
		var a report.Attestation
		_ = json.Unmarshal(body, &a)
		pub, _ := base64.StdEncoding.DecodeString(a.PublicKey)
		if !ed25519.Verify(pub, report.StringToSign(r.Method, r.URL.Path, inst, seq, body), sig) {
			http.Error(w, "bad_signature", http.StatusUnauthorized)
			return
		}
		f.key = pub
		f.attests++
		_, _ = w.Write([]byte(`{}`))
	case report.Path:
		if f.key == nil || !ed25519.Verify(f.key, report.StringToSign(r.Method, r.URL.Path, inst, seq, body), sig) {
			http.Error(w, "not_attested", http.StatusUnauthorized)
			return
		}
		var rep report.Report
		_ = json.Unmarshal(body, &rep)
		f.accepted = append(f.accepted, rep.ID)
		_, _ = w.Write([]byte(`{"accepted":true}`))
	}
}

func (f *fakeIntake) state() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attests, len(f.accepted)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The reporter attests once at start and then only signs; reports stay
// spooled while attestation is refused; a 401 (binding gone) makes it
// attest again and the report is delivered, not dropped.
func TestReporterAttestsAtStartAndOn401(t *testing.T) {
	fi := &fakeIntake{refuse: true}
	srv := httptest.NewServer(fi)
	defer srv.Close()
	s, err := New(Config{Evidence: evidence, NodeName: func() string { return "node-1" }})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := reporter.New(reporter.Config{Coordinators: []string{srv.URL}, Signer: s, SpoolDir: t.TempDir(),
		BaseBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	go func() { _ = rc.Run(ctx) }()
	rc.Send(report.Report{ID: "r1", Kind: report.KindHealth, NodeName: "node-1"})
	time.Sleep(100 * time.Millisecond)
	if _, n := fi.state(); n != 0 || rc.Pending() != 1 {
		t.Fatalf("delivered while unattested: %d accepted, %d pending", n, rc.Pending())
	}
	fi.mu.Lock()
	fi.refuse = false
	fi.mu.Unlock()
	waitFor(t, "r1 delivered after attestation", func() bool { _, n := fi.state(); return n == 1 })
	for i := 0; i < 5; i++ {
		rc.Send(report.Report{ID: "spot" + string(rune('a'+i)), Kind: report.KindInterruption, NodeName: "node-1"})
	}
	waitFor(t, "notices delivered", func() bool { _, n := fi.state(); return n == 6 })
	if a, _ := fi.state(); a != 1 {
		t.Fatalf("%d attestations for 6 reports: the hot path attested again", a)
	}
	// The coordinator forgets the binding: the next report gets 401, the
	// agent attests again, and the report still arrives.
	fi.mu.Lock()
	fi.key = nil
	fi.mu.Unlock()
	rc.Send(report.Report{ID: "after-reset", Kind: report.KindInterruption, NodeName: "node-1"})
	waitFor(t, "report after 401 delivered", func() bool { _, n := fi.state(); return n == 7 })
	if a, _ := fi.state(); a != 2 {
		t.Fatalf("%d attestations, want 2 (start, after 401)", a)
	}
}
