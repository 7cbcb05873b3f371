// Package budget decides how many nodes of a NodePool may be voluntarily
// disrupted right now, from the pool's disruption budgets.
//
// The semantics follow Karpenter v1 so that a NodePool means the same thing
// under Dovetail:
//   - nodes is a count ("5") or a percentage of the pool's nodes ("10%");
//     percentages round UP (10% of 11 nodes allows 2), as Karpenter and
//     Kubernetes' PDB maxUnavailable do, so a small pool is never frozen by a
//     percentage that rounds to zero ("0%" and "0" still mean zero);
//   - a budget with a schedule is active from each cron hit for duration
//     (the window is [hit, hit+duration)); a budget without one is always active;
//   - budgets that name a reason govern it while active; budgets without
//     reasons govern the reasons no active budget names (see Evaluate for
//     why this differs from Karpenter);
//   - of all budgets that apply, the most restrictive wins;
//   - a pool without budgets gets the default, nodes: "10%";
//   - nodes already being disrupted (deleting or NotReady) count against it.
//
// Dovetail additionally accepts a time zone prefix in schedules
// ("CRON_TZ=Asia/Seoul 0 9 * * 1-5"); without one, schedules are UTC.
// A budget that cannot be parsed fails closed (allows nothing) and says why.
package budget

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	// Time zone data is embedded so CRON_TZ works on minimal images (FROM scratch).
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

// Reason is a disruption reason a budget can be restricted to.
type Reason string

// Reasons a budget can name (Karpenter's set), plus the ones Dovetail uses
// internally for the default budgets.
const (
	ReasonEmpty         Reason = "Empty"
	ReasonDrifted       Reason = "Drifted"
	ReasonUnderutilized Reason = "Underutilized"
	// ReasonExpired is not nameable in a budget (as in Karpenter); only
	// budgets without reasons restrict it.
	ReasonExpired Reason = "Expired"
)

// Default is the budget a NodePool gets when it declares none.
const Default = "10%"

