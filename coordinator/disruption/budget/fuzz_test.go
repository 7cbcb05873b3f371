package budget

import (
	"testing"
	"time"
)

// FuzzBudget feeds arbitrary nodes/schedule/duration values, as a user can
// write them in a NodePool, through Validate, Active, Scaled and Evaluate.
// Nothing may panic (a tab-separated CRON_TZ once crashed every leader); a
// budget Validate accepts must evaluate without error, one it refuses makes
// Evaluate fail closed (0 allowed, the error named), and Evaluate never
// allows a negative number of disruptions. Seeds: testdata/fuzz/FuzzBudget;
// hack/fuzz.sh explores briefly in make test.
func FuzzBudget(f *testing.F) {
	for _, s := range []struct {
		nodes, schedule string
		dur             int64
	}{
		{"10%", "", 0}, {"0", "0 9 * * 1-5", int64(8 * time.Hour)}, {"3", "@daily", int64(time.Hour)},
		{"100%", "CRON_TZ=UTC\t0\t9\t*\t*\t1-5", int64(time.Hour)}, {"5", "0 0 30 2 *", int64(time.Hour)},
		{"-1", "TZ=Nowhere/Else 0 0 * * *", -1}, {"101%", "* * * * * * *", 0}, {" 7 ", "@every 1h", 0},
	} {
		f.Add(s.nodes, s.schedule, s.dur, 17)
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, nodes, schedule string, dur int64, total int) {
		b := Budget{Nodes: nodes, Schedule: schedule, Duration: time.Duration(dur)}
		if total < 0 {
			total = -total
		}
		total %= 100000
		err := b.Validate()
		_, aerr := b.Active(now)
		n, serr := b.Scaled(total)
		if err == nil {
			if aerr != nil || serr != nil {
				t.Fatalf("valid budget %+v: Active %v, Scaled %v", b, aerr, serr)
			}
			if n < 0 {
				t.Fatalf("valid budget %+v scaled to %d", b, n)
			}
		}
		l := Evaluate([]Budget{b}, "Underutilized", total, 0, now)
		if l.Allowed < 0 {
			t.Fatalf("budget %+v allows %d", b, l.Allowed)
		}
		// Fail closed: a budget that does not validate lets nothing through.
		if err != nil && (l.Allowed != 0 || l.Err == "") {
			t.Fatalf("invalid budget %+v (%v) evaluates to %+v", b, err, l)
		}
	})
}
