package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/tlsid"
)

// Every e2e world runs the secure path production runs (issue 11): a CA
// signs each replica's Raft certificate (one shared peer name, as the Helm
// chart's raftTLS.serverName) and API certificate (URI SAN
// spiffe://dovetail-e2e/coordinator); Raft is mutual TLS, the API is served
// over TLS and authorises every guarded route with TokenReview and
// SubjectAccessReview against the real API server; agents and the test's
// own clients verify the coordinators' chain against the CA file (re-read
// when it changes) and their identity, not the dialled address. People and
// tools (Prometheus, the test's reads) use a ServiceAccount token that the
// chart's dovetail-view ClusterRole authorises.

// raftPeerName is the name every replica's Raft certificate carries.
const raftPeerName = "raft.dovetail-e2e"

// viewerSA is the ServiceAccount (kube-system) whose token the test's reads
// and Prometheus send: bound to the chart's dovetail-view, so a read that
// needed more than a viewer has would fail here first.
const viewerSA = "dovetail-e2e-viewer"

// pki is one world's trust material.
type pki struct {
	dir    string
	ca     *tlsid.CA
	caFile string
	// identity is the URI SAN clients require of a coordinator.
	identity string
	// clientTLS is how agents and the CLI verify a coordinator.
	clientTLS *tls.Config
	// token is the viewer's bearer token, tokenFile the same on disk (for
	// Prometheus's credentials_file).
	token, tokenFile string
}

func newPKI(t testing.TB, ctx context.Context, kube kubernetes.Interface, dir string) *pki {
	t.Helper()
	ca, err := tlsid.NewCA("dovetail-e2e-coordinators", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: dir, ca: ca, caFile: filepath.Join(dir, "ca.crt"), identity: tlsid.CoordinatorURI(clusterName)}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if p.clientTLS, err = tlsid.CoordinatorClientFromFile(p.caFile, p.identity); err != nil {
		t.Fatal(err)
	}
	p.token = viewerToken(t, ctx, kube)
	p.tokenFile = filepath.Join(dir, "viewer.token")
	if err := os.WriteFile(p.tokenFile, []byte(p.token), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// replicaCerts issues replica id's Raft and API key pairs into the PKI
// directory: the Raft one carries the shared peer name (client and server
// use, Raft dials both ways), the API one the coordinator identity and the
// loopback address (Prometheus verifies the scraped host, as it would a pod IP).
func (p *pki) replicaCerts(t testing.TB, id string) (raft raftnode.TLSFiles, apiCert, apiKey string) {
	t.Helper()
	now := time.Now()
	loop := []net.IP{net.IPv4(127, 0, 0, 1)}
	raftKP, err := p.ca.Issue(tlsid.Leaf{CommonName: id + "-raft", DNSNames: []string{raftPeerName}, Server: true, Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	rc, rk, err := raftKP.Write(p.dir, id+"-raft")
	if err != nil {
		t.Fatal(err)
	}
	apiKP, err := p.ca.Issue(tlsid.Leaf{CommonName: id, IPs: loop, URIs: []string{p.identity}, Server: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	ac, ak, err := apiKP.Write(p.dir, id+"-api")
	if err != nil {
		t.Fatal(err)
	}
	return raftnode.TLSFiles{CAFile: p.caFile, CertFile: rc, KeyFile: rk, ServerName: raftPeerName}, ac, ak
}

// transport is an HTTPS transport that verifies coordinators as agents do;
// token, when set, is sent as a bearer token.
func (p *pki) transport(token string) http.RoundTripper {
	tr := &http.Transport{TLSClientConfig: p.clientTLS, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4}
	if token == "" {
		return tr
	}
	return api.BearerTransport(token, tr)
}

// viewerToken applies the chart's people ClusterRoles (kept across the tests
// of one control plane), binds dovetail-view to viewerSA and returns a token
// of it from the TokenRequest API.
func viewerToken(t testing.TB, ctx context.Context, kube kubernetes.Interface) string {
	t.Helper()
	path := filepath.Join("..", "..", "packaging", "helm", "dovetail-coordinator", "files", "people-clusterroles.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---") {
		var cr rbacv1.ClusterRole
		if err := yaml.Unmarshal([]byte(doc), &cr); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if cr.Name == "" {
			continue
		}
		if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &cr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create ClusterRole %s: %v", cr.Name, err)
		}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: viewerSA, Namespace: "kube-system"}}
	if _, err := kube.CoreV1().ServiceAccounts("kube-system").Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create ServiceAccount %s: %v", viewerSA, err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: viewerSA},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "dovetail-view"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: viewerSA, Namespace: "kube-system"}},
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("bind %s: %v", viewerSA, err)
	}
	secs := int64(2 * time.Hour / time.Second)
	tr, err := kube.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, viewerSA,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", viewerSA, err)
	}
	return tr.Status.Token
}

// get reads path from the replica at addr as the viewer, over TLS.
func (e *env) get(addr, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.viewer.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s%s: %w", addr, path, err)
	}
	return resp, nil
}
