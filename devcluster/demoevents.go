package devcluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
)

// eventTime is when an Event last happened, whichever API wrote it.
func eventTime(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// fromDovetail: recorded by one of Dovetail's components (the coordinator's
// controllers, the agents' and the coordinator's drains), not by
// kube-scheduler, which also says FailedScheduling.
func fromDovetail(e *corev1.Event) bool {
	return strings.HasPrefix(e.Source.Component, "dovetail") || strings.HasPrefix(e.ReportingController, "dovetail")
}

// eventRow is one line of the demo's `kubectl get events` digest: the
// Events of one reason on one kind of object.
type eventRow struct {
	Type, Reason, Kind string
	Count              int
	Last               time.Time
	Object, Message    string // the latest one
}

// karpenterEvents digests the Events Dovetail recorded since t under
// Karpenter's reasons, one row per reason and object kind (latest first
// within the row), ordered by when each row last happened.
func karpenterEvents(evs []corev1.Event, t time.Time) []eventRow {
	rows := map[string]*eventRow{}
	for i := range evs {
		e := &evs[i]
		if _, ok := karpenterevents.Karpenter[e.Reason]; !ok || !fromDovetail(e) {
			continue
		}
		at := eventTime(e)
		if at.Before(t) {
			continue
		}
		k := e.Reason + "/" + e.InvolvedObject.Kind
		r := rows[k]
		if r == nil {
			r = &eventRow{Type: e.Type, Reason: e.Reason, Kind: e.InvolvedObject.Kind}
			rows[k] = r
		}
		r.Count += max(int(e.Count), 1)
		if !at.Before(r.Last) {
			r.Last = at
			r.Object = strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
			r.Message = e.Message
		}
	}
	out := make([]eventRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Last.Equal(out[j].Last) {
			return out[i].Last.Before(out[j].Last)
		}
		return out[i].Reason+out[i].Kind < out[j].Reason+out[j].Kind
	})
	return out
}

// printEvents prints, `kubectl get events`-style, the Karpenter-reason
// Events Dovetail recorded since the step began, and returns the count of
// each reason.
func (r *demoRun) printEvents(ctx context.Context, since time.Time) map[string]int {
	// The recorders send asynchronously; give the last ones a moment.
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
	evs, err := r.kube.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		r.p.line(fmt.Sprintf("  (kubectl get events: %v)", err))
		return nil
	}
	rows := karpenterEvents(evs.Items, since.Truncate(time.Second))
	counts := map[string]int{}
	if len(rows) == 0 {
		r.p.line("  kubectl get events: no Karpenter-reason Events in this step")
		return counts
	}
	r.p.line("  kubectl get events (Karpenter's reasons, this step; one row per reason and kind, the latest shown):")
	r.p.line(fmt.Sprintf("    %-8s %-7s %-30s %-5s %-40s %s", "LAST", "TYPE", "REASON", "COUNT", "OBJECT", "MESSAGE"))
	for _, row := range rows {
		counts[row.Reason] += row.Count
		msg := row.Message
		if len(msg) > 110 {
			msg = msg[:107] + "..."
		}
		r.p.line(fmt.Sprintf("    %-8s %-7s %-30s %-5d %-40s %s", since2(row.Last, since), row.Type, row.Reason, row.Count, row.Object, msg))
	}
	return counts
}

// since2 is how far into the step t was.
func since2(t, start time.Time) string {
	return fmt.Sprintf("+%ds", int(max(t.Sub(start.Truncate(time.Second)), 0)/time.Second))
}