// Budget is one entry of spec.disruption.budgets.
type Budget struct {
	Nodes    string        `json:"nodes"`
	Schedule string        `json:"schedule,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Reasons  []Reason      `json:"reasons,omitempty"`
}

// Unlimited is what Allowed returns when no budget restricts a reason.
const Unlimited = math.MaxInt32

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Validate reports whether the budget can be evaluated.
func (b Budget) Validate() error {
	if _, _, err := parseNodes(b.Nodes); err != nil {
		return err
	}
	if (b.Schedule == "") != (b.Duration == 0) {
		return fmt.Errorf("budget nodes=%q: schedule and duration must be set together", b.Nodes)
	}
	if b.Schedule != "" {
		if _, err := parseSchedule(b.Schedule); err != nil {
			return err
		}
	}
	if b.Duration < 0 {
		return fmt.Errorf("budget nodes=%q: negative duration %s", b.Nodes, b.Duration)
	}
	return nil
}

// parseSchedule parses a 5-field cron expression or a descriptor (@daily...),
// with an optional CRON_TZ= or TZ= prefix naming an IANA time zone.
//
// The spec is checked before robfig/cron sees it: that parser panics on a
// time-zone prefix not followed by a space (e.g. tab-separated fields), and
// it accepts schedules that never fire (0 0 30 2 *), whose Next is the zero
// time and would otherwise read as "always active".
func parseSchedule(s string) (sched cron.Schedule, err error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, fmt.Errorf("budget schedule %q: empty", s)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r != ' ' && unicode.IsSpace(r) }) {
		return nil, fmt.Errorf("budget schedule %q: fields must be separated by spaces, not tabs or newlines", s)
	}
	tz := "CRON_TZ=UTC" // Karpenter's rule: UTC unless a zone is named, never the process's local zone.
	if strings.HasPrefix(fields[0], "CRON_TZ=") || strings.HasPrefix(fields[0], "TZ=") {
		tz, fields = fields[0], fields[1:]
		if _, zerr := time.LoadLocation(tz[strings.Index(tz, "=")+1:]); zerr != nil || strings.HasSuffix(tz, "=") {
			return nil, fmt.Errorf("budget schedule %q: unknown time zone in %q", s, tz)
		}
	}
	switch {
	case len(fields) == 1 && strings.HasPrefix(fields[0], "@"):
	case len(fields) == 5:
	default:
		return nil, fmt.Errorf("budget schedule %q: want 5 cron fields (minute hour day-of-month month day-of-week) or a @descriptor, got %d fields", s, len(fields))
	}
	// Belt and braces: a parser panic on input we did not foresee must be an
	// invalid schedule, never a leader crash.
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, fmt.Errorf("budget schedule %q: unparseable: %v", s, r)
		}
	}()
	sched, err = parser.Parse(tz + " " + strings.Join(fields, " "))
	if err != nil {
		return nil, fmt.Errorf("budget schedule %q: %w", s, err)
	}
	// robfig/cron searches five years ahead; a schedule with no hit from a
	// fixed leap-year reference never fires (Feb 30, Apr 31).
	if sched.Next(scheduleProbe).IsZero() {
		return nil, fmt.Errorf("budget schedule %q: never fires (no matching date)", s)
	}
	return sched, nil
}

// scheduleProbe is the reference from which a schedule must fire at least
// once; its five-year search window covers a leap day.
var scheduleProbe = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)

// parseNodes returns (value, isPercent).
func parseNodes(s string) (int, bool, error) {
	v := strings.TrimSpace(s)
	pct := strings.HasSuffix(v, "%")
	n, err := strconv.Atoi(strings.TrimSuffix(v, "%"))
	if err != nil || n < 0 || (pct && n > 100) {
		return 0, false, fmt.Errorf("budget nodes %q: want a non-negative count or a percentage 0%%-100%%", s)
	}
	return n, pct, nil
}

// Active reports whether the budget's window contains now. A budget
// without a schedule is always active.
func (b Budget) Active(now time.Time) (bool, error) {
	if b.Schedule == "" {
		return true, nil
	}
	sched, err := parseSchedule(b.Schedule)
	if err != nil {
		return false, err
	}
	// The latest hit at or before now is inside the window iff the first hit
	// strictly after now-duration is not after now.
	next := sched.Next(now.Add(-b.Duration))
	if next.IsZero() {
		// No hit found: never active (the zero time is not after now).
		return false, fmt.Errorf("budget schedule %q: never fires", b.Schedule)
	}
	return !next.After(now), nil
}

// AppliesTo reports whether the budget restricts reason.
func (b Budget) AppliesTo(reason Reason) bool {
	if len(b.Reasons) == 0 {
		return true
	}
	for _, r := range b.Reasons {
		if strings.EqualFold(string(r), string(reason)) {
			return true
		}
	}
	return false
}

// Scaled turns the budget's nodes value into a count for a pool of total
// nodes; percentages round up.
func (b Budget) Scaled(total int) (int, error) {
	n, pct, err := parseNodes(b.Nodes)
	if err != nil {
		return 0, err
	}
	if !pct {
		return n, nil
	}
	return (n*total + 99) / 100, nil
}

// Limit is the outcome of evaluating a pool's budgets for one reason.
type Limit struct {
	// Allowed is how many more nodes may start being disrupted now
	// (never negative).
	Allowed int `json:"allowed"`
	// Max is the most restrictive active budget's node count.
	Max int `json:"max"`
	// Disrupting is how many nodes were already counted against it.
	Disrupting int `json:"disrupting"`
	// Budget is the entry that set Max ("default" for the implicit 10%),
	// so a blocked candidate can be told exactly which budget blocked it.
	Budget string `json:"budget"`
	// Err is set when a budget could not be parsed; Allowed is then 0.
	Err string `json:"error,omitempty"`
}

// Evaluate computes the limit for reason in a pool of total nodes of which
// disrupting are already being disrupted, at time now.
//
// Which budgets apply to a reason: the active budgets that name it, if there
// are any; otherwise the budgets that name no reason. This is where Dovetail
// departs from Karpenter (which always adds reason-less budgets too), so the
// common example reads as written: with {nodes "100%" reasons [Empty]} and
// {nodes "10%"}, empty nodes may all go, not 10% of them. Among the budgets
// that apply, the most restrictive wins.
func Evaluate(budgets []Budget, reason Reason, total, disrupting int, now time.Time) Limit {
	implicit := len(budgets) == 0
	if implicit {
		budgets = []Budget{{Nodes: Default}}
	}
	lim := Limit{Max: Unlimited, Disrupting: disrupting, Budget: "none active"}
	closed := func(i int, b Budget, err error) Limit {
		// Fail closed: a budget we cannot read must not let anything through.
		return Limit{Allowed: 0, Max: 0, Disrupting: disrupting, Budget: Describe(i, b), Err: err.Error()}
	}
	var named, fallback []int
	for i, b := range budgets {
		if err := b.Validate(); err != nil {
			return closed(i, b, err)
		}
		active, err := b.Active(now)
		if err != nil {
			return closed(i, b, err)
		}
		if !active {
			continue
		}
		switch {
		case len(b.Reasons) == 0:
			fallback = append(fallback, i)
		case b.AppliesTo(reason):
			named = append(named, i)
		}
	}
	apply := named
	if len(apply) == 0 {
		apply = fallback
	}
	for _, i := range apply {
		n, err := budgets[i].Scaled(total)
		if err != nil {
			return closed(i, budgets[i], err)
		}
		if n < lim.Max {
			lim.Max = n
			lim.Budget = Describe(i, budgets[i])
			if implicit {
				lim.Budget = "default nodes=\"" + Default + "\""
			}
		}
	}
	if lim.Max == Unlimited {
		lim.Allowed = Unlimited
		return lim
	}
	lim.Allowed = max(lim.Max-disrupting, 0)
	return lim
}

// Describe names a budget entry for messages and explanations.
func Describe(i int, b Budget) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "budgets[%d] nodes=%q", i, b.Nodes)
	if len(b.Reasons) > 0 {
		rs := make([]string, len(b.Reasons))
		for j, r := range b.Reasons {
			rs[j] = string(r)
		}
		fmt.Fprintf(&sb, " reasons=%s", strings.Join(rs, ","))
	}
	if b.Schedule != "" {
		fmt.Fprintf(&sb, " schedule=%q duration=%s", b.Schedule, b.Duration)
	}
	return sb.String()
}
