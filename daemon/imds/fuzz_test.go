package imds

import (
	"log/slog"
	"testing"
	"time"
)

// FuzzNoticeParsers feeds arbitrary bytes to the three IMDS notice parsers,
// which read whatever the metadata endpoint answers. They must never panic,
// and a notice they do return must be well formed: a known kind, a known
// spot action (an unknown one is mapped to terminate), and a maintenance
// event that carries its id. Seeds are in testdata/fuzz/FuzzNoticeParsers;
// `go test` replays them, `go test -fuzz FuzzNoticeParsers` explores.
func FuzzNoticeParsers(f *testing.F) {
	for _, s := range []string{
		`{"action":"terminate","time":"2026-11-27T10:00:00Z"}`,
		`{"action":"explode","time":"2026-11-27T10:00:00Z"}`,
		`{"noticeTime":"2026-11-27T09:00:00Z"}`,
		`[{"NotBefore":"27 Nov 2026 12:00:00 GMT","Code":"system-reboot","EventId":"instance-event-1","State":"active"}]`,
		`[{"EventId":"e","State":"canceled"},{"EventId":""}]`,
		`{"action": "terminate", "time": `,
		``,
	} {
		f.Add([]byte(s))
	}
	w, err := New(Config{Endpoint: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler), VanishAfter: time.Nanosecond})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range []func([]byte, *pollState) ([]Notice, error){w.parseSpot, w.parseRebalance, w.parseScheduled} {
			st := newPollState()
			// Twice on the same state (dedupe), then empty (vanish), as polls do.
			for _, in := range [][]byte{b, b, nil, nil} {
				ns, err := p(in, st)
				if err != nil && len(ns) > 0 {
					t.Fatalf("notices %+v returned with error %v", ns, err)
				}
				for _, n := range ns {
					switch n.Kind {
					case KindSpotInterruption:
						if n.Action != "terminate" && n.Action != "stop" && n.Action != "hibernate" {
							t.Fatalf("spot notice with action %q", n.Action)
						}
					case KindRebalance:
					case KindMaintenance:
						if n.EventID == "" {
							t.Fatalf("maintenance notice without id: %+v", n)
						}
					default:
						t.Fatalf("kind %q", n.Kind)
					}
				}
			}
		}
	})
}
