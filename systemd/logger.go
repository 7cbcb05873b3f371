package systemd

import (
	"fmt"
	"io"
	"log/slog"
)

// NewLogger is the daemons' --log-level/--log-format logger: "journal" sends
// records over journald's native protocol (each attribute a journal field)
// or, without journald's socket, writes lines with systemd's <N> priority
// prefixes; "auto" picks the journal under systemd (JOURNAL_STREAM set) and
// text elsewhere.
func NewLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	if format == "auto" {
		format = "text"
		if UnderJournal() {
			format = "journal"
		}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "journal":
		// Native protocol when journald's socket is there (structured
		// fields), else priority-prefixed lines on w.
		lines := NewJournalHandler(w, lv)
		if JournalAvailable() {
			return slog.New(NewNativeJournalHandler(lv, lines)), nil
		}
		return slog.New(lines), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want auto, journal, text or json", format)
}
