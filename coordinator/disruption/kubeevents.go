package disruption

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

// KubeEvents implements Events with a Kubernetes EventRecorder, on the
// objects Karpenter records them on. The UID lookups (informers) are
// optional: an object not seen yet, such as a replacement NodeClaim just
// created, is referred to by name, which `kubectl get events
// --field-selector involvedObject.name=...` and `kubectl describe` match.
type KubeEvents struct {
	Recorder     record.EventRecorder
	NodeUID      func(name string) ktypes.UID
	NodeClaimUID func(name string) ktypes.UID
	NodePoolUID  func(name string) ktypes.UID
}

// NodeEvent implements Events.
func (e KubeEvents) NodeEvent(_ context.Context, node, eventType, reason, message string) {
	uid := ktypes.UID(node) // the kubelet's convention for Node events
	if e.NodeUID != nil {
		if u := e.NodeUID(node); u != "" {
			uid = u
		}
	}
	e.Recorder.Event(&corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: node, UID: uid}, eventType, reason, message)
}

// NodeClaimEvent implements Events.
func (e KubeEvents) NodeClaimEvent(_ context.Context, nodeClaim, eventType, reason, message string) {
	ref := &corev1.ObjectReference{APIVersion: karpv1.SchemeGroupVersion.String(), Kind: "NodeClaim", Name: nodeClaim}
	if e.NodeClaimUID != nil {
		ref.UID = e.NodeClaimUID(nodeClaim)
	}
	e.Recorder.Event(ref, eventType, reason, message)
}

// NodePoolEvent implements Events.
func (e KubeEvents) NodePoolEvent(_ context.Context, nodePool, eventType, reason, message string) {
	ref := &corev1.ObjectReference{APIVersion: karpv1.SchemeGroupVersion.String(), Kind: "NodePool", Name: nodePool}
	if e.NodePoolUID != nil {
		ref.UID = e.NodePoolUID(nodePool)
	}
	e.Recorder.Event(ref, eventType, reason, message)
}
