// Package nodepoolstatus writes NodePool status as Karpenter v1.14 does:
// status.nodes (the scale subresource's replica count), status.resources
// (the summed capacity of the pool's NodeClaims, plus their count as
// "nodes") and the conditions ValidationSucceeded, NodeClassReady,
// NodeRegistrationHealthy and Ready. Without it `kubectl get nodepools`
// shows empty NODES and READY columns.
//
// Compute is a pure function of one snapshot (the pool, its claims, its node
// class); Controller only lists and patches.
package nodepoolstatus

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
)

// Condition reasons.
const (
	ReasonValid               = "Valid"
	ReasonInvalid             = "Invalid"
	ReasonNodeClassReady      = "NodeClassReady"
	ReasonNodeClassNotFound   = "NodeClassNotFound"
	ReasonNodeClassNotReady   = "NodeClassNotReady"
	ReasonUnsupportedClass    = "UnsupportedNodeClass"
	ReasonNodesRegistered     = "NodesRegistered"
	ReasonRegistrationFailing = "RegistrationFailing"
	ReasonNoNodes             = "AwaitingNodes"
	ReasonReady               = "Ready"
	ReasonUnhealthyDependents = "UnhealthyDependents"
)

// Compute returns the pool's new status from its NodeClaims (those labelled
// karpenter.sh/nodepool=pool, not being deleted) and its node class (nil if
// it does not exist). It does not modify its arguments.
func Compute(np *karpv1.NodePool, claims []karpv1.NodeClaim, class *awsv1.EC2NodeClass) karpv1.NodePoolStatus {
	work := np.DeepCopy()
	st := &work.Status

	// Resources: Karpenter sums the capacity of the pool's nodes; a claim
	// that has launched carries that capacity in its status.
	// Karpenter starts from zero cpu, memory, pods and ephemeral-storage, so
	// an empty pool shows 0 rather than blank CPU/MEMORY columns.
	res := corev1.ResourceList{}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage} {
		res[name] = *resource.NewQuantity(0, resource.DecimalSI)
	}
	var count int64
	registered, failed := 0, 0
	for i := range claims {
		c := &claims[i]
		if !c.DeletionTimestamp.IsZero() {
			continue
		}
		count++
		for name, q := range c.Status.Capacity {
			sum := res[name]
			sum.Add(q)
			res[name] = sum
		}
		if c.IsTrue(karpv1.ConditionTypeRegistered) {
			registered++
		}
		if l := c.GetCondition(karpv1.ConditionTypeLaunched); l != nil && l.Status == metav1.ConditionFalse {
			failed++
		}
	}
	res[corev1.ResourceName("nodes")] = *resource.NewQuantity(count, resource.DecimalSI)
	st.Resources = res
	st.Nodes = &count

	// ValidationSucceeded: the checks the CRD cannot make (Karpenter's
	// RuntimeValidate): label keys must be valid label keys, budgets must
	// be evaluable.
	if err := validate(np); err != nil {
		work.SetFalse(karpv1.ConditionTypeValidationSucceeded, ReasonInvalid, err.Error())
	} else {
		work.SetTrue(karpv1.ConditionTypeValidationSucceeded, ReasonValid, "")
	}

	ref := np.Spec.Template.Spec.NodeClassRef
	switch {
	case ref == nil || ref.Group != awsv1.Group || ref.Kind != "EC2NodeClass":
		work.SetFalse(karpv1.ConditionTypeNodeClassReady, ReasonUnsupportedClass, "nodeClassRef must name an EC2NodeClass of group "+awsv1.Group)
	case class == nil:
		work.SetFalse(karpv1.ConditionTypeNodeClassReady, ReasonNodeClassNotFound, fmt.Sprintf("EC2NodeClass %q not found", ref.Name))
	case !class.IsTrue(awsv1.ConditionTypeReady):
		msg := fmt.Sprintf("EC2NodeClass %q is not ready", ref.Name)
		if c := class.GetCondition(awsv1.ConditionTypeReady); c != nil && c.Message != "" {
			msg += ": " + c.Message
		}
		work.SetFalse(karpv1.ConditionTypeNodeClassReady, ReasonNodeClassNotReady, truncate(msg))
		st.NodeClassObservedGeneration = class.Generation
	default:
		work.SetTrue(karpv1.ConditionTypeNodeClassReady, ReasonNodeClassReady, "")
		st.NodeClassObservedGeneration = class.Generation
	}

	// NodeRegistrationHealthy: Unknown until the pool has launched, True
	// once its nodes register, False when launches fail and none register.
	switch {
	case registered > 0:
		work.SetTrue(karpv1.ConditionTypeNodeRegistrationHealthy, ReasonNodesRegistered, "")
	case failed > 0:
		work.SetFalse(karpv1.ConditionTypeNodeRegistrationHealthy, ReasonRegistrationFailing,
			fmt.Sprintf("%d NodeClaims failed to launch and none registered", failed))
	default:
		if work.GetCondition(karpv1.ConditionTypeNodeRegistrationHealthy) == nil {
			work.SetCondition(metav1.Condition{Type: karpv1.ConditionTypeNodeRegistrationHealthy, Status: metav1.ConditionUnknown,
				Reason: ReasonNoNodes, Message: "no node of this pool has registered yet"})
		}
	}

	// Ready summarises validation and the node class, as Karpenter's root
	// condition (registration health is informational there too).
	var bad []string
	for _, t := range []string{karpv1.ConditionTypeValidationSucceeded, karpv1.ConditionTypeNodeClassReady} {
		if !work.IsTrue(t) {
			bad = append(bad, t+"=False")
		}
	}
	if len(bad) == 0 {
		work.SetTrue(karpv1.ConditionTypeReady, ReasonReady, "")
	} else {
		work.SetFalse(karpv1.ConditionTypeReady, ReasonUnhealthyDependents, strings.Join(bad, ", "))
	}
	return *st
}

// Changed reports whether next differs from the pool's stored status.
func Changed(np *karpv1.NodePool, next karpv1.NodePoolStatus) bool {
	return !equality.Semantic.DeepEqual(np.Status, next)
}

func validate(np *karpv1.NodePool) error {
	for k := range np.Spec.Template.Labels {
		if err := validLabelKey(k); err != nil {
			return fmt.Errorf("template label %q: %w", k, err)
		}
	}
	for _, r := range np.Spec.Template.Spec.Requirements {
		if err := validLabelKey(r.Key); err != nil {
			return fmt.Errorf("requirement key %q: %w", r.Key, err)
		}
	}
	return validateBudgets(np)
}

// validateBudgets finds budgets the CRD pattern lets through but the
// evaluator cannot use (a tab-separated or never-firing schedule): the
// planner fails closed on them, and the condition and the InvalidBudget
// Event tell the user why nothing is disrupted.
func validateBudgets(np *karpv1.NodePool) error {
	for i, b := range disruption.BudgetsOf(np) {
		if err := b.Validate(); err != nil {
			return fmt.Errorf("disruption budget %d: %w", i, err)
		}
	}
	return nil
}

func truncate(s string) string {
	const maxMessage = 1024
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage] + "…"
}
