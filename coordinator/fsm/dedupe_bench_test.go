package fsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dovetail-dev/dovetail/report"
)

// BenchmarkApplyReportWithWindow measures one ReportReceived apply (a new
// report ID, as agents send) with `held` IDs already in the dedupe window.
// The per-apply cost must not grow with the window (it was O(n): 0.32 ms →
// 4 ms at 40k reports).
func BenchmarkApplyReportWithWindow(b *testing.B) {
	for _, held := range []int{1000, 10000, 40000} {
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			f := New(quiet())
			at := t0
			idx := uint64(0)
			apply := func(i int) {
				idx++
				at = at.Add(time.Millisecond)
				d, err := Encode(ReportReceived{ReceivedAt: at, Report: report.Report{ID: fmt.Sprintf("r-%d", i),
					Kind: report.KindHealth, NodeName: fmt.Sprintf("n-%d", i%500), Checks: []report.CheckResult{{Name: "k", State: "ok"}}}})
				if err != nil {
					b.Fatal(err)
				}
				if res := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: d}); res != nil {
					if err, ok := res.(error); ok {
						b.Fatal(err)
					}
				}
			}
			for i := range held {
				apply(i)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				apply(held + i)
			}
		})
	}
}
