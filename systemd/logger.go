package systemd

import (
	"fmt"
	"io"
	"log/slog"
)

// NewLogger is the daemons' --log-level/--log-format logger: "journal" writes
// systemd's <N> priority prefixes so journald keeps levels, "auto" picks the
// journal under systemd (JOURNAL_STREAM set) and text elsewhere.
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
		return slog.New(NewJournalHandler(w, lv)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want auto, journal, text or json", format)
}
