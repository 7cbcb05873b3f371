package agent

import (
	"context"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dovetail-dev/dovetail/daemon/imds"
)

// asUser makes the fake API server answer SelfSubjectReviews with user.
func asUser(kc *fake.Clientset, user string, groups ...string) *fake.Clientset {
	kc.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authnv1.SelfSubjectReview{Status: authnv1.SelfSubjectReviewStatus{
			UserInfo: authnv1.UserInfo{Username: user, Groups: groups}}}, nil
	})
	return kc
}

// TestResolveNodeByNodeIdentity: with the kubelet's identity the agent's
// Node is the one its identity names, whatever the hostname says; an
// identity whose Node is another instance's is refused, and a user that is
// not a node identity falls back to the hostname and providerID routes.
func TestResolveNodeByNodeIdentity(t *testing.T) {
	ctx := context.Background()
	id := imds.Identity{InstanceID: "i-1", AvailabilityZone: "us-east-1a", Hostname: "ip-10-0-0-1.ec2.internal"}
	own := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "i-1"}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-1"}}
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-1.ec2.internal"}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-1"}}

	n, err := ResolveNode(ctx, asUser(fake.NewClientset(own, other), "system:node:i-1", "system:nodes", "system:authenticated"), "", id)
	if err != nil || n.Name != "i-1" {
		t.Fatalf("node identity i-1 resolved %v, %v", n, err)
	}
	wrong := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "i-2"}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-2"}}
	if n, err := ResolveNode(ctx, asUser(fake.NewClientset(wrong, other), "system:node:i-2", "system:nodes"), "", id); err == nil {
		t.Fatalf("node identity of instance i-2 resolved %s on instance i-1", n.Name)
	}
	// Not in system:nodes: not a node identity, the hostname route wins.
	n, err = ResolveNode(ctx, asUser(fake.NewClientset(own, other), "system:node:i-1"), "", id)
	if err != nil || n.Name != "ip-10-0-0-1.ec2.internal" {
		t.Fatalf("user outside system:nodes resolved %v, %v", n, err)
	}
}
