package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
)

// panicEvents records a Warning Event (LeaderComponentPanic) on the NodePool
// or NodeClaim a leader component was working on when it panicked, so the
// owner of a manifest that trips a bug sees it on `kubectl describe`, not
// only in the coordinator's log. Other kinds, or no object, are only
// logged (by the leader loop). The Event is created directly rather than
// through a broadcaster: panics are rare and this runs once per panic.
func panicEvents(kube kubernetes.Interface, c client.Client, log *slog.Logger, now func() time.Time) func(context.Context, *leader.Panic) {
	return func(ctx context.Context, p *leader.Panic) {
		if p.Object == nil {
			return
		}
		var obj client.Object
		switch p.Object.Kind {
		case "NodePool":
			obj = &karpv1.NodePool{}
		case "NodeClaim":
			obj = &karpv1.NodeClaim{}
		default:
			return
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := c.Get(ctx, client.ObjectKey{Name: p.Object.Name}, obj); err != nil {
			log.Warn("cannot record a panic Event on its object", "object", p.Object.String(), "err", err)
			return
		}
		msg := fmt.Sprintf("leader component %s panicked while working on this %s: %v; it was recovered and restarts with backoff (the coordinator log has the stack)",
			p.Component, p.Object.Kind, p.Value)
		if len(msg) > 1024 {
			msg = msg[:1021] + "..."
		}
		t := metav1.NewTime(now())
		ev := &corev1.Event{
			// Events on cluster-scoped objects live in "default", as
			// client-go's recorder puts them.
			ObjectMeta: metav1.ObjectMeta{GenerateName: obj.GetName() + ".", Namespace: metav1.NamespaceDefault},
			InvolvedObject: corev1.ObjectReference{APIVersion: karpv1.GroupVersion.String(), Kind: p.Object.Kind,
				Name: obj.GetName(), UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion()},
			Reason: karpenterevents.LeaderComponentPanic, Message: msg, Type: corev1.EventTypeWarning,
			Source:         corev1.EventSource{Component: "dovetail-coordinator"},
			FirstTimestamp: t, LastTimestamp: t, Count: 1,
		}
		if _, err := kube.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			log.Warn("cannot record a panic Event", "object", p.Object.String(), "err", err)
		}
	}
}
