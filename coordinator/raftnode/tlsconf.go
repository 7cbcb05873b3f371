package raftnode

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
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
	return mutualTLS(func() (*x509.CertPool, error) { return pool, nil },
		func() (*tls.Certificate, error) { return &cert, nil }, serverName, peers)
}

// mutualTLS asks for the pool and the key pair at every handshake, so a
// rotated CA bundle or certificate (tlsid.PoolFile, tlsid.CertFiles) takes
// effect without a restart.
func mutualTLS(pools func() (*x509.CertPool, error), get func() (*tls.Certificate, error), serverName string, peers []Peer) (server, client *tls.Config, err error) {
	names := PeerNames(serverName, peers)
	server = &tls.Config{
		MinVersion: tls.VersionTLS13,
		// One config per handshake: Go verifies the client's chain against
		// ClientCAs, which must be the bundle as it is now.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool, err := pools()
			if err != nil {
				return nil, fmt.Errorf("raft CA: %w", err)
			}
			return &tls.Config{
				MinVersion:       tls.VersionTLS13,
				GetCertificate:   func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return get() },
				ClientCAs:        pool,
				ClientAuth:       tls.RequireAndVerifyClientCert,
				VerifyConnection: func(cs tls.ConnectionState) error { return verifyPeerName(cs, names) },
			}, nil
		},
	}
	client = &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return get() },
		// Go's verification reads RootCAs fixed at dial time; the chain and
		// the name (serverName, else the dialled host, which tls.Dial puts
		// in ServerName) are verified by verifyServerChain instead,
		// against the bundle as it is at this handshake.
		InsecureSkipVerify: true, //nolint:gosec // verified by VerifyConnection
		ServerName:         serverName,
		VerifyConnection:   func(cs tls.ConnectionState) error { return verifyServerChain(cs, pools) },
	}
	return server, client, nil
}

// verifyServerChain is what Go's client verification does (chain to the
// pool for server auth, leaf naming cs.ServerName), with the pool asked for
// now.
func verifyServerChain(cs tls.ConnectionState, pools func() (*x509.CertPool, error)) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("raft peer presented no certificate")
	}
	if cs.ServerName == "" {
		return fmt.Errorf("raft peer: no server name to verify (set the TLS server name)")
	}
	pool, err := pools()
	if err != nil {
		return fmt.Errorf("raft CA: %w", err)
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		DNSName: cs.ServerName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("raft peer certificate: %w", err)
	}
	return nil
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
