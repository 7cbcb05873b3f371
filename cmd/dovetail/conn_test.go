package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/tlsid"
)

// The CLI sends the kubeconfig's token over TLS to a server with the
// coordinator identity, and refuses a server of the same CA without it.
func TestConnSendsKubeconfigTokenAndChecksIdentity(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlsid.NewCA("cli-test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	serve := func(uri string) (*httptest.Server, *string) {
		kp, err := ca.Issue(tlsid.Leaf{CommonName: "s", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, URIs: []string{uri}, Server: true}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r.Header.Get("Authorization")
			_, _ = w.Write([]byte(`{"replica":"c0"}`))
		}))
		s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.StartTLS()
		t.Cleanup(s.Close)
		return s, &got
	}
	good, auth := serve("spiffe://c1/coordinator")
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: the-users-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := connFlags{ca: caFile, kubeconfig: kubeconfig}
	c, err := f.client(strings.TrimPrefix(good.URL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	var st api.Status
	if err := c.Get(t.Context(), api.PathStatus, &st); err != nil || st.Replica != "c0" {
		t.Fatalf("get: %v %+v", err, st)
	}
	if *auth != "Bearer the-users-token" {
		t.Fatalf("Authorization = %q", *auth)
	}
	rogue, _ := serve("spiffe://c1/node/n1")
	c, err = f.client(strings.TrimPrefix(rogue.URL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Get(t.Context(), api.PathStatus, &st); err == nil || !strings.Contains(err.Error(), "not a coordinator's") {
		t.Fatalf("server without the coordinator identity: %v", err)
	}
}
