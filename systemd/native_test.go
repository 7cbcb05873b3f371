package systemd

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

type sent struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

// The native handler's fields as journald would receive them; the real
// journal is exercised in test/systemdnode.
func TestNativeJournalFields(t *testing.T) {
	var got []sent
	h := NewNativeJournalHandler(slog.LevelInfo, nil)
	h.send = func(msg string, pri journal.Priority, vars map[string]string) error {
		got = append(got, sent{msg, pri, vars})
		return nil
	}
	log := slog.New(h).With("component", "agent").WithGroup("drain")
	log.Warn("evicted", "pods", 3, slog.Group("pdb", "name", "db"), "_private", "x", "message", "shadow")
	log.Debug("not logged")
	if len(got) != 1 {
		t.Fatalf("%d records", len(got))
	}
	s := got[0]
	if s.pri != journal.PriWarning {
		t.Errorf("priority %d", s.pri)
	}
	want := map[string]string{"COMPONENT": "agent", "DRAIN_PODS": "3", "DRAIN_PDB_NAME": "db", "DRAIN__PRIVATE": "x", "DRAIN_MESSAGE": "shadow"}
	for k, v := range want {
		if s.vars[k] != v {
			t.Errorf("%s=%q, want %q (all: %v)", k, s.vars[k], v, s.vars)
		}
	}
	if s.vars["CODE_FUNC"] == "" || s.vars["SYSLOG_IDENTIFIER"] == "" {
		t.Errorf("no CODE_FUNC/SYSLOG_IDENTIFIER: %v", s.vars)
	}
	if s.msg != `msg=evicted component=agent drain.pods=3 drain.pdb.name=db drain._private=x drain.message=shadow` {
		t.Errorf("MESSAGE %q", s.msg)
	}
	for k := range s.vars {
		if k[0] == '_' {
			t.Errorf("trusted field %s sent", k)
		}
	}
}

func TestFieldNames(t *testing.T) {
	for in, want := range map[string]string{"node": "NODE", "err": "ERR", "_x": "X_X", "9lives": "X9LIVES", "": "EMPTY",
		"priority": "ATTR_PRIORITY", "a-b.c": "A_B_C"} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNativeJournalFallsBack(t *testing.T) {
	var buf bytes.Buffer
	h := NewNativeJournalHandler(slog.LevelInfo, NewJournalHandler(&buf, slog.LevelInfo))
	h.send = func(string, journal.Priority, map[string]string) error { return errors.New("socket gone") }
	slog.New(h).Error("boom", "k", "v")
	if got := buf.String(); got != "<3>msg=boom k=v\n" {
		t.Fatalf("fallback wrote %q", got)
	}
}
