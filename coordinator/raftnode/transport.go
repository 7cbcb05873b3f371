package raftnode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dovetail-dev/dovetail/tlsid"
)

// streamLayer is raft's stream layer over TCP, optionally wrapped in mutual
// TLS. Unlike raft's own TCP transport it accepts a host name as the
// advertised address, which a StatefulSet needs (pod IPs change, DNS names
// do not).
type streamLayer struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config // nil: plain TCP (tests only)
	linkDown  func(target string) bool
}

// faultyConn fails every read and write while its link is down, so a test
// partition also cuts connections that were already pooled.
type faultyConn struct {
	net.Conn
	down func() bool
}

var errLinkDown = errors.New("link down (test partition)")

func (c *faultyConn) Read(b []byte) (int, error) {
	if c.down() {
		_ = c.Conn.Close()
		return 0, errLinkDown
	}
	return c.Conn.Read(b)
}

func (c *faultyConn) Write(b []byte) (int, error) {
	if c.down() {
		_ = c.Conn.Close()
		return 0, errLinkDown
	}
	return c.Conn.Write(b)
}

type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }

func newStreamLayer(bind, advertise string, serverTLS, clientTLS *tls.Config, linkDown func(string) bool) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen on %s: %w", bind, err)
	}
	if serverTLS != nil {
		ln = tls.NewListener(ln, serverTLS)
	}
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	return &streamLayer{Listener: ln, advertise: hostAddr(advertise), client: clientTLS, linkDown: linkDown}, nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.linkDown != nil && s.linkDown(string(address)) {
		return nil, errLinkDown
	}
	d := &net.Dialer{Timeout: timeout}
	var conn net.Conn
	var err error
	if s.client == nil {
		conn, err = d.Dial("tcp", string(address))
	} else {
		conn, err = tls.DialWithDialer(d, "tcp", string(address), s.client)
	}
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	if s.linkDown != nil {
		target := string(address)
		conn = &faultyConn{Conn: conn, down: func() bool { return s.linkDown(target) }}
	}
	return conn, nil
}

// TLSFiles names PEM files for Raft's mutual TLS. Every replica presents its
// certificate and accepts only peers signed by CA.
type TLSFiles struct {
	CAFile   string
	CertFile string
	KeyFile  string
	// ServerName overrides the name checked in peers' certificates (default:
	// the host part of the dialled address).
	ServerName string
}

// Enabled reports whether any TLS file is configured.
func (t TLSFiles) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Load builds the server and client TLS configs, both requiring the peer's
// certificate to chain to the CA and to name serverName or one of peers. The
// certificate is re-read when its files change (rotation without restart).
func (t TLSFiles) Load(peers []Peer) (server, client *tls.Config, err error) {
	if t.CAFile == "" || t.CertFile == "" || t.KeyFile == "" {
		return nil, nil, errors.New("raft TLS needs a CA file, a certificate file and a key file")
	}
	pool, err := tlsid.NewPoolFile(t.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("raft CA: %w", err)
	}
	cf, err := tlsid.NewCertFiles(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("raft TLS key pair: %w", err)
	}
	return mutualTLS(pool.Get, cf.Get, t.ServerName, peers)
}
