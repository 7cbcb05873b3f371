package raftnode

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

func loadPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read raft CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("raft CA %s: no PEM certificates", caFile)
	}
	return pool, nil
}

// MutualTLS returns server and client configs for Raft peers that trust pool
// and present cert. serverName, when set, is the name every peer's
// certificate must carry (one shared name keeps certificates simple in a
// StatefulSet); otherwise the dialled host name is verified.
func MutualTLS(pool *x509.CertPool, cert tls.Certificate, serverName string) (server, client *tls.Config, err error) {
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
	}
	return server, client, nil
}
