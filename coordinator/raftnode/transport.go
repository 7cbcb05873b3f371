package raftnode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's stream layer over TCP, optionally wrapped in mutual
// TLS. Unlike raft's own TCP transport it accepts a host name as the
// advertised address, which a StatefulSet needs (pod IPs change, DNS names
// do not).
type streamLayer struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config // nil: plain TCP (tests only)
}

type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }

func newStreamLayer(bind, advertise string, serverTLS, clientTLS *tls.Config) (*streamLayer, error) {
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
	return &streamLayer{Listener: ln, advertise: hostAddr(advertise), client: clientTLS}, nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if s.client == nil {
		return d.Dial("tcp", string(address))
	}
	conn, err := tls.DialWithDialer(d, "tcp", string(address), s.client)
	if err != nil {
		return nil, fmt.Errorf("raft mTLS dial %s: %w", address, err)
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
// certificate to chain to the CA.
func (t TLSFiles) Load() (server, client *tls.Config, err error) {
	if t.CAFile == "" || t.CertFile == "" || t.KeyFile == "" {
		return nil, nil, errors.New("raft TLS needs a CA file, a certificate file and a key file")
	}
	pool, err := loadPool(t.CAFile)
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("load raft TLS key pair: %w", err)
	}
	return MutualTLS(pool, cert, t.ServerName)
}
