package drain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dovetail-dev/dovetail/internal/syncbuffer"
)

// acceptOnly makes evictions succeed without the pod going away (a pod
// still inside its grace period), optionally slowly, and refuses those in
// blocked with 429.
func acceptOnly(cs *fake.Clientset, delay time.Duration, blocked map[string]bool) {
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		time.Sleep(delay)
		ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		if blocked[ev.Name] {
			return true, nil, apierrors.NewTooManyRequestsError("Cannot evict pod as it would violate the pod's disruption budget.")
		}
		return true, nil, nil
	})
}

// TestDrainStoppedReportsWhatHappened: the caller (the agent, on SIGTERM)
// cancels a drain after its evictions were accepted but before the pods
// were gone. The result must say so — every eviction accepted, the pods
// terminating, no "took to empty" — where it used to say evicted=0 and a
// negative duration.
func TestDrainStoppedReportsWhatHappened(t *testing.T) {
	objs := []runtime.Object{node("n1")}
	for i := range 30 {
		objs = append(objs, pod("app", fmt.Sprintf("web-%02d", i), "n1"))
	}
	cs := fake.NewClientset(objs...)
	acceptOnly(cs, 0, nil)
	d := newDrainer(t, cs, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	res, err := d.Drain(ctx, "n1", time.Now().Add(2*time.Minute), "spot")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if res.Complete || res.Stopped == "" || !strings.Contains(res.Stopped, "context canceled") {
		t.Fatalf("complete=%v stopped=%q", res.Complete, res.Stopped)
	}
	if res.Accepted() != 30 || res.Count(OutcomeEvicted) != 30 || res.Remaining() != 30 || res.Terminating() != 30 {
		t.Fatalf("accepted=%d evicted=%d remaining=%d terminating=%d; want 30 each", res.Accepted(), res.Count(OutcomeEvicted),
			res.Remaining(), res.Terminating())
	}
	if res.Count(OutcomeStuck) != 0 || res.Count(OutcomeBlocked) != 0 {
		t.Fatalf("stuck=%d blocked=%d: a stopped drain is not a deadline", res.Count(OutcomeStuck), res.Count(OutcomeBlocked))
	}
	if took, ok := res.TookToEmpty(); ok {
		t.Fatalf("TookToEmpty = %v for a node that never emptied", took)
	}
	if c, ok := res.TookToCordon(); !ok || c < 0 || c > time.Second {
		t.Fatalf("TookToCordon = %v, %v", c, ok)
	}
	if reasons := eventReasons(t, cs); countOf(reasons, "DrainStopped") != 1 || countOf(reasons, "DrainIncomplete") != 0 {
		t.Fatalf("events %v: want one DrainStopped", reasons)
	}
}

// TestDrainStoppedMidwayCountsAddUp: stopped while evictions are still
// going out one at a time, the pods split into accepted, refused and not
// yet tried, and the counts add up to the pods on the node.
func TestDrainStoppedMidwayCountsAddUp(t *testing.T) {
	objs := []runtime.Object{node("n1"), pod("app", "db-0", "n1")}
	for i := range 10 {
		objs = append(objs, pod("app", fmt.Sprintf("web-%02d", i), "n1"))
	}
	cs := fake.NewClientset(objs...)
	acceptOnly(cs, 60*time.Millisecond, map[string]bool{"db-0": true})
	d := newDrainer(t, cs, Options{Concurrency: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	res, err := d.Drain(ctx, "n1", time.Now().Add(time.Hour), "spot")
	if err == nil {
		t.Fatal("no error from a cancelled drain")
	}
	acc, pend, blocked := res.Accepted(), res.Count(OutcomePending), res.Count(OutcomeBlocked)
	if acc == 0 || pend == 0 || acc+pend+blocked != 11 || res.Remaining() != 11 {
		t.Fatalf("accepted=%d pending=%d blocked=%d remaining=%d: want both kinds, adding up to 11", acc, pend, blocked, res.Remaining())
	}
	for _, p := range res.Pods {
		if p.Outcome == OutcomePending && (p.Attempts != 0 || !p.AcceptedAt.IsZero()) {
			t.Fatalf("pending pod %+v", p)
		}
	}
}

// TestDrainWatchesInsteadOfListing: the drain lists the node's pods once
// and follows them with one watch, rather than a list every PollInterval.
func TestDrainWatchesInsteadOfListing(t *testing.T) {
	objs := []runtime.Object{node("n1")}
	for i := range 20 {
		objs = append(objs, pod("app", fmt.Sprintf("web-%02d", i), "n1"))
	}
	cs := fake.NewClientset(objs...)
	api := &evictionAPI{}
	api.install(cs)
	// Slow evictions make the drain last many poll intervals.
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "eviction" {
			time.Sleep(15 * time.Millisecond)
		}
		return false, nil, nil
	})
	d := newDrainer(t, cs, Options{Concurrency: 1})
	res, err := d.Drain(t.Context(), "n1", time.Now().Add(time.Minute), "spot")
	if err != nil || !res.Complete {
		t.Fatalf("err=%v complete=%v", err, res.Complete)
	}
	lists, watches := 0, 0
	for _, a := range cs.Actions() {
		if a.GetResource().Resource != "pods" {
			continue
		}
		switch a.GetVerb() {
		case "list":
			lists++
		case "watch":
			watches++
		}
	}
	if lists != 1 || watches != 1 {
		t.Fatalf("%d pod lists and %d watches over a %v drain; want 1 and 1", lists, watches, res.Finished.Sub(res.Started))
	}
}

// TestDrainEventsOnTheirOwnClientNeverDelayEvictions: with an EventClient
// whose every Event takes 50 ms, 40 pods still drain at eviction speed; the
// Events arrive afterwards; Close with no time left drops the rest with
// one log line and no error per Event.
func TestDrainEventsOnTheirOwnClientNeverDelayEvictions(t *testing.T) {
	objs := []runtime.Object{node("n1")}
	for i := range 40 {
		objs = append(objs, pod("app", fmt.Sprintf("web-%02d", i), "n1"))
	}
	cs := fake.NewClientset(objs...)
	api := &evictionAPI{}
	api.install(cs)
	evc := fake.NewClientset()
	evc.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		time.Sleep(50 * time.Millisecond)
		return false, nil, nil
	})
	var logs syncbuffer.Buffer
	d, err := New(cs, Options{EventClient: evc, EventQPS: 1000, EventBurst: 1000, PollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := d.Drain(t.Context(), "n1", time.Now().Add(time.Minute), "spot")
	took := time.Since(start)
	if err != nil || !res.Complete {
		t.Fatalf("err=%v complete=%v", err, res.Complete)
	}
	// 42 Events (Draining, 40 Evicted, Drained) at 50 ms each is 2.1 s.
	if took > time.Second {
		t.Fatalf("drain took %v: Events held it up", took)
	}
	if n := len(eventReasons(t, cs)); n != 0 {
		t.Fatalf("%d Events went through the main client", n)
	}
	fctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_ = d.FlushEvents(fctx) // some, not all, in 200 ms
	sent := len(eventReasons(t, evc))
	if sent == 0 || sent >= 42 {
		t.Fatalf("%d Events sent after 200 ms; want some, not all", sent)
	}
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelClose()
	d.Close(closeCtx)
	out := logs.String()
	if strings.Contains(out, "context canceled") || strings.Contains(out, "could not record event") {
		t.Fatalf("shutdown logged event errors:\n%s", out)
	}
	if strings.Count(out, "events not sent were dropped") != 1 {
		t.Fatalf("want one line about dropped events:\n%s", out)
	}
	// Nothing is sent after Close.
	after := len(eventReasons(t, evc))
	time.Sleep(150 * time.Millisecond)
	if n := len(eventReasons(t, evc)); n != after {
		t.Fatalf("Events sent after Close: %d → %d", after, n)
	}
}
