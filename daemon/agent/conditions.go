package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/health"
)

// ConditionFor turns a verdict into a NodeCondition: failed is False,
// ok and degraded are True (degraded says why in reason and message).
// prev, when it has the same status, keeps its transition time.
func ConditionFor(v health.ConditionVerdict, prev *corev1.NodeCondition, now time.Time) corev1.NodeCondition {
	status := corev1.ConditionTrue
	if v.State == health.StateFailed {
		status = corev1.ConditionFalse
	}
	msg := v.Message
	if msg == "" {
		msg = fmt.Sprintf("%s checks are %s", v.Type, v.State)
	}
	c := corev1.NodeCondition{
		Type:               corev1.NodeConditionType(v.Type),
		Status:             status,
		Reason:             v.Reason,
		Message:            msg,
		LastHeartbeatTime:  metav1.NewTime(now),
		LastTransitionTime: metav1.NewTime(now),
	}
	if prev != nil && prev.Status == status {
		c.LastTransitionTime = prev.LastTransitionTime
	} else if !v.Since.IsZero() && v.Since.Before(now) {
		// The problem (or recovery) began before we wrote it down.
		c.LastTransitionTime = metav1.NewTime(v.Since)
	}
	return c
}

// conditionChange is a condition that changed status or reason.
type conditionChange struct {
	prev *corev1.NodeCondition
	cur  corev1.NodeCondition
}

// updateConditions writes the verdicts to the node's status with a
// strategic-merge patch (conditions merge by type, so kubelet's own are
// untouched) and returns the changes worth an Event.
func updateConditions(ctx context.Context, kc kubernetes.Interface, node string, verdicts []health.ConditionVerdict, now time.Time) ([]conditionChange, error) {
	if len(verdicts) == 0 {
		return nil, nil
	}
	n, err := kc.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", node, err)
	}
	existing := map[corev1.NodeConditionType]*corev1.NodeCondition{}
	for i := range n.Status.Conditions {
		existing[n.Status.Conditions[i].Type] = &n.Status.Conditions[i]
	}
	var conds []corev1.NodeCondition
	var changes []conditionChange
	for _, v := range verdicts {
		prev := existing[corev1.NodeConditionType(v.Type)]
		c := ConditionFor(v, prev, now)
		conds = append(conds, c)
		if prev == nil || prev.Status != c.Status || prev.Reason != c.Reason {
			changes = append(changes, conditionChange{prev: prev, cur: c})
		}
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
	if err != nil {
		return nil, fmt.Errorf("encode conditions: %w", err)
	}
	if _, err := kc.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return nil, fmt.Errorf("patch conditions of %s: %w", node, err)
	}
	return changes, nil
}

// eventFor describes a condition change for a node Event.
func eventFor(ch conditionChange) (eventType, reason, msg string) {
	c := ch.cur
	switch {
	case c.Status == corev1.ConditionFalse:
		return corev1.EventTypeWarning, string(c.Type) + "False", fmt.Sprintf("%s: %s", c.Reason, c.Message)
	case c.Reason != "" && len(c.Reason) > 7 && c.Reason[len(c.Reason)-7:] == "IsReady":
		if ch.prev == nil {
			return corev1.EventTypeNormal, string(c.Type) + "True", fmt.Sprintf("%s is healthy", c.Type)
		}
		return corev1.EventTypeNormal, string(c.Type) + "Recovered", fmt.Sprintf("%s recovered (was %s: %s)", c.Type, ch.prev.Reason, ch.prev.Message)
	default:
		return corev1.EventTypeWarning, string(c.Type) + "Degraded", fmt.Sprintf("%s: %s", c.Reason, c.Message)
	}
}
