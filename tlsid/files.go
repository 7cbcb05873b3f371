package tlsid

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
)

// CertFiles serves a certificate from a PEM cert/key pair on disk and
// picks up a rotated pair without a restart: GetCertificate re-reads the files
// when their modification time or size changes (cert-manager and kubelet
// secret volumes replace them in place). A rotation that leaves a broken pair
// keeps the last good certificate, so a half-written rotation never takes the
// API down.
type CertFiles struct {
	certPath, keyPath string

	mu      sync.Mutex
	stamp   string
	current *tls.Certificate
	lastErr error
}

// NewCertFiles loads the pair once; a pair that does not load is an error now
// rather than at the first handshake.
func NewCertFiles(certPath, keyPath string) (*CertFiles, error) {
	c := &CertFiles{certPath: certPath, keyPath: keyPath}
	if _, err := c.get(); err != nil {
		return nil, err
	}
	return c, nil
}

func fileStamp(paths ...string) (string, error) {
	s := ""
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("stat %s: %w", p, err)
		}
		s += fmt.Sprintf("%s:%d:%d;", p, fi.ModTime().UnixNano(), fi.Size())
	}
	return s, nil
}

// Get returns the current pair, reloading it when the files changed.
func (c *CertFiles) Get() (*tls.Certificate, error) { return c.get() }

func (c *CertFiles) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	stamp, err := fileStamp(c.certPath, c.keyPath)
	if err == nil && stamp == c.stamp && c.current != nil {
		return c.current, nil
	}
	if err == nil {
		var cert tls.Certificate
		cert, err = tls.LoadX509KeyPair(c.certPath, c.keyPath)
		if err == nil {
			c.current, c.stamp, c.lastErr = &cert, stamp, nil
			return c.current, nil
		}
		err = fmt.Errorf("load certificate %s/%s: %w", c.certPath, c.keyPath, err)
	}
	c.lastErr = err
	if c.current != nil {
		return c.current, nil
	}
	return nil, err
}

// LastError is the error of the last reload attempt (nil once a pair loaded).
func (c *CertFiles) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// ServerTLSConfig is the API's TLS configuration: TLS 1.2 at least, since
// Prometheus and other scrapers may not speak 1.3; agents and the CLI are
// ours and negotiate 1.3 (their client configs require it).
func (c *CertFiles) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.get()
		},
	}
}
