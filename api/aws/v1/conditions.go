package v1

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

// GetCondition returns the condition of type t, or nil.
func (in *EC2NodeClass) GetCondition(t string) *metav1.Condition {
	return meta.FindStatusCondition(in.Status.Conditions, t)
}

// IsTrue reports whether the condition of type t is present and True.
func (in *EC2NodeClass) IsTrue(t string) bool {
	return meta.IsStatusConditionTrue(in.Status.Conditions, t)
}

// SetCondition sets a condition, stamping the object's generation; it reports whether anything changed.
func (in *EC2NodeClass) SetCondition(c metav1.Condition) bool {
	c.ObservedGeneration = in.Generation
	return karpv1.SetCondition(&in.Status.Conditions, c)
}

// SetTrue sets condition t to True with the given reason and message.
func (in *EC2NodeClass) SetTrue(t, reason, message string) bool {
	return in.SetCondition(metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: reason, Message: message})
}

// SetFalse sets condition t to False with the given reason and message.
func (in *EC2NodeClass) SetFalse(t, reason, message string) bool {
	return in.SetCondition(metav1.Condition{Type: t, Status: metav1.ConditionFalse, Reason: reason, Message: message})
}

// ClearCondition removes condition t; it reports whether it was there.
func (in *EC2NodeClass) ClearCondition(t string) bool {
	return meta.RemoveStatusCondition(&in.Status.Conditions, t)
}
