package tlsid

import (
	"crypto/tls"
	"fmt"
)

// CertFiles serves a certificate from a PEM cert/key pair on disk and
// picks up a rotated pair without a restart (Watched): cert-manager and
// kubelet secret volumes replace them in place. A rotation that leaves a
// broken pair keeps the last good certificate, so a half-written rotation
// never takes the API down.
type CertFiles struct {
	w *Watched[*tls.Certificate]
}

// NewCertFiles loads the pair once; a pair that does not load is an error now
// rather than at the first handshake.
func NewCertFiles(certPath, keyPath string) (*CertFiles, error) {
	w, err := Watch(func() (*tls.Certificate, error) {
		cert, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			return nil, fmt.Errorf("load certificate %s/%s: %w", certPath, keyPath, err)
		}
		return &cert, nil
	}, certPath, keyPath)
	if err != nil {
		return nil, err
	}
	return &CertFiles{w: w}, nil
}

// Get returns the current pair, reloading it when the files changed.
func (c *CertFiles) Get() (*tls.Certificate, error) { return c.w.Get() }

// LastError is the error of the last reload attempt (nil once a pair loaded).
func (c *CertFiles) LastError() error { return c.w.LastError() }

// ServerTLSConfig is the API's TLS configuration: TLS 1.2 at least, since
// Prometheus and other scrapers may not speak 1.3; agents and the CLI are
// ours and negotiate 1.3 (their client configs require it).
func (c *CertFiles) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.w.Get()
		},
	}
}
