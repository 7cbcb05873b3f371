// Package eventdedupe publishes Kubernetes Events the way Karpenter's
// pkg/events recorder does: an Event carrying dedupe values is recorded at
// most once per (reason, dedupe values) within its dedupe timeout (default
// 2 minutes), whatever its message, so a pod that stays pending for an hour
// gets a FailedScheduling every 5 minutes instead of one per provisioning
// pass. An optional rate limiter caps bursts (Karpenter's Nominated).
package eventdedupe

import (
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"
)

// DefaultTimeout is Karpenter's default dedupe timeout.
const DefaultTimeout = 2 * time.Minute

// Event is one Event to publish.
type Event struct {
	Object  runtime.Object // what the Event is about (a typed object or an *corev1.ObjectReference)
	Type    string         // Normal or Warning
	Reason  string
	Message string
	// DedupeValues, when set, make the Event a duplicate of any earlier one
	// with the same reason and values within DedupeTimeout.
	DedupeValues  []string
	DedupeTimeout time.Duration // 0: DefaultTimeout
	// RateLimiter, when set, drops the Event when it refuses a token.
	RateLimiter flowcontrol.RateLimiter
}

// Recorder publishes Events through a client-go recorder. Safe for
// concurrent use.
type Recorder struct {
	rec   record.EventRecorder
	clock clock.PassiveClock

	mu        sync.Mutex
	seen      map[string]time.Time // dedupe key → expiry
	lastSweep time.Time
}

// New wraps rec; clk decides when a dedupe entry expires (nil: real time).
func New(rec record.EventRecorder, clk clock.PassiveClock) *Recorder {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Recorder{rec: rec, clock: clk, seen: map[string]time.Time{}}
}

// Publish records each Event unless it is a duplicate or rate-limited. It
// reports how many were recorded.
func (r *Recorder) Publish(evts ...Event) int {
	if r == nil || r.rec == nil {
		return 0
	}
	n := 0
	for _, e := range evts {
		if e.Object == nil || e.Reason == "" {
			continue
		}
		if len(e.DedupeValues) > 0 && !r.first(key(e), e.timeout()) {
			continue
		}
		if e.RateLimiter != nil && !e.RateLimiter.TryAccept() {
			continue
		}
		r.rec.Event(e.Object, e.Type, e.Reason, e.Message)
		n++
	}
	return n
}

func (e Event) timeout() time.Duration {
	if e.DedupeTimeout > 0 {
		return e.DedupeTimeout
	}
	return DefaultTimeout
}

// key is Karpenter's: the lowercased reason and the dedupe values.
func key(e Event) string {
	return strings.ToLower(e.Reason) + "-" + strings.Join(e.DedupeValues, "-")
}

// first reports whether k is not in its dedupe window, and opens one.
func (r *Recorder) first(k string, timeout time.Duration) bool {
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	// Sweep expired keys now and then so the map tracks live objects only.
	if now.Sub(r.lastSweep) > DefaultTimeout {
		for sk, until := range r.seen {
			if !now.Before(until) {
				delete(r.seen, sk)
			}
		}
		r.lastSweep = now
	}
	if until, ok := r.seen[k]; ok && now.Before(until) {
		return false
	}
	r.seen[k] = now.Add(timeout)
	return true
}

// Tracked is the number of dedupe windows held (for tests and debugging).
func (r *Recorder) Tracked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// KubeRecorder is a client-go recorder writing to the API server as
// component (the Events' source), with the stop function of its
// broadcaster. Involved objects are named by *corev1.ObjectReference or
// typed objects of the client-go scheme.
func KubeRecorder(kube kubernetes.Interface, component string) (record.EventRecorder, func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component}), b.Shutdown
}
