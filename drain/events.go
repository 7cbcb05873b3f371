package drain

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"
)

// EventSink receives the drain's Kubernetes Events. Without one, and without
// Options.EventClient, they are written to the API synchronously (a test can
// then see them at once); a controller may pass its own recorder.
type EventSink interface {
	Event(ctx context.Context, obj corev1.ObjectReference, eventType, reason, message string)
}

type eventWriter struct {
	sink      EventSink
	client    kubernetes.Interface
	queue     *eventQueue // set with Options.EventClient: asynchronous, own budget
	component string
	log       *slog.Logger
	now       func() time.Time
}

func (w eventWriter) nodeEvent(ctx context.Context, node, eventType, reason, msg string) {
	// Node events live in the default namespace, keyed by the node's name
	// as UID, which is how kubelet and `kubectl describe node` find them.
	w.emit(ctx, corev1.ObjectReference{Kind: "Node", Name: node, UID: types.UID(node), APIVersion: "v1"}, "default", eventType, reason, msg)
}

func (w eventWriter) podEvent(ctx context.Context, pod *corev1.Pod, eventType, reason, msg string) {
	w.emit(ctx, corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, APIVersion: "v1"},
		pod.Namespace, eventType, reason, msg)
}

func (w eventWriter) emit(ctx context.Context, ref corev1.ObjectReference, ns, eventType, reason, msg string) {
	if w.sink != nil {
		w.sink.Event(ctx, ref, eventType, reason, msg)
		return
	}
	ev := w.build(ref, ns, eventType, reason, msg)
	if w.queue != nil {
		w.queue.add(ev)
		return
	}
	if ctx.Err() != nil {
		// Shutting down: a request on a cancelled context only fails and
		// logs "context canceled". Events are best effort; drop it quietly.
		w.log.Debug("event dropped: shutting down", "object", ref.Kind+"/"+ref.Name, "reason", reason)
		return
	}
	if _, err := w.client.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		// Events are best effort: a drain must not fail because one was lost.
		w.log.Warn("could not record event", "object", ref.Kind+"/"+ref.Name, "reason", reason, "err", err)
	}
}

func (w eventWriter) build(ref corev1.ObjectReference, ns, eventType, reason, msg string) *corev1.Event {
	now := metav1.NewTime(w.now())
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			// Same naming scheme as client-go's recorder: unique and sortable.
			Name:      fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()),
			Namespace: ns,
		},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             msg,
		Type:                eventType,
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		Source:              corev1.EventSource{Component: w.component},
		ReportingController: "dovetail.dev/" + w.component,
		ReportingInstance:   w.component,
	}
}

// NodeEvent records an Event on a node through the drainer's sink, for
// callers (the agent's health conditions) that report on the same node.
func (d *Drainer) NodeEvent(ctx context.Context, node, eventType, reason, message string) {
	if d.opts.DryRun {
		return
	}
	d.events.nodeEvent(ctx, node, eventType, reason, message)
}

// eventQueue sends Events from one goroutine through their own client and
// rate limit, so that a drain's Events never take a request from the
// evictions' budget nor delay one: a 250-pod drain queues 250 Events and
// its evictions go out first. The queue is bounded; an Event that does not
// fit is dropped and counted (they are best effort).
type eventQueue struct {
	client  kubernetes.Interface
	limiter flowcontrol.RateLimiter
	log     *slog.Logger
	dropped *prometheus.CounterVec
	sent    prometheus.Counter

	ch      chan *corev1.Event
	pending atomic.Int64 // queued or being sent
	mu      sync.Mutex
	closed  bool
	// base is cancelled when Close runs out of time: the worker drops what
	// is left and abandons the request in flight, without logging it.
	base context.Context
	stop context.CancelFunc
	done chan struct{}
}

// Event queue defaults: the API takes Events cheaply, but they must not
// crowd out the node's other requests either.
const (
	defaultEventQPS   = 20
	defaultEventBurst = 50
	eventQueueSize    = 1024
	eventTimeout      = 5 * time.Second
)

func newEventQueue(client kubernetes.Interface, qps float32, burst int, log *slog.Logger, m *metrics) *eventQueue {
	if qps <= 0 {
		qps = defaultEventQPS
	}
	if burst <= 0 {
		burst = defaultEventBurst
	}
	q := &eventQueue{
		client: client, limiter: flowcontrol.NewTokenBucketRateLimiter(qps, burst), log: log,
		dropped: m.eventsDropped, sent: m.eventsSent,
		ch: make(chan *corev1.Event, eventQueueSize), done: make(chan struct{}),
	}
	q.base, q.stop = context.WithCancel(context.Background())
	go q.run()
	return q
}

func (q *eventQueue) add(ev *corev1.Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		q.dropped.WithLabelValues("shutdown").Inc()
		return
	}
	q.pending.Add(1)
	select {
	case q.ch <- ev:
	default:
		q.pending.Add(-1)
		q.dropped.WithLabelValues("queue-full").Inc()
	}
}

func (q *eventQueue) run() {
	defer close(q.done)
	// Failures are logged once per streak, with the count when it ends, so
	// an unreachable API server gives two lines, not one per Event.
	failures := 0
	var lastErr error
	for ev := range q.ch {
		if q.base.Err() != nil {
			q.pending.Add(-1)
			q.dropped.WithLabelValues("shutdown").Inc()
			continue
		}
		ctx, cancel := context.WithTimeout(q.base, eventTimeout)
		err := q.limiter.Wait(ctx)
		if err == nil {
			_, err = q.client.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
		}
		cancel()
		q.pending.Add(-1)
		if err != nil && q.base.Err() != nil {
			q.dropped.WithLabelValues("shutdown").Inc()
			continue
		}
		if err != nil {
			q.dropped.WithLabelValues("error").Inc()
			if failures == 0 {
				q.log.Warn("could not record event; further failures are counted, not logged",
					"object", ev.InvolvedObject.Kind+"/"+ev.InvolvedObject.Name, "reason", ev.Reason, "err", err)
			}
			failures++
			lastErr = err
			continue
		}
		q.sent.Inc()
		if failures > 1 {
			q.log.Info("recording events again", "failed", failures, "lastErr", lastErr)
		}
		failures = 0
	}
}

// flush waits until every queued Event was sent (or failed) or ctx ends.
func (q *eventQueue) flush(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for q.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: %d events still queued: %w", q.pending.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// close stops taking Events, sends what is queued until ctx ends and drops
// the rest; it returns how many were dropped.
func (q *eventQueue) close(ctx context.Context) int {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	select {
	case <-q.done:
		q.stop()
		return 0
	case <-ctx.Done():
	}
	left := int(q.pending.Load())
	q.stop()
	<-q.done // the request in flight is abandoned at once
	return left
}

// FlushEvents waits until the Events queued so far have been sent (only
// with Options.EventClient; otherwise they are already written).
func (d *Drainer) FlushEvents(ctx context.Context) error {
	if d.events.queue == nil {
		return nil
	}
	return d.events.queue.flush(ctx)
}

// Close sends the Events still queued until ctx ends, then drops the rest
// with one log line, never an error per Event. Call it once, at shutdown,
// on the Drainer made by New (derived ones share its queue).
func (d *Drainer) Close(ctx context.Context) {
	if d.events.queue == nil {
		return
	}
	queued := d.events.queue.pending.Load()
	if dropped := d.events.queue.close(ctx); dropped > 0 {
		d.log.Info("shutting down: events not sent were dropped", "dropped", dropped, "queued", queued)
	} else if queued > 0 {
		d.log.Debug("shutting down: queued events sent", "sent", queued)
	}
}
