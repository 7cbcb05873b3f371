package raftnode

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"

	"github.com/dovetail-dev/dovetail/tlsid"
)

// MutualTLS returns server and client configs for Raft peers that trust pool
// and present cert. serverName, when set, is the name every peer's
// certificate must carry (one shared name keeps certificates simple in a
// StatefulSet); otherwise the dialled host name is verified.
//
// Both directions check who the peer is, not only that the CA signed it: a
// dialled peer must carry serverName or the dialled host (Go's check), and
// an accepted connection's client certificate must carry serverName or the
// host of one of peers. Any other certificate of the same CA (an agent's,
// say) is refused.
func MutualTLS(pool *x509.CertPool, cert tls.Certificate, serverName string, peers []Peer) (server, client *tls.Config, err error) {
	return mutualTLS(pool, func() (*tls.Certificate, error) { return &cert, nil }, serverName, peers)
}

func mutualTLS(pool *x509.CertPool, get func() (*tls.Certificate, error), serverName string, peers []Peer) (server, client *tls.Config, err error) {
	names := PeerNames(serverName, peers)
	server = &tls.Config{
		MinVersion:       tls.VersionTLS13,
		GetCertificate:   func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return get() },
		ClientCAs:        pool,
		ClientAuth:       tls.RequireAndVerifyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error { return verifyPeerName(cs, names) },
	}
	client = &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return get() },
		RootCAs:              pool,
		ServerName:           serverName,
	}
	return server, client, nil
}

// PeerNames are the names a Raft peer's certificate may carry: the shared
// serverName and every configured peer's host.
func PeerNames(serverName string, peers []Peer) []string {
	var names []string
	if serverName != "" {
		names = append(names, serverName)
	}
	for _, p := range peers {
		host, _, err := net.SplitHostPort(p.RaftAddr)
		if err != nil {
			host = p.RaftAddr
		}
		if host != "" {
			names = append(names, host)
		}
	}
	return names
}

// verifyPeerName runs after the chain was verified (RequireAndVerifyClientCert).
func verifyPeerName(cs tls.ConnectionState, names []string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("raft peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	for _, n := range names {
		if leaf.VerifyHostname(n) == nil {
			return nil
		}
	}
	return fmt.Errorf("raft peer certificate %q names none of the configured peers (%s): refused",
		leaf.Subject.CommonName, strings.Join(names, ", "))
}

func loadPool(caFile string) (*x509.CertPool, error) {
	p, err := tlsid.LoadPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("raft CA: %w", err)
	}
	return p, nil
}
