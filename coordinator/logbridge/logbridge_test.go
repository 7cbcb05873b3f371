package logbridge

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogLevelsNamesAndArgs(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := HCLog(l, "raft").Named("wal").With("replica", "c-0")
	h.Debug("hidden")
	h.Info("entering leader state", "term", 3)
	h.Log(hclog.Error, "boom")
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Fatal("debug line passed an info handler")
	}
	for _, want := range []string{`level=INFO msg="entering leader state" logger=raft.wal replica=c-0 term=3`, "level=ERROR msg=boom"} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
	}
	if !h.IsInfo() || h.IsDebug() {
		t.Fatal("level predicates wrong")
	}
}

func TestStdLogParsesLevels(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	std := StdLog(l, "memberlist")
	std.Print("[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed")
	std.Print("[DEBUG] memberlist: Stream connection")
	std.Print("plain line")
	out := buf.String()
	for _, want := range []string{`level=WARN msg="memberlist: Was able`, `level=DEBUG msg="memberlist: Stream connection"`, `level=INFO msg="plain line"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
	}
}
