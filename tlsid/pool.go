package tlsid

import (
	"crypto/x509"
	"fmt"
)

// PoolFile serves a PEM CA bundle from disk and picks up a changed bundle
// without a restart (Watched): a CA rotation adds the new CA to the bundle,
// rotates the leaf certificates, then drops the old CA, and every step must
// take effect on running replicas and agents. A bundle that does not parse
// keeps the last good pool.
type PoolFile struct {
	w *Watched[*x509.CertPool]
}

// NewPoolFile loads the bundle once; one that does not load is an error now
// rather than at the first handshake.
func NewPoolFile(path string) (*PoolFile, error) {
	w, err := Watch(func() (*x509.CertPool, error) {
		pool, err := LoadPool(path)
		if err != nil {
			return nil, fmt.Errorf("reload CA bundle %s: %w", path, err)
		}
		return pool, nil
	}, path)
	if err != nil {
		return nil, err
	}
	return &PoolFile{w: w}, nil
}

// Get returns the current pool, reloading it when the file changed.
func (p *PoolFile) Get() (*x509.CertPool, error) { return p.w.Get() }

// LastError is the error of the last reload attempt (nil once a bundle
// loaded and the file has not broken since).
func (p *PoolFile) LastError() error { return p.w.LastError() }
