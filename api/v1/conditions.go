package v1

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SetCondition adds or updates a condition in conds and reports whether
// anything changed. An empty Reason becomes the condition type (the API server
// refuses an empty reason); a zero LastTransitionTime becomes now, so callers
// with an injected clock should set it themselves.
func SetCondition(conds *[]metav1.Condition, c metav1.Condition) bool {
	if c.Reason == "" {
		c.Reason = c.Type
	}
	return meta.SetStatusCondition(conds, c)
}

// GetCondition returns the condition of type t, or nil.
func (in *NodeClaim) GetCondition(t string) *metav1.Condition {
	return meta.FindStatusCondition(in.Status.Conditions, t)
}

// IsTrue reports whether the condition of type t is present and True.
func (in *NodeClaim) IsTrue(t string) bool {
	return meta.IsStatusConditionTrue(in.Status.Conditions, t)
}

// SetCondition sets a condition, stamping the object's generation; it reports whether anything changed.
func (in *NodeClaim) SetCondition(c metav1.Condition) bool {
	c.ObservedGeneration = in.Generation
	return SetCondition(&in.Status.Conditions, c)
}

// SetTrue sets condition t to True with the given reason and message.
func (in *NodeClaim) SetTrue(t, reason, message string) bool {
	return in.SetCondition(metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: reason, Message: message})
}

// SetFalse sets condition t to False with the given reason and message.
func (in *NodeClaim) SetFalse(t, reason, message string) bool {
	return in.SetCondition(metav1.Condition{Type: t, Status: metav1.ConditionFalse, Reason: reason, Message: message})
}

// ClearCondition removes condition t; it reports whether it was there.
func (in *NodeClaim) ClearCondition(t string) bool {
	return meta.RemoveStatusCondition(&in.Status.Conditions, t)
}

// GetCondition returns the condition of type t, or nil.
func (in *NodePool) GetCondition(t string) *metav1.Condition {
	return meta.FindStatusCondition(in.Status.Conditions, t)
}

// IsTrue reports whether the condition of type t is present and True.
func (in *NodePool) IsTrue(t string) bool {
	return meta.IsStatusConditionTrue(in.Status.Conditions, t)
}

// SetCondition sets a condition, stamping the object's generation; it reports whether anything changed.
func (in *NodePool) SetCondition(c metav1.Condition) bool {
	c.ObservedGeneration = in.Generation
	return SetCondition(&in.Status.Conditions, c)
}

// SetTrue sets condition t to True with the given reason and message.
func (in *NodePool) SetTrue(t, reason, message string) bool {
	return in.SetCondition(metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: reason, Message: message})
}

// SetFalse sets condition t to False with the given reason and message.
func (in *NodePool) SetFalse(t, reason, message string) bool {
	return in.SetCondition(metav1.Condition{Type: t, Status: metav1.ConditionFalse, Reason: reason, Message: message})
}

// ClearCondition removes condition t; it reports whether it was there.
func (in *NodePool) ClearCondition(t string) bool {
	return meta.RemoveStatusCondition(&in.Status.Conditions, t)
}
