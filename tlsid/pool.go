package tlsid

import (
	"crypto/x509"
	"fmt"
	"sync"
)

// PoolFile serves a PEM CA bundle from disk and picks up a changed bundle
// without a restart, like CertFiles does for key pairs: Get re-reads the file
// when its modification time or size changes. A CA rotation adds the new CA
// to the bundle, rotates the leaf certificates, then drops the old CA; every
// step must take effect on running replicas and agents. A bundle that does
// not parse (a half-written update) keeps the last good pool.
type PoolFile struct {
	path string

	mu      sync.Mutex
	stamp   string
	current *x509.CertPool
	lastErr error
}

// NewPoolFile loads the bundle once; one that does not load is an error now
// rather than at the first handshake.
func NewPoolFile(path string) (*PoolFile, error) {
	p := &PoolFile{path: path}
	if _, err := p.Get(); err != nil {
		return nil, err
	}
	return p, nil
}

// Get returns the current pool, reloading it when the file changed.
func (p *PoolFile) Get() (*x509.CertPool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	stamp, err := fileStamp(p.path)
	if err == nil && stamp == p.stamp && p.current != nil {
		return p.current, nil
	}
	if err == nil {
		var pool *x509.CertPool
		if pool, err = LoadPool(p.path); err == nil {
			p.current, p.stamp, p.lastErr = pool, stamp, nil
			return pool, nil
		}
	}
	p.lastErr = fmt.Errorf("reload CA bundle %s: %w", p.path, err)
	if p.current != nil {
		return p.current, nil
	}
	return nil, p.lastErr
}

// LastError is the error of the last reload attempt (nil once a bundle
// loaded and the file has not broken since).
func (p *PoolFile) LastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}
