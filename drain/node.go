package drain

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

// Taint keys Dovetail puts on a node it is taking away.
const (
	// DisruptedTaintKey is Karpenter's taint: the node is being disrupted,
	// schedule nothing new here.
	DisruptedTaintKey = karpv1.DisruptedTaintKey
	// InterruptionTaintKey names why (value: spot, maintenance, ...), so a
	// person reading `kubectl describe node` sees the cause.
	InterruptionTaintKey = "dovetail.dev/interruption"
	// CordonedByAnnotation marks a cordon Dovetail made, so that undoing it
	// never uncordons a node an operator cordoned by hand.
	CordonedByAnnotation = "dovetail.dev/cordoned-by"
)

// DisruptionTaints returns the taints a drain for reason puts on a node.
func DisruptionTaints(reasonKey, reason string) []corev1.Taint {
	return []corev1.Taint{
		{Key: DisruptedTaintKey, Effect: corev1.TaintEffectNoSchedule},
		{Key: reasonKey, Value: sanitizeLabelValue(reason), Effect: corev1.TaintEffectNoSchedule},
	}
}

// Cordon marks the node unschedulable and records that Dovetail did it. It
// reports whether the node changed.
func (d *Drainer) Cordon(ctx context.Context, node string) (bool, error) {
	return d.updateNode(ctx, node, "cordon", func(n *corev1.Node) bool {
		if n.Spec.Unschedulable {
			return false
		}
		n.Spec.Unschedulable = true
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		n.Annotations[CordonedByAnnotation] = d.opts.Component
		return true
	})
}

// Uncordon makes the node schedulable again, but only when the cordon was
// Dovetail's (or force is set): a node cordoned by a person stays cordoned.
func (d *Drainer) Uncordon(ctx context.Context, node string, force bool) (bool, error) {
	return d.updateNode(ctx, node, "uncordon", func(n *corev1.Node) bool {
		_, ours := n.Annotations[CordonedByAnnotation]
		changed := false
		if n.Spec.Unschedulable && (ours || force) {
			n.Spec.Unschedulable = false
			changed = true
		}
		if ours && !n.Spec.Unschedulable {
			delete(n.Annotations, CordonedByAnnotation)
			changed = true
		}
		return changed
	})
}

// Taint adds the taints that are missing (same key and effect) and updates
// the value of those present with another value.
func (d *Drainer) Taint(ctx context.Context, node string, taints ...corev1.Taint) (bool, error) {
	return d.updateNode(ctx, node, "taint", func(n *corev1.Node) bool {
		changed := false
		for _, t := range taints {
			found := false
			for i := range n.Spec.Taints {
				cur := &n.Spec.Taints[i]
				if cur.Key == t.Key && cur.Effect == t.Effect {
					found = true
					if cur.Value != t.Value {
						cur.Value = t.Value
						changed = true
					}
				}
			}
			if !found {
				t.TimeAdded = nil // the API server sets it for NoExecute only
				n.Spec.Taints = append(n.Spec.Taints, t)
				changed = true
			}
		}
		return changed
	})
}

// MarkDisrupted puts the taints a drain for reason puts on, without
// draining: for a node whose own agent drains it (a node may not taint
// itself, NodeRestriction refuses it), so the node still carries
// karpenter.sh/disrupted as a Karpenter user expects.
func (d *Drainer) MarkDisrupted(ctx context.Context, node, reason string) error {
	_, err := d.Taint(ctx, node, DisruptionTaints(d.opts.ReasonTaintKey, reason)...)
	return err
}

// Untaint removes every taint with one of the keys.
func (d *Drainer) Untaint(ctx context.Context, node string, keys ...string) (bool, error) {
	drop := map[string]bool{}
	for _, k := range keys {
		drop[k] = true
	}
	return d.updateNode(ctx, node, "untaint", func(n *corev1.Node) bool {
		kept := n.Spec.Taints[:0:0]
		for _, t := range n.Spec.Taints {
			if !drop[t.Key] {
				kept = append(kept, t)
			}
		}
		if len(kept) == len(n.Spec.Taints) {
			return false
		}
		n.Spec.Taints = kept
		return true
	})
}

// Restore undoes a drain that is no longer needed (a cancelled maintenance
// event, a node that survived its reboot): it removes the disruption taints
// and uncordons the node if Dovetail cordoned it. Evicted pods are not
// brought back; the scheduler may place new ones.
func (d *Drainer) Restore(ctx context.Context, node, why string) error {
	untainted, err := d.Untaint(ctx, node, DisruptedTaintKey, d.opts.ReasonTaintKey)
	if apierrors.IsForbidden(err) {
		// A node identity may not change taints (NodeRestriction); taints
		// someone else put on stay for them to remove, the cordon is ours.
		d.log.Warn("identity may not remove the disruption taints; uncordoning only", "node", node, "err", err)
	} else if err != nil {
		return err
	}
	uncordoned, err := d.Uncordon(ctx, node, false)
	if err != nil {
		return err
	}
	if (untainted || uncordoned) && !d.opts.DryRun {
		d.events.nodeEvent(ctx, node, corev1.EventTypeNormal, "DisruptionCancelled",
			fmt.Sprintf("Removed disruption taints and uncordoned: %s", why))
	}
	d.log.Info("node restored", "node", node, "why", why, "untainted", untainted, "uncordoned", uncordoned)
	return nil
}

// updateNode applies mutate to the node and writes it back, retrying on
// conflicts. In dry-run mode the write is a server-side dry run.
func (d *Drainer) updateNode(ctx context.Context, name, op string, mutate func(*corev1.Node) bool) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		n, err := d.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n = n.DeepCopy()
		if !mutate(n) {
			changed = false
			return nil
		}
		opts := metav1.UpdateOptions{}
		if d.opts.DryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err = d.client.CoreV1().Nodes().Update(ctx, n, opts)
		changed = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("%s node %s: %w", op, name, err)
	}
	return changed, nil
}

// sanitizeLabelValue makes reason a valid taint value (≤63 of [A-Za-z0-9-_.],
// alphanumeric at both ends).
func sanitizeLabelValue(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < 63; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			b = append(b, c)
		default:
			b = append(b, '-')
		}
	}
	for len(b) > 0 && !isAlnum(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && !isAlnum(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return string(b)
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
