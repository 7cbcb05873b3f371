package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/daemon/imds"
)

// ResolveNode finds this instance's Node. The name kubelet registered may
// be the IMDS local-hostname, its short form, the instance ID (EKS with
// resource names), or anything an operator chose; the providerID is the
// one thing that is always right. Order: an explicit name (checked against
// the providerID when both are known), the hostname forms and the instance
// ID by name, then a scan for the providerID.
func ResolveNode(ctx context.Context, kc kubernetes.Interface, explicit string, id imds.Identity) (*corev1.Node, error) {
	want := ""
	if id.InstanceID != "" && id.AvailabilityZone != "" {
		want = id.ProviderID()
	}
	matches := func(n *corev1.Node) bool {
		if want == "" || n.Spec.ProviderID == "" {
			return true // nothing to compare (no IMDS, or kubelet not yet set it)
		}
		return providerInstance(n.Spec.ProviderID) == id.InstanceID
	}
	if explicit != "" {
		n, err := kc.CoreV1().Nodes().Get(ctx, explicit, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("node %q (from --node-name): %w", explicit, err)
		}
		if !matches(n) {
			return nil, fmt.Errorf("node %q has providerID %q, but this instance is %s", explicit, n.Spec.ProviderID, want)
		}
		return n, nil
	}
	// An agent acting with its node's own identity (the kubelet's
	// kubeconfig: system:node:<name>) knows its Node's name, and may read
	// no other Node.
	if name := nodeIdentity(ctx, kc); name != "" {
		n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("node %q (this agent's identity %s%s): %w", name, nodeUserPrefix, name, err)
		}
		if !matches(n) {
			return nil, fmt.Errorf("node %q (this agent's identity) has providerID %q, but this instance is %s", name, n.Spec.ProviderID, want)
		}
		return n, nil
	}
	var candidates []string
	if id.Hostname != "" {
		candidates = append(candidates, id.Hostname)
		if short, _, found := strings.Cut(id.Hostname, "."); found {
			candidates = append(candidates, short)
		}
	}
	if id.InstanceID != "" {
		candidates = append(candidates, id.InstanceID)
	}
	for _, name := range candidates {
		n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			continue // not there, or another node's (a node identity may not read it)
		}
		if err != nil {
			return nil, fmt.Errorf("get node %q: %w", name, err)
		}
		if matches(n) {
			return n, nil
		}
	}
	if want == "" {
		return nil, fmt.Errorf("no node named %v and no instance identity to search by", candidates)
	}
	list, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	for i := range list.Items {
		if providerInstance(list.Items[i].Spec.ProviderID) == id.InstanceID {
			return &list.Items[i], nil
		}
	}
	return nil, fmt.Errorf("no node has providerID %s (tried names %v)", want, candidates)
}

// nodeUserPrefix is how the API server names a node's identity.
const nodeUserPrefix = "system:node:"

// nodeIdentity is the node name in the client's identity when it is a node
// identity (system:node:<name> in system:nodes), else "". It asks the API
// server (SelfSubjectReview, GA since 1.28); a server that cannot answer
// leaves the name to be found by the other routes.
func nodeIdentity(ctx context.Context, kc kubernetes.Interface) string {
	r, err := kc.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || r == nil {
		return ""
	}
	u := r.Status.UserInfo
	name, ok := strings.CutPrefix(u.Username, nodeUserPrefix)
	if !ok || name == "" || !slices.Contains(u.Groups, "system:nodes") {
		return ""
	}
	return name
}

// providerInstance is the instance ID at the end of aws:///zone/i-xxx.
func providerInstance(pid string) string {
	if !strings.HasPrefix(pid, "aws://") {
		return ""
	}
	return pid[strings.LastIndexByte(pid, '/')+1:]
}
