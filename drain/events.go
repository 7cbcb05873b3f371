package drain

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// EventSink receives the drain's Kubernetes Events. The default writes them
// to the API synchronously (a drain emits few, and a test can then see them
// at once); a controller may pass its own recorder.
type EventSink interface {
	Event(ctx context.Context, obj corev1.ObjectReference, eventType, reason, message string)
}

type eventWriter struct {
	sink      EventSink
	client    kubernetes.Interface
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
	now := metav1.NewTime(w.now())
	ev := &corev1.Event{
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
	if _, err := w.client.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		// Events are best effort: a drain must not fail because one was lost.
		w.log.Warn("could not record event", "object", ref.Kind+"/"+ref.Name, "reason", reason, "err", err)
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
