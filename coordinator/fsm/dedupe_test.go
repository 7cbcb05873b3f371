package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dovetail-dev/dovetail/report"
)

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

func applyReport(t *testing.T, f *FSM, idx uint64, id string, at time.Time) {
	t.Helper()
	d, err := Encode(ReportReceived{ReceivedAt: at, Report: report.Report{ID: id, Kind: report.KindHealth, NodeName: "n",
		Checks: []report.CheckResult{{Name: "k", State: "ok"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if res := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: d}); res != nil {
		if err, ok := res.(error); ok {
			t.Fatal(err)
		}
	}
}

// The window keeps at most reportIDWindow IDs, evicting the oldest first,
// and whatever is past the retention.
func TestReportWindowIsBoundedOldestFirst(t *testing.T) {
	s := NewState()
	at := t0
	for i := range reportIDWindow + 10 {
		at = at.Add(time.Millisecond)
		s.rememberReport(fmt.Sprintf("r-%d", i), at)
	}
	if len(s.ReportIDs) != reportIDWindow || len(s.ReportOrder) != reportIDWindow {
		t.Fatalf("window holds %d IDs (%d ordered), want %d", len(s.ReportIDs), len(s.ReportOrder), reportIDWindow)
	}
	if _, ok := s.ReportIDs["r-9"]; ok {
		t.Fatal("the oldest IDs were not evicted")
	}
	if _, ok := s.ReportIDs["r-10"]; !ok || s.ReportOrder[0] != "r-10" {
		t.Fatalf("oldest kept = %s", s.ReportOrder[0])
	}
	s.rememberReport("late", at.Add(reportIDRetention+time.Second))
	if len(s.ReportIDs) != 1 || s.ReportOrder[0] != "late" {
		t.Fatalf("after a day, %d IDs remain", len(s.ReportIDs))
	}
}

// The window survives snapshot and restore in order (a duplicate after
// restore is still deduped), and a snapshot without the order (written
// before it existed) is restored with the order rebuilt from the times.
func TestReportWindowSnapshotRestore(t *testing.T) {
	f := New(quiet())
	at := t0
	for i := range 50 {
		at = at.Add(time.Second)
		applyReport(t, f, uint64(i+1), fmt.Sprintf("r-%02d", 49-i), at) // IDs not in time order
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := New(quiet())
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	want := f.State().ReportOrder
	if got := g.State().ReportOrder; !slices.Equal(got, want) || len(got) != 50 || got[0] != "r-49" {
		t.Fatalf("restored order %v, want %v", got, want)
	}
	before := g.State().Nodes["n"]
	applyReport(t, g, 51, "r-10", at.Add(time.Second))
	if after := g.State().Nodes["n"]; !after.LastReportAt.Equal(before.LastReportAt) {
		t.Fatal("a duplicate report was applied after restore")
	}
	// Old snapshot: drop reportOrder.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(sink.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw, "reportOrder")
	old, _ := json.Marshal(raw)
	h := New(quiet())
	if err := h.Restore(io.NopCloser(bytes.NewReader(old))); err != nil {
		t.Fatal(err)
	}
	if got := h.State().ReportOrder; !slices.Equal(got, want) {
		t.Fatalf("rebuilt order %v, want %v", got, want)
	}
}
