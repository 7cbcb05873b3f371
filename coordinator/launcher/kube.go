package launcher

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
)

// KubeClaims implements Claims with a controller-runtime client whose scheme
// knows corev1, karpv1 and awsv1.
type KubeClaims struct {
	C client.Client
}

// NodeClass implements NodeClasses.
func (k *KubeClaims) NodeClass(ctx context.Context, name string) (*awsv1.EC2NodeClass, error) {
	nc := &awsv1.EC2NodeClass{}
	if err := k.C.Get(ctx, client.ObjectKey{Name: name}, nc); err != nil {
		return nil, fmt.Errorf("get EC2NodeClass %s: %w", name, err)
	}
	return nc, nil
}

// Ensure implements Claims.
func (k *KubeClaims) Ensure(ctx context.Context, nc *karpv1.NodeClaim) (*karpv1.NodeClaim, error) {
	obj := nc.DeepCopy()
	controllerutil.AddFinalizer(obj, karpv1.TerminationFinalizer)
	obj.ResourceVersion = ""
	err := k.C.Create(ctx, obj)
	if err == nil {
		return obj, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create NodeClaim %s: %w", nc.Name, err)
	}
	got := &karpv1.NodeClaim{}
	if err := k.C.Get(ctx, client.ObjectKey{Name: nc.Name}, got); err != nil {
		return nil, fmt.Errorf("get NodeClaim %s: %w", nc.Name, err)
	}
	return got, nil
}

// List implements Claims.
func (k *KubeClaims) List(ctx context.Context) ([]karpv1.NodeClaim, error) {
	var l karpv1.NodeClaimList
	if err := k.C.List(ctx, &l); err != nil {
		return nil, fmt.Errorf("list NodeClaims: %w", err)
	}
	return l.Items, nil
}

func (k *KubeClaims) updateStatus(ctx context.Context, name string, mutate func(*karpv1.NodeClaim)) error {
	nc := &karpv1.NodeClaim{}
	if err := k.C.Get(ctx, client.ObjectKey{Name: name}, nc); err != nil {
		return fmt.Errorf("get NodeClaim %s: %w", name, client.IgnoreNotFound(err))
	}
	base := nc.DeepCopy()
	mutate(nc)
	SetReady(nc)
	if err := k.C.Status().Patch(ctx, nc, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("patch NodeClaim %s status: %w", name, err)
	}
	return nil
}

// readyDependents are the conditions Karpenter's NodeClaim Ready summarises.
var readyDependents = []string{karpv1.ConditionTypeLaunched, karpv1.ConditionTypeRegistered, karpv1.ConditionTypeInitialized}

// SetReady sets the root Ready condition as Karpenter does: True once the
// claim is Launched, Registered and Initialized; False if one of them is
// False; Unknown while one is still unknown. Without it `kubectl get
// nodeclaims` shows an empty READY column.
func SetReady(nc *karpv1.NodeClaim) {
	status, reason := metav1.ConditionTrue, "Ready"
	var msgs []string
	for _, t := range readyDependents {
		c := nc.GetCondition(t)
		switch {
		case c == nil || c.Status == metav1.ConditionUnknown:
			if status == metav1.ConditionTrue {
				status = metav1.ConditionUnknown
			}
			msgs = append(msgs, t+"=Unknown")
		case c.Status == metav1.ConditionFalse:
			status = metav1.ConditionFalse
			msgs = append(msgs, t+"=False")
		}
	}
	msg := ""
	if status != metav1.ConditionTrue {
		reason, msg = "UnhealthyDependents", strings.Join(msgs, ", ")
	}
	nc.SetCondition(metav1.Condition{Type: karpv1.ConditionTypeReady, Status: status, Reason: reason, Message: msg})
}

