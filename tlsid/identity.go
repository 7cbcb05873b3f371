// Package tlsid holds Dovetail's TLS identities: who may serve as a
// coordinator, who may join Raft, and the files certificates are served
// from (reloaded on rotation).
//
// A coordinator's API certificate carries the URI SAN
// spiffe://<cluster>/coordinator. Clients (agents, the CLI, a replica
// forwarding to the leader) verify the chain to the cluster's CA and that URI,
// not the dialled host: agents find coordinators by gossip at pod IPs that no
// certificate names, and a node that holds the gossip key (or any other
// certificate of the same CA, such as an agent's client certificate) must
// not be able to pose as a coordinator and receive reports.
package tlsid

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// CoordinatorURI is the URI SAN only coordinator certificates carry.
func CoordinatorURI(cluster string) string { return "spiffe://" + cluster + "/coordinator" }

// LoadPool reads a PEM CA bundle.
func LoadPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificates", caFile)
	}
	return pool, nil
}

// HasURI reports whether cert carries the URI SAN uri. An empty uri
// matches any spiffe://<cluster>/coordinator: the CA then pins the cluster.
func HasURI(cert *x509.Certificate, uri string) bool {
	for _, u := range cert.URIs {
		if uri == "" && u.Scheme == "spiffe" && u.Host != "" && u.Path == "/coordinator" {
			return true
		}
		if uri != "" && u.String() == uri {
			return true
		}
	}
	return false
}

// VerifyServer checks a server's certificate chain against roots for server
// authentication and that the leaf carries the URI SAN identity, ignoring
// the dialled host name.
func VerifyServer(roots *x509.CertPool, identity string) func(tls.ConnectionState) error {
	return verifyServer(func() (*x509.CertPool, error) { return roots, nil }, identity)
}

// verifyServer is VerifyServer with the roots asked for at each handshake
// (a PoolFile's, reloaded when the bundle changes).
func verifyServer(rootsNow func() (*x509.CertPool, error), identity string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		roots, err := rootsNow()
		if err != nil {
			return fmt.Errorf("coordinator CA: %w", err)
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server presented no certificate")
		}
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return fmt.Errorf("coordinator certificate: %w", err)
		}
		if !HasURI(leaf, identity) {
			var got []string
			for _, u := range leaf.URIs {
				got = append(got, u.String())
			}
			want := identity
			if want == "" {
				want = "spiffe://<cluster>/coordinator"
			}
			return fmt.Errorf("certificate of %q is not a coordinator's: want URI SAN %s, has [%s]",
				leaf.Subject.CommonName, want, strings.Join(got, " "))
		}
		return nil
	}
}

// CoordinatorClient is the TLS configuration of a client of the coordinator
// API: TLS 1.3 (both ends are ours), the chain verified against roots and
// the coordinator identity required. Go's host name check is replaced by
// the identity check (InsecureSkipVerify only turns off the built-in check;
// VerifyConnection does the whole verification).
func CoordinatorClient(roots *x509.CertPool, identity string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, //nolint:gosec // verified by VerifyConnection
		VerifyConnection:   VerifyServer(roots, identity),
	}
}

// CoordinatorClientFromFile is CoordinatorClient with the CA bundle read
// from caFile, re-read when the file changes (CA rotation without restart).
func CoordinatorClientFromFile(caFile, identity string) (*tls.Config, error) {
	pf, err := NewPoolFile(caFile)
	if err != nil {
		return nil, err
	}
	return CoordinatorClientPool(pf, identity), nil
}

// CoordinatorClientPool is CoordinatorClient verifying against the bundle pf
// holds at each handshake.
func CoordinatorClientPool(pf *PoolFile, identity string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, //nolint:gosec // verified by VerifyConnection
		VerifyConnection:   verifyServer(pf.Get, identity),
	}
}
