package systemd

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
)

// UnderJournal reports whether stderr is connected to journald (systemd
// sets JOURNAL_STREAM for services whose output goes there).
func UnderJournal() bool { return os.Getenv("JOURNAL_STREAM") != "" }

// JournalHandler writes logfmt lines prefixed with the syslog priority
// ("<3>msg=... "), which journald turns into the entry's PRIORITY so that
// `journalctl -p warning` works, and leaves out the timestamp journald
// adds anyway.
type JournalHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	buf   *bytes.Buffer
	inner slog.Handler
}

// NewJournalHandler returns a handler writing to w at level and above.
func NewJournalHandler(w io.Writer, level slog.Leveler) *JournalHandler {
	buf := &bytes.Buffer{}
	return &JournalHandler{
		mu:  &sync.Mutex{},
		w:   w,
		buf: buf,
		inner: slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{}
			}
			return a
		}}),
	}
}

// Enabled implements slog.Handler.
func (h *JournalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *JournalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	h.buf.WriteString(priority(r.Level))
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.w.Write(h.buf.Bytes())
	return err
}

// WithAttrs implements slog.Handler.
func (h *JournalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(as)
	return &c
}

// WithGroup implements slog.Handler.
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}

// priority maps slog levels to sd-daemon(3) prefixes.
func priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	default:
		return "<7>"
	}
}
