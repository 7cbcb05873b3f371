package devcluster

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

var (
	nodePoolsGVR  = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}
	nodeClaimsGVR = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}
)

type summarizer struct {
	kube kubernetes.Interface
	dyn  dynamic.Interface
}

func newSummarizer(cfg *rest.Config) (*summarizer, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	return &summarizer{kube: kube, dyn: dyn}, nil
}

// summary is one line: "nodes 3/3 ready · pods 12 running, 2 pending · nodeclaims 3 · nodepools 2".
func (s *summarizer) summary(ctx context.Context) (string, error) {
	nodes, err := s.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list nodes: %w", err)
	}
	pods, err := s.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list pods: %w", err)
	}
	return formatSummary(nodes.Items, pods.Items, s.count(ctx, nodeClaimsGVR), s.count(ctx, nodePoolsGVR)), nil
}

// count is -1 when the resource cannot be listed (CRDs not installed).
func (s *summarizer) count(ctx context.Context, gvr schema.GroupVersionResource) int {
	l, err := s.dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
	if err != nil {
		return -1
	}
	return len(l.Items)
}

func formatSummary(nodes []corev1.Node, pods []corev1.Pod, nodeClaims, nodePools int) string {
	ready := 0
	for _, n := range nodes {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	phases := map[string]int{}
	for _, p := range pods {
		phase := strings.ToLower(string(p.Status.Phase))
		if phase == "" {
			phase = "pending"
		}
		if p.DeletionTimestamp != nil {
			phase = "terminating"
		}
		phases[phase]++
	}
	var ps []string
	for _, k := range []string{"running", "pending", "terminating", "succeeded", "failed", "unknown"} {
		if n := phases[k]; n > 0 {
			ps = append(ps, fmt.Sprintf("%d %s", n, k))
			delete(phases, k)
		}
	}
	var rest []string
	for k := range phases {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	for _, k := range rest {
		ps = append(ps, fmt.Sprintf("%d %s", phases[k], k))
	}
	podPart := "pods 0"
	if len(ps) > 0 {
		podPart = "pods " + strings.Join(ps, ", ")
	}
	parts := []string{fmt.Sprintf("nodes %d/%d ready", ready, len(nodes)), podPart}
	if nodeClaims >= 0 {
		parts = append(parts, fmt.Sprintf("nodeclaims %d", nodeClaims))
	}
	if nodePools >= 0 {
		parts = append(parts, fmt.Sprintf("nodepools %d", nodePools))
	}
	return strings.Join(parts, " · ")
}
