package tlsid

import (
	"fmt"
	"os"
	"sync"
)

// Watched holds a value loaded from files on disk and reloads it when one
// of them changes (modification time or size, checked at each Get: a
// handshake or a verification, never a timer). cert-manager, kubelet
// secret volumes (a symlink swap) and operators replace such files in
// place, and every replica and agent must follow without a restart. A
// reload that fails (a half-written update, a bundle with no certificate)
// keeps the last good value, so a broken rotation never takes the API,
// Raft or attestation down; LastError reports it.
type Watched[T any] struct {
	paths []string
	load  func() (T, error)

	mu      sync.Mutex
	stamp   string
	current T
	loaded  bool
	lastErr error
}

// Watch loads the value once; one that does not load is an error now
// rather than at the first use.
func Watch[T any](load func() (T, error), paths ...string) (*Watched[T], error) {
	w := &Watched[T]{paths: paths, load: load}
	if _, err := w.Get(); err != nil {
		return nil, err
	}
	return w, nil
}

// Get returns the current value, reloading it when a file changed.
func (w *Watched[T]) Get() (T, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	stamp, err := fileStamp(w.paths...)
	if err == nil && w.loaded && stamp == w.stamp {
		return w.current, nil
	}
	if err == nil {
		var v T
		if v, err = w.load(); err == nil {
			w.current, w.stamp, w.loaded, w.lastErr = v, stamp, true, nil
			return v, nil
		}
	}
	w.lastErr = err
	if w.loaded {
		return w.current, nil
	}
	var zero T
	return zero, err
}

// LastError is the error of the last reload attempt (nil once a value
// loaded and the files have not broken since).
func (w *Watched[T]) LastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// fileStamp names the files' versions: path, modification time and size.
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
