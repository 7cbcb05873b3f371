package systemd

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/journal"
)

// NativeJournalHandler sends each record to journald over its native
// protocol (/run/systemd/journal/socket), so every slog attribute becomes a
// journal field: `journalctl -o json` shows NODE=, COMPONENT=, ERR= ... and
// `journalctl NODE=ip-10-0-1-5` filters on them. MESSAGE is still the whole
// logfmt line, so plain `journalctl -u dovetail-agent` reads as before.
// A record journald refuses (socket gone, journald restarting) is written
// to the fallback handler instead of being lost.
type NativeJournalHandler struct {
	level    slog.Leveler
	ident    string
	attrs    []slog.Attr // pre-bound by WithAttrs, already group-prefixed keys
	groups   []string
	text     *JournalHandler // renders MESSAGE; also the fallback to stderr
	send     func(msg string, pri journal.Priority, vars map[string]string) error
	fallback slog.Handler
	mu       *sync.Mutex
	buf      *bytes.Buffer
}

// JournalAvailable reports whether stderr really is journald's stream
// (JOURNAL_STREAM names stderr's device and inode, so a parent that merely
// set the variable does not count) and journald's native socket answers.
func JournalAvailable() bool {
	onStream, err := journal.StderrIsJournalStream()
	return err == nil && onStream && journal.Enabled()
}

// NewNativeJournalHandler returns a handler at level and above; records
// journald does not accept go to fallback (stderr, which journald may still
// collect as plain lines).
func NewNativeJournalHandler(level slog.Leveler, fallback *JournalHandler) *NativeJournalHandler {
	buf := &bytes.Buffer{}
	h := &NativeJournalHandler{
		level: level,
		ident: filepath.Base(os.Args[0]),
		text:  NewJournalHandler(buf, level),
		send:  journal.Send,
		mu:    &sync.Mutex{},
		buf:   buf,
	}
	if fallback != nil { // a nil *JournalHandler must not become a non-nil slog.Handler
		h.fallback = fallback
	}
	return h
}

// Enabled implements slog.Handler.
func (h *NativeJournalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// Handle implements slog.Handler.
func (h *NativeJournalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.buf.Reset()
	err := h.text.Handle(ctx, r)
	line := strings.TrimSuffix(strings.TrimPrefix(h.buf.String(), priority(r.Level)), "\n")
	h.mu.Unlock()
	if err != nil {
		return err
	}
	vars := journalFields(h.ident, h.attrs, h.groups, r)
	if err := h.send(line, journalPriority(r.Level), vars); err != nil {
		if h.fallback == nil {
			return fmt.Errorf("journal: %w", err)
		}
		return h.fallback.Handle(ctx, r)
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (h *NativeJournalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	prefix := strings.Join(h.groups, ".")
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		if prefix != "" {
			a.Key = prefix + "." + a.Key
		}
		c.attrs = append(c.attrs, a)
	}
	c.text = h.text.WithAttrs(as).(*JournalHandler)
	if c.fallback != nil {
		c.fallback = h.fallback.WithAttrs(as)
	}
	return &c
}

// WithGroup implements slog.Handler.
func (h *NativeJournalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(append([]string(nil), h.groups...), name)
	c.text = h.text.WithGroup(name).(*JournalHandler)
	if c.fallback != nil {
		c.fallback = h.fallback.WithGroup(name)
	}
	return &c
}

// journalFields turns a record's attributes into journal fields. Names are
// upper-cased with every character outside [A-Z0-9_] as "_" (the journal
// accepts nothing else), and may not start with "_" (those are trusted
// fields only journald sets): "node" → NODE, "drain.evicted" →
// DRAIN_EVICTED, "_x" → X_X. The source location goes in CODE_FILE,
// CODE_LINE and CODE_FUNC like sd_journal_send(3) does.
func journalFields(ident string, bound []slog.Attr, groups []string, r slog.Record) map[string]string {
	vars := map[string]string{"SYSLOG_IDENTIFIER": ident}
	if r.PC != 0 {
		fs := runtime.CallersFrames([]uintptr{r.PC})
		f, _ := fs.Next()
		if f.File != "" {
			vars["CODE_FILE"] = f.File
			vars["CODE_LINE"] = strconv.Itoa(f.Line)
			vars["CODE_FUNC"] = f.Function
		}
	}
	var add func(prefix string, a slog.Attr)
	add = func(prefix string, a slog.Attr) {
		a.Value = a.Value.Resolve()
		if a.Equal(slog.Attr{}) {
			return
		}
		key := a.Key
		if prefix != "" {
			key = prefix + "." + key
		}
		if a.Value.Kind() == slog.KindGroup {
			for _, g := range a.Value.Group() {
				add(key, g)
			}
			return
		}
		vars[fieldName(key)] = a.Value.String()
	}
	for _, a := range bound {
		add("", a)
	}
	prefix := strings.Join(groups, ".")
	r.Attrs(func(a slog.Attr) bool { add(prefix, a); return true })
	return vars
}

func fieldName(key string) string {
	b := []byte(strings.ToUpper(key))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	s := string(b)
	switch {
	case s == "":
		return "EMPTY"
	case s[0] == '_' || (s[0] >= '0' && s[0] <= '9'):
		// Leading "_" is reserved for journald's trusted fields; a digit is
		// not allowed first.
		s = "X" + s
	}
	// The fields the journal itself means something by are kept apart from
	// attributes that happen to share their name.
	switch s {
	case "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "MESSAGE_ID":
		s = "ATTR_" + s
	}
	if len(s) > 64 { // journald's limit on field names
		s = s[:64]
	}
	return s
}

func journalPriority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}
