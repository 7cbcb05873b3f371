// Package logbridge routes the logs of hashicorp libraries (raft's hclog,
// memberlist's standard logger) into log/slog, so a replica emits one
// structured stream.
package logbridge

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// HCLog returns an hclog.Logger writing to l.
func HCLog(l *slog.Logger, name string) hclog.Logger {
	if l == nil {
		l = slog.Default()
	}
	return &hcl{l: l, name: name}
}

type hcl struct {
	l       *slog.Logger
	name    string
	implied []any
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hcl) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lv := toSlog(level)
	if !h.l.Enabled(context.Background(), lv) {
		return
	}
	all := make([]any, 0, len(h.implied)+len(args)+2)
	if h.name != "" {
		all = append(all, "logger", h.name)
	}
	all = append(all, h.implied...)
	all = append(all, args...)
	h.l.Log(context.Background(), lv, msg, all...)
}

func (h *hcl) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcl) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcl) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcl) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcl) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcl) enabled(l hclog.Level) bool { return h.l.Enabled(context.Background(), toSlog(l)) }
func (h *hcl) IsTrace() bool              { return h.enabled(hclog.Trace) }
func (h *hcl) IsDebug() bool              { return h.enabled(hclog.Debug) }
func (h *hcl) IsInfo() bool               { return h.enabled(hclog.Info) }
func (h *hcl) IsWarn() bool               { return h.enabled(hclog.Warn) }
func (h *hcl) IsError() bool              { return h.enabled(hclog.Error) }
func (h *hcl) ImpliedArgs() []any         { return h.implied }
func (h *hcl) Name() string               { return h.name }

func (h *hcl) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(append([]any{}, h.implied...), args...)
	return &c
}

func (h *hcl) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name = c.name + "." + name
	} else {
		c.name = name
	}
	return &c
}

func (h *hcl) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel is a no-op: the slog handler owns the level.
func (h *hcl) SetLevel(hclog.Level) {}

func (h *hcl) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func (h *hcl) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return StdLog(h.l, h.name)
}

func (h *hcl) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &writer{l: h.l, name: h.name}
}

// StdLog returns a standard *log.Logger (as memberlist takes) whose lines are
// parsed for a "[LEVEL]" prefix and re-emitted through l.
func StdLog(l *slog.Logger, name string) *log.Logger {
	if l == nil {
		l = slog.Default()
	}
	return log.New(&writer{l: l, name: name}, "", 0)
}

type writer struct {
	l    *slog.Logger
	name string
}

func (w *writer) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg := strings.TrimSpace(string(line))
		if msg == "" {
			continue
		}
		lv := slog.LevelInfo
		for prefix, level := range map[string]slog.Level{
			"[TRACE]": slog.LevelDebug, "[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo,
			"[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError,
		} {
			if strings.HasPrefix(msg, prefix) {
				lv = level
				msg = strings.TrimSpace(strings.TrimPrefix(msg, prefix))
				break
			}
		}
		if w.name != "" {
			w.l.Log(context.Background(), lv, msg, "logger", w.name)
		} else {
			w.l.Log(context.Background(), lv, msg)
		}
	}
	return len(p), nil
}
