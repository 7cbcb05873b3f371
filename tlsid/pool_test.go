package tlsid_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/tlsid"
)

// TestCoordinatorClientFollowsCABundle: an agent's (or the CLI's) client
// built once from a CA file trusts a coordinator whose certificate comes
// from a new CA as soon as the file holds that CA, keeps the last good
// bundle when the file breaks, and refuses the new CA's server again once
// the file drops it.
func TestCoordinatorClientFollowsCABundle(t *testing.T) {
	now := time.Now()
	oldCA, err := tlsid.NewCA("old", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := tlsid.NewCA("new", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	identity := tlsid.CoordinatorURI("c1")
	kp, err := newCA.Issue(tlsid.Leaf{CommonName: "coordinator", URIs: []string{identity}, Server: true, Validity: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()

	caFile := filepath.Join(t.TempDir(), "ca.crt")
	gen := 0
	write := func(data []byte) {
		gen++
		if err := os.WriteFile(caFile, data, 0o600); err != nil {
			t.Fatal(err)
		}
		mod := now.Add(time.Duration(gen) * time.Second)
		if err := os.Chtimes(caFile, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	write(oldCA.CertPEM)
	tc, err := tlsid.CoordinatorClientFromFile(caFile, identity)
	if err != nil {
		t.Fatal(err)
	}
	get := func() error {
		// A new transport each time: no kept connection hides a handshake.
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		resp, err := c.Get(srv.URL)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	if err := get(); err == nil {
		t.Fatal("trusted a coordinator of a CA not in the bundle")
	}
	write(append(append([]byte{}, oldCA.CertPEM...), newCA.CertPEM...))
	if err := get(); err != nil {
		t.Fatalf("after the bundle gained the new CA: %v", err)
	}
	write([]byte("not a bundle"))
	if err := get(); err != nil {
		t.Fatalf("a broken bundle file dropped the last good one: %v", err)
	}
	write(oldCA.CertPEM)
	if err := get(); err == nil {
		t.Fatal("still trusted the new CA after the bundle dropped it")
	}
	if _, err := tlsid.NewPoolFile(filepath.Join(t.TempDir(), "missing.crt")); err == nil {
		t.Fatal("a missing bundle file loaded")
	}
}
