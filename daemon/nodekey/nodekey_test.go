package nodekey

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/dovetail-dev/dovetail/daemon/reporter"
	"github.com/dovetail-dev/dovetail/report"
)

func evidence(ctx context.Context, format string) ([]byte, []byte, error) {
	return []byte(`{"instanceId":"i-1","region":"us-east-1"}`), []byte("c2ln"), nil
}

// The key survives a restart (same file, mode 0600); the attestation
// request carries the document and is signed by the key it presents; a
// 404 (coordinator without attestation) is ErrNotRequired.
func TestKeyFileAndAttest(t *testing.T) {
	f := filepath.Join(t.TempDir(), "state", "node-key.pem")
	s1, err := New(Config{KeyFile: f, Evidence: evidence, NodeName: func() string { return "node-1" }})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	s2, err := New(Config{KeyFile: f, Evidence: evidence})
	if err != nil || !s2.PublicKey().Equal(s1.PublicKey()) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	var got report.Attestation
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != report.AttestPath {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &got)
		inst, seq, sig, err := report.SignedBy(r.Header)
		pub, _ := base64.StdEncoding.DecodeString(got.PublicKey)
		if err != nil || inst != "i-1" || !ed25519.Verify(pub, report.StringToSign(r.Method, r.URL.Path, inst, seq, body), sig) {
			http.Error(w, "bad", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	if err := s1.Attest(t.Context(), nil, srv.URL); err != nil {
		t.Fatal(err)
	}
	if !s1.Attested() || s1.InstanceID() != "i-1" || got.NodeName != "node-1" || got.Format != "rsa2048" {
		t.Fatalf("attested %v %q %+v", s1.Attested(), s1.InstanceID(), got)
	}
	a, b := s1.nextSeq(), s1.nextSeq()
	if b <= a {
		t.Fatalf("sequence not increasing: %d %d", a, b)
	}
	s1.Invalidate()
	if s1.Attested() {
		t.Fatal("still attested after Invalidate")
	}
	gone := httptest.NewServer(http.NotFoundHandler())
	defer gone.Close()
	if err := s1.Attest(t.Context(), nil, gone.URL); !errors.Is(err, reporter.ErrNotRequired) {
		t.Fatalf("404: %v", err)
	}
	if err := os.WriteFile(f, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{KeyFile: f, Evidence: evidence}); err == nil {
		t.Fatal("junk key file accepted")
	}
}