// MarkLaunched implements Claims: providerID, imageID, capacity,
// allocatable, the Launched condition and the instance's labels.
func (k *KubeClaims) MarkLaunched(ctx context.Context, name string, inst *cloud.Instance, it *cloud.InstanceType) error {
	nc := &karpv1.NodeClaim{}
	if err := k.C.Get(ctx, client.ObjectKey{Name: name}, nc); err != nil {
		return fmt.Errorf("get NodeClaim %s: %w", name, err)
	}
	base := nc.DeepCopy()
	if nc.Labels == nil {
		nc.Labels = map[string]string{}
	}
	nc.Labels[karpv1.LabelInstanceType] = inst.InstanceType
	nc.Labels[karpv1.LabelTopologyZone] = inst.Zone
	nc.Labels[karpv1.CapacityTypeLabelKey] = inst.CapacityType
	if inst.CapacityReservationID != "" {
		nc.Labels[karpv1.LabelCapacityReservationID] = inst.CapacityReservationID
		nc.Labels[karpv1.LabelCapacityReservationType] = inst.CapacityReservationType
		nc.Labels[karpv1.AWSGroup+"/capacity-reservation-interruptible"] = strconv.FormatBool(inst.CapacityReservationInterruptible)
	}
	if inst.PlacementGroupID != "" {
		nc.Labels[karpv1.AWSGroup+"/placement-group-id"] = inst.PlacementGroupID
		if inst.PlacementGroupPartition > 0 {
			nc.Labels[karpv1.AWSGroup+"/placement-group-partition"] = strconv.Itoa(int(inst.PlacementGroupPartition))
		}
	}
	// Well-known labels Karpenter sets on every claim it launches.
	nc.Labels[karpv1.AWSGroup+"/instance-tenancy"] = "default" // Dovetail launches shared tenancy only
	if ref := nc.Spec.NodeClassRef; ref != nil {
		nc.Labels[karpv1.LabelNodeClass] = ref.Name
		if id := k.zoneID(ctx, ref.Name, inst.Zone); id != "" {
			nc.Labels[karpv1.LabelTopologyZoneID] = id
		}
	}
	if it != nil {
		for key, v := range it.Labels {
			if _, set := nc.Labels[key]; !set {
				nc.Labels[key] = v
			}
		}
	}
	if err := k.C.Patch(ctx, nc, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("label NodeClaim %s: %w", name, err)
	}
	return k.updateStatus(ctx, name, func(nc *karpv1.NodeClaim) {
		nc.Status.ProviderID = inst.ProviderID
		nc.Status.ImageID = inst.ImageID
		if it != nil {
			nc.Status.Capacity = it.Capacity.DeepCopy()
			nc.Status.Allocatable = it.Allocatable.DeepCopy()
		}
		nc.SetCondition(metav1.Condition{Type: karpv1.ConditionTypeLaunched, Status: metav1.ConditionTrue,
			Reason: "Launched", Message: "instance " + inst.ID})
	})
}

// zoneID maps a zone to its id through the node class's resolved subnets
// ("" when unknown: the label is then left off rather than guessed).
func (k *KubeClaims) zoneID(ctx context.Context, class, zone string) string {
	nc := &awsv1.EC2NodeClass{}
	if err := k.C.Get(ctx, client.ObjectKey{Name: class}, nc); err != nil {
		return ""
	}
	for _, s := range nc.Status.Subnets {
		if s.Zone == zone && s.ZoneID != "" {
			return s.ZoneID
		}
	}
	return ""
}

// labelRegistered puts karpenter.sh/registered (and initialized) on the
// NodeClaim and its Node, and the claim's placement-group partition on the
// Node, as Karpenter does; a Node not found yet is left
// for the next registration pass.
func (k *KubeClaims) labelRegistered(ctx context.Context, name, nodeName string, initialized bool) error {
	want := map[string]string{karpv1.NodeRegisteredLabelKey: "true"}
	if initialized {
		want[karpv1.NodeInitializedLabelKey] = "true"
	}
	for _, obj := range []client.Object{&karpv1.NodeClaim{}, &corev1.Node{}} {
		key := name
		if _, isNode := obj.(*corev1.Node); isNode {
			key = nodeName
		}
		if key == "" {
			continue
		}
		if err := k.C.Get(ctx, client.ObjectKey{Name: key}, obj); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("get %s for labels: %w", key, err)
		}
		labels, missing := obj.GetLabels(), false
		if _, isClaim := obj.(*karpv1.NodeClaim); isClaim {
			// The partition EC2 assigned is known only after launch, so no
			// kubelet flag carries it: the Node gets it from the claim, as
			// Karpenter syncs claim labels at registration.
			if v := labels[karpv1.AWSGroup+"/placement-group-partition"]; v != "" {
				want[karpv1.AWSGroup+"/placement-group-partition"] = v
			}
		}
		for l, v := range want {
			if labels[l] != v {
				missing = true
			}
		}
		if !missing {
			continue
		}
		patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		if labels == nil {
			labels = map[string]string{}
		}
		for l, v := range want {
			labels[l] = v
		}
		obj.SetLabels(labels)
		if err := k.C.Patch(ctx, obj, patch); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("label %s registered: %w", key, err)
		}
	}
	return nil
}

