package budget

import (
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// businessHours is the example, verbatim as a user writes it.
func businessHours(schedule string) []Budget {
	return []Budget{
		{Nodes: "0", Reasons: []Reason{ReasonUnderutilized, ReasonDrifted}, Schedule: schedule, Duration: 8 * time.Hour},
		{Nodes: "100%", Reasons: []Reason{ReasonEmpty}},
		{Nodes: "10%"},
	}
}

func TestBusinessHoursExample(t *testing.T) {
	const total = 20
	cases := []struct {
		name     string
		schedule string
		now      string
		reason   Reason
		want     int
	}{
		// 2026-11-23 is a Monday.
		{"mon before window underutilized", "0 9 * * 1-5", "2026-11-23T08:59:59Z", ReasonUnderutilized, 2},
		{"mon window start underutilized", "0 9 * * 1-5", "2026-11-23T09:00:00Z", ReasonUnderutilized, 0},
		{"mon in window drifted", "0 9 * * 1-5", "2026-11-23T12:00:00Z", ReasonDrifted, 0},
		{"mon in window empty", "0 9 * * 1-5", "2026-11-23T12:00:00Z", ReasonEmpty, 20},
		{"mon in window expired (reasonless budget)", "0 9 * * 1-5", "2026-11-23T12:00:00Z", ReasonExpired, 2},
		{"mon last second of window", "0 9 * * 1-5", "2026-11-23T16:59:59Z", ReasonUnderutilized, 0},
		{"mon window end", "0 9 * * 1-5", "2026-11-23T17:00:00Z", ReasonUnderutilized, 2},
		{"fri in window", "0 9 * * 1-5", "2026-11-27T10:00:00Z", ReasonDrifted, 0},
		{"sat same hour", "0 9 * * 1-5", "2026-11-28T10:00:00Z", ReasonUnderutilized, 2},
		{"sun empty", "0 9 * * 1-5", "2026-11-29T10:00:00Z", ReasonEmpty, 20},
		{"named weekdays", "0 9 * * mon-fri", "2026-11-24T09:30:00Z", ReasonUnderutilized, 0},
		// Seoul is UTC+9: 09:00 KST is 00:00 UTC.
		{"seoul mon 09:30 KST", "CRON_TZ=Asia/Seoul 0 9 * * 1-5", "2026-11-23T00:30:00Z", ReasonUnderutilized, 0},
		{"seoul mon 08:59 KST", "CRON_TZ=Asia/Seoul 0 9 * * 1-5", "2026-11-22T23:59:00Z", ReasonUnderutilized, 2},
		{"seoul mon 17:00 KST", "CRON_TZ=Asia/Seoul 0 9 * * 1-5", "2026-11-23T08:00:00Z", ReasonUnderutilized, 2},
		{"seoul fri 16:59 KST", "CRON_TZ=Asia/Seoul 0 9 * * 1-5", "2026-11-27T07:59:00Z", ReasonDrifted, 0},
		{"seoul sat 09:30 KST (fri UTC)", "CRON_TZ=Asia/Seoul 0 9 * * 1-5", "2026-11-28T00:30:00Z", ReasonDrifted, 2},
		{"seoul window, UTC 09:00 is outside", "CRON_TZ=Asia/Seoul 0 9 * * 1-5", "2026-11-23T09:00:00Z", ReasonUnderutilized, 2},
		// New York observes DST: 09:00 local is 13:00 UTC in July, 14:00 UTC in November.
		{"new york summer 09:30 EDT", "CRON_TZ=America/New_York 0 9 * * 1-5", "2026-07-06T13:30:00Z", ReasonUnderutilized, 0},
		{"new york winter 13:30 UTC is 08:30 EST", "CRON_TZ=America/New_York 0 9 * * 1-5", "2026-11-23T13:30:00Z", ReasonUnderutilized, 2},
		{"new york winter 09:30 EST", "CRON_TZ=America/New_York 0 9 * * 1-5", "2026-11-23T14:30:00Z", ReasonUnderutilized, 0},
		{"seoul empty always", "CRON_TZ=Asia/Seoul 0 9 * * 1-5", "2026-11-23T00:30:00Z", ReasonEmpty, 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Evaluate(businessHours(c.schedule), c.reason, total, 0, at(c.now))
			if got.Err != "" {
				t.Fatalf("error: %s", got.Err)
			}
			if got.Allowed != c.want {
				t.Fatalf("allowed = %d (budget %s), want %d", got.Allowed, got.Budget, c.want)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	now := at("2026-11-23T12:00:00Z")
	cases := []struct {
		name       string
		budgets    []Budget
		reason     Reason
		total      int
		disrupting int
		want       int
		wantBudget string
		wantErr    bool
	}{
		{"default 10% of 20", nil, ReasonDrifted, 20, 0, 2, "default", false},
		{"default rounds up: 10% of 11 is 2", nil, ReasonDrifted, 11, 0, 2, "default", false},
		{"default small pool may take one", nil, ReasonDrifted, 3, 0, 1, "default", false},
		{"default empty pool", nil, ReasonDrifted, 0, 0, 0, "default", false},
		{"disrupting counts", nil, ReasonDrifted, 20, 1, 1, "default", false},
		{"disrupting past budget clamps to zero", nil, ReasonDrifted, 20, 5, 0, "default", false},
		{"count", []Budget{{Nodes: "3"}}, ReasonEmpty, 100, 0, 3, "budgets[0]", false},
		{"zero percent is zero", []Budget{{Nodes: "0%"}}, ReasonEmpty, 100, 0, 0, "budgets[0]", false},
		{"most restrictive wins", []Budget{{Nodes: "50%"}, {Nodes: "4"}, {Nodes: "30%"}}, ReasonEmpty, 20, 0, 4, "budgets[1]", false},
		{"named reasons: most restrictive of named", []Budget{{Nodes: "5", Reasons: []Reason{ReasonEmpty}}, {Nodes: "2", Reasons: []Reason{ReasonEmpty, ReasonDrifted}}, {Nodes: "1"}}, ReasonEmpty, 20, 0, 2, "budgets[1]", false},
		{"reason not named uses reasonless", []Budget{{Nodes: "5", Reasons: []Reason{ReasonEmpty}}, {Nodes: "1"}}, ReasonDrifted, 20, 0, 1, "budgets[1]", false},
		{"only named budgets, other reason unlimited", []Budget{{Nodes: "5", Reasons: []Reason{ReasonEmpty}}}, ReasonDrifted, 20, 0, Unlimited, "none active", false},
		{"inactive schedule", []Budget{{Nodes: "0", Schedule: "@yearly", Duration: time.Hour}, {Nodes: "7"}}, ReasonEmpty, 20, 0, 7, "budgets[1]", false},
		{"bad nodes fails closed", []Budget{{Nodes: "ten"}}, ReasonEmpty, 20, 0, 0, "budgets[0]", true},
		{"percent over 100 fails closed", []Budget{{Nodes: "150%"}}, ReasonEmpty, 20, 0, 0, "budgets[0]", true},
		{"bad cron fails closed", []Budget{{Nodes: "5", Schedule: "every day", Duration: time.Hour}}, ReasonEmpty, 20, 0, 0, "budgets[0]", true},
		{"bad zone fails closed", []Budget{{Nodes: "5", Schedule: "CRON_TZ=Mars/Olympus 0 9 * * *", Duration: time.Hour}}, ReasonEmpty, 20, 0, 0, "budgets[0]", true},
		{"schedule without duration fails closed", []Budget{{Nodes: "5", Schedule: "0 9 * * *"}}, ReasonEmpty, 20, 0, 0, "budgets[0]", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Evaluate(c.budgets, c.reason, c.total, c.disrupting, now)
			if (got.Err != "") != c.wantErr {
				t.Fatalf("err = %q, wantErr %v", got.Err, c.wantErr)
			}
			if got.Allowed != c.want {
				t.Fatalf("allowed = %d, want %d (%+v)", got.Allowed, c.want, got)
			}
			if !strings.HasPrefix(got.Budget, c.wantBudget) {
				t.Fatalf("budget = %q, want prefix %q", got.Budget, c.wantBudget)
			}
		})
	}
}

// TestScheduleBadInputNeverPanicsNorActive covers issue 10: a tab-separated
// CRON_TZ schedule used to panic inside robfig/cron, and a schedule that
// never fires used to read as always active.
func TestScheduleBadInputNeverPanicsNorActive(t *testing.T) {
	now := at("2026-11-23T12:00:00Z")
	for _, s := range []string{
		"CRON_TZ=UTC\t0\t9\t*\t*\t1-5",
		"TZ=UTC\t0 9 * * *",
		"CRON_TZ=UTC",
		"CRON_TZ= 0 9 * * *",
		"CRON_TZ=Nowhere/Atlantis 0 9 * * *",
		"0 0 30 2 *",
		"0 0 31 4 *",
		"0 9 * *",
		"0 9 * * * *",
		"   ",
	} {
		b := Budget{Nodes: "0", Schedule: s, Duration: time.Hour}
		if err := b.Validate(); err == nil {
			t.Errorf("Validate(%q) = nil, want error", s)
		}
		if active, err := b.Active(now); active || err == nil {
			t.Errorf("Active(%q) = %v, %v; want false and an error", s, active, err)
		}
		lim := Evaluate([]Budget{b}, ReasonEmpty, 10, 0, now)
		if lim.Allowed != 0 || lim.Err == "" {
			t.Errorf("Evaluate(%q) = %+v; want fail-closed with an error", s, lim)
		}
	}
	for _, s := range []string{"CRON_TZ=UTC 0 9 * * 1-5", "TZ=Europe/Berlin 0 9 * * *", "@daily", "0 0 29 2 *", " 0 9 * * 1-5 "} {
		if err := (Budget{Nodes: "0", Schedule: s, Duration: time.Hour}).Validate(); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", s, err)
		}
	}
}
