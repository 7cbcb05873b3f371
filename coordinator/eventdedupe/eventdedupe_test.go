package eventdedupe

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	clocktesting "k8s.io/utils/clock/testing"
)

func drain(ch chan string) []string {
	var out []string
	for {
		select {
		case e := <-ch:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestDedupesByReasonAndValuesWithinTimeout(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	fake := record.NewFakeRecorder(100)
	r := New(fake, clk)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"}}
	ev := func(msg string) Event {
		return Event{Object: pod, Type: "Warning", Reason: "FailedScheduling", Message: msg,
			DedupeValues: []string{string(pod.UID)}, DedupeTimeout: 5 * time.Minute}
	}
	if n := r.Publish(ev("first")); n != 1 {
		t.Fatalf("first publish recorded %d", n)
	}
	// Another message for the same pod within the window is a duplicate
	// (Karpenter keys on reason and values, not the message).
	clk.Step(4 * time.Minute)
	if n := r.Publish(ev("second")); n != 0 {
		t.Fatalf("duplicate within 5m recorded %d", n)
	}
	// Another reason for the same pod is not.
	if n := r.Publish(Event{Object: pod, Type: "Normal", Reason: "Nominated", Message: "x", DedupeValues: []string{"u1"}}); n != 1 {
		t.Fatalf("other reason recorded %d", n)
	}
	clk.Step(time.Minute + time.Second)
	if n := r.Publish(ev("third")); n != 1 {
		t.Fatalf("after the window recorded %d", n)
	}
	got := drain(fake.Events)
	want := []string{"Warning FailedScheduling first", "Normal Nominated x", "Warning FailedScheduling third"}
	if len(got) != len(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %q, want %q", i, got[i], want[i])
		}
	}
	// Without dedupe values every Event is recorded.
	for i := 0; i < 3; i++ {
		r.Publish(Event{Object: pod, Type: "Normal", Reason: "Evicted", Message: "m"})
	}
	if n := len(drain(fake.Events)); n != 3 {
		t.Errorf("undeduped events %d, want 3", n)
	}
}

func TestExpiredWindowsAreSwept(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	r := New(record.NewFakeRecorder(1000), clk)
	for i := 0; i < 50; i++ {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: types.UID(fmt.Sprintf("u%d", i))}}
		r.Publish(Event{Object: pod, Type: "Normal", Reason: "Nominated", DedupeValues: []string{string(pod.UID)}})
	}
	if r.Tracked() != 50 {
		t.Fatalf("tracked %d, want 50", r.Tracked())
	}
	clk.Step(DefaultTimeout + time.Second)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "q", UID: "late"}}
	r.Publish(Event{Object: pod, Type: "Normal", Reason: "Nominated", DedupeValues: []string{"late"}})
	if r.Tracked() != 1 {
		t.Errorf("tracked %d after the windows expired, want 1", r.Tracked())
	}
}

func TestRateLimiterDropsBursts(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	r := New(record.NewFakeRecorder(100), clk)
	rl := flowcontrol.NewTokenBucketRateLimiterWithClock(1, 2, clk)
	n := 0
	for i := 0; i < 5; i++ {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: types.UID(fmt.Sprintf("u%d", i))}}
		n += r.Publish(Event{Object: pod, Type: "Normal", Reason: "Nominated", DedupeValues: []string{string(pod.UID)}, RateLimiter: rl})
	}
	if n != 2 {
		t.Errorf("recorded %d of a burst of 5 with burst 2", n)
	}
}

func TestNilAndIncompleteEventsAreSkipped(t *testing.T) {
	var r *Recorder
	if r.Publish(Event{Reason: "x"}) != 0 {
		t.Error("nil recorder recorded")
	}
	r = New(record.NewFakeRecorder(10), nil)
	if r.Publish(Event{Reason: "x"}, Event{Object: &corev1.Pod{}}) != 0 {
		t.Error("event without object or reason recorded")
	}
}