// MarkRegistered implements Claims.
func (k *KubeClaims) MarkRegistered(ctx context.Context, name, nodeName string, initialized bool) error {
	if err := k.labelRegistered(ctx, name, nodeName, initialized); err != nil {
		return err
	}
	return k.updateStatus(ctx, name, func(nc *karpv1.NodeClaim) {
		nc.Status.NodeName = nodeName
		nc.SetCondition(metav1.Condition{Type: karpv1.ConditionTypeRegistered, Status: metav1.ConditionTrue,
			Reason: "Registered", Message: "node " + nodeName})
		if initialized {
			nc.SetCondition(metav1.Condition{Type: karpv1.ConditionTypeInitialized, Status: metav1.ConditionTrue,
				Reason: "Initialized", Message: "node is Ready"})
		}
	})
}

// MarkLaunchFailed implements Claims.
func (k *KubeClaims) MarkLaunchFailed(ctx context.Context, name, reason, message string) error {
	err := k.updateStatus(ctx, name, func(nc *karpv1.NodeClaim) {
		nc.SetCondition(metav1.Condition{Type: karpv1.ConditionTypeLaunched, Status: metav1.ConditionFalse,
			Reason: reason, Message: truncate(message, 1000)})
	})
	if err != nil && strings.Contains(err.Error(), "not found") {
		return nil
	}
	return err
}

// MarkLaunchRetrying implements Claims. A claim already Launched is left
// alone (a late error from a retried call must not hide a launch).
func (k *KubeClaims) MarkLaunchRetrying(ctx context.Context, name, reason, message string) error {
	err := k.updateStatus(ctx, name, func(nc *karpv1.NodeClaim) {
		if nc.IsTrue(karpv1.ConditionTypeLaunched) {
			return
		}
		nc.SetCondition(metav1.Condition{Type: karpv1.ConditionTypeLaunched, Status: metav1.ConditionUnknown,
			Reason: reason, Message: truncate(message, 1000)})
	})
	if err != nil && strings.Contains(err.Error(), "not found") {
		return nil
	}
	return err
}

// Delete implements Claims.
func (k *KubeClaims) Delete(ctx context.Context, name string) error {
	nc := &karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k.C.Delete(ctx, nc); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete NodeClaim %s: %w", name, err)
	}
	return nil
}

// RemoveFinalizer implements Claims.
func (k *KubeClaims) RemoveFinalizer(ctx context.Context, name string) error {
	nc := &karpv1.NodeClaim{}
	if err := k.C.Get(ctx, client.ObjectKey{Name: name}, nc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("get NodeClaim %s: %w", name, err)
	}
	if !controllerutil.ContainsFinalizer(nc, karpv1.TerminationFinalizer) {
		return nil
	}
	base := nc.DeepCopy()
	controllerutil.RemoveFinalizer(nc, karpv1.TerminationFinalizer)
	if err := k.C.Patch(ctx, nc, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizer of NodeClaim %s: %w", name, err)
	}
	return nil
}

// NodeByProviderID implements Claims.
func (k *KubeClaims) NodeByProviderID(ctx context.Context, providerID string) (*corev1.Node, error) {
	var nodes corev1.NodeList
	if err := k.C.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	for i := range nodes.Items {
		if nodes.Items[i].Spec.ProviderID == providerID {
			return &nodes.Items[i], nil
		}
	}
	return nil, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
