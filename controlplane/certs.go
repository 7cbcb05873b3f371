package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/dovetail-dev/dovetail/tlsid"
)

// certValidity is long enough for a dev cluster left running for weeks, short
// enough that a leaked CA from a temp dir is worthless soon.
const certValidity = 365 * 24 * time.Hour

// pki is everything the control plane needs for TLS and identities: one CA
// that signs the API server's serving cert and every client cert, and the
// service-account signing key. Certificates come from tlsid, the one place
// Dovetail mints them.
type pki struct {
	CA        *tlsid.CA
	Serving   tlsid.KeyPair
	Clients   map[string]tlsid.KeyPair // by component name
	SAKeyPEM  []byte
	SAPubPEM  []byte
	generated time.Time
}

// clientIdentities are the client certificates minted at start. Every
// component is in system:masters: this is a single-user local cluster and
// per-component RBAC would only add ways for it to fail.
var clientIdentities = []string{"admin", "kube-controller-manager", "kube-scheduler", "kwok"}

func newPKI(now time.Time) (*pki, error) {
	ca, err := tlsid.NewCA("dovetail-local-ca", now, certValidity)
	if err != nil {
		return nil, fmt.Errorf("generate CA: %w", err)
	}
	serving, err := ca.Issue(tlsid.Leaf{
		CommonName: "kube-apiserver",
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPs:      []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.ParseIP(serviceIP)},
		Server:   true,
		Validity: certValidity,
	}, now)
	if err != nil {
		return nil, fmt.Errorf("generate serving cert: %w", err)
	}
	p := &pki{CA: ca, Serving: serving, Clients: map[string]tlsid.KeyPair{}, generated: now}
	for _, name := range clientIdentities {
		cn := name
		if name != "admin" && name != "kwok" {
			cn = "system:" + name
		}
		kp, err := p.issueClient(cn, []string{"system:masters"}, now)
		if err != nil {
			return nil, fmt.Errorf("generate client cert for %s: %w", name, err)
		}
		p.Clients[name] = kp
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate service account key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, fmt.Errorf("encode service account key: %w", err)
	}
	p.SAKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encode service account public key: %w", err)
	}
	p.SAPubPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	return p, nil
}

// issueClient mints a client certificate the API server authenticates as
// user cn in groups.
func (p *pki) issueClient(cn string, groups []string, now time.Time) (tlsid.KeyPair, error) {
	return p.CA.Issue(tlsid.Leaf{CommonName: cn, Organization: groups, Client: true, Validity: certValidity}, now)
}

// pkiFiles are the paths the components read.
type pkiFiles struct {
	CACert, ServingCert, ServingKey, SAKey, SAPub string
}

func (p *pki) write(dir string) (pkiFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return pkiFiles{}, fmt.Errorf("create pki dir: %w", err)
	}
	f := pkiFiles{
		CACert:      filepath.Join(dir, "ca.crt"),
		ServingCert: filepath.Join(dir, "apiserver.crt"),
		ServingKey:  filepath.Join(dir, "apiserver.key"),
		SAKey:       filepath.Join(dir, "sa.key"),
		SAPub:       filepath.Join(dir, "sa.pub"),
	}
	files := map[string][]byte{
		f.CACert:      p.CA.CertPEM,
		f.ServingCert: p.Serving.CertPEM,
		f.ServingKey:  p.Serving.KeyPEM,
		f.SAKey:       p.SAKeyPEM,
		f.SAPub:       p.SAPubPEM,
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return pkiFiles{}, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return f, nil
}
