package devcluster

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/daemon/agent"
)

// Names the demo creates.
const (
	demoPool       = "demo"
	demoDeployment = "dovetail-demo"
	demoNamespace  = "default"
	demoAppLabel   = "app"
	// agentComponent is what the agent's drain writes into the node's
	// cordoned-by annotation: the cordon after a spot notice was the agent's.
	agentComponent = agent.Component
	// disruptionKeyAnnotation marks NodeClaims the coordinator launched as
	// replacements (interruption, drift, consolidation): the value of
	// coordinator/wiring.AnnotationDisruptionKey, not imported so the CLI
	// does not link the coordinator's controllers.
	disruptionKeyAnnotation = "dovetail.dev/disruption-key"
)

// demoState is one observation of the demo pool: what the simulator, the
// API server and the coordinators see. Built by observeDemo from plain
// lists, so it is tested without a cluster.
type demoState struct {
	Claims       int
	Replacements map[string]bool // NodeClaim names carrying the disruption key
	// Instances are the pool's live (pending or running) instances.
	Instances, Spot int
	// ByAMI counts live instances per image ID.
	ByAMI map[string]int
	// ShuttingDown counts the pool's instances on their way out.
	ShuttingDown          int
	Nodes, Ready, Cordons int
	PodsRunning, Pods     int
	// PodsOn counts the demo's running (or still placed) pods per node.
	PodsOn map[string]int
	// EmptyNodes are running instances' nodes with none of the demo's pods.
	EmptyNodes []string
	// Live maps node name to its live instance.
	Live map[string]ec2sim.InstanceInfo
	// NodeByName are the pool's Nodes.
	NodeByName map[string]corev1.Node
}

// observeDemo builds a demoState. Instances belong to the pool by the tag
// the launcher puts on them; Nodes belong by name (the simulator names a
// Node after its instance's private DNS name).
func observeDemo(instances []ec2sim.InstanceInfo, nodes []corev1.Node, pods []corev1.Pod, claims []unstructured.Unstructured) demoState {
	s := demoState{Replacements: map[string]bool{}, ByAMI: map[string]int{}, PodsOn: map[string]int{},
		Live: map[string]ec2sim.InstanceInfo{}, NodeByName: map[string]corev1.Node{}}
	for _, c := range claims {
		if c.GetLabels()["karpenter.sh/nodepool"] != demoPool || c.GetDeletionTimestamp() != nil {
			continue
		}
		s.Claims++
		if _, ok := c.GetAnnotations()[disruptionKeyAnnotation]; ok {
			s.Replacements[c.GetName()] = true
		}
	}
	for _, in := range instances {
		if in.Tags[cloud.TagNodePool] != demoPool {
			continue
		}
		switch in.State {
		case "pending", "running":
			s.Instances++
			if in.CapacityType == "spot" {
				s.Spot++
			}
			s.ByAMI[in.ImageID]++
			if in.PrivateDNS != "" {
				s.Live[in.PrivateDNS] = in
			}
		case "shutting-down":
			s.ShuttingDown++
		}
	}
	for _, n := range nodes {
		if _, ok := s.Live[n.Name]; !ok && n.Labels["karpenter.sh/nodepool"] != demoPool {
			continue
		}
		s.Nodes++
		s.NodeByName[n.Name] = n
		if n.Spec.Unschedulable {
			s.Cordons++
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				s.Ready++
			}
		}
	}
	for _, p := range pods {
		if p.Labels[demoAppLabel] != demoDeployment || p.DeletionTimestamp != nil {
			continue
		}
		s.Pods++
		if p.Status.Phase == corev1.PodRunning {
			s.PodsRunning++
		}
		if p.Spec.NodeName != "" {
			s.PodsOn[p.Spec.NodeName]++
		}
	}
	for name, in := range s.Live {
		if in.State == "running" && s.PodsOn[name] == 0 {
			if _, isNode := s.NodeByName[name]; isNode {
				s.EmptyNodes = append(s.EmptyNodes, name)
			}
		}
	}
	sort.Strings(s.EmptyNodes)
	return s
}

// line is the progress line printed when the observation changes.
func (s demoState) line() string {
	parts := []string{
		fmt.Sprintf("nodeclaims %d", s.Claims),
		fmt.Sprintf("instances %d (%d spot)", s.Instances, s.Spot),
		fmt.Sprintf("nodes %d/%d ready", s.Ready, s.Nodes),
		fmt.Sprintf("pods %d/%d running", s.PodsRunning, s.Pods),
	}
	if s.Cordons > 0 {
		parts = append(parts, fmt.Sprintf("%d cordoned", s.Cordons))
	}
	if s.ShuttingDown > 0 {
		parts = append(parts, fmt.Sprintf("%d shutting down", s.ShuttingDown))
	}
	return strings.Join(parts, " · ")
}

// onAMIs counts live instances running one of ids.
func (s demoState) onAMIs(ids map[string]bool) int {
	n := 0
	for id, c := range s.ByAMI {
		if ids[id] {
			n += c
		}
	}
	return n
}

// pickSpotVictim chooses the spot instance to interrupt: a Ready,
// schedulable node of the pool running the most demo pods (so the drain is
// visible), ties by name. ok is false when the pool has no such node.
func (s demoState) pickSpotVictim() (ec2sim.InstanceInfo, bool) {
	var best ec2sim.InstanceInfo
	bestPods := 0
	names := make([]string, 0, len(s.Live))
	for name := range s.Live {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		in := s.Live[name]
		n, ok := s.NodeByName[name]
		if !ok || in.CapacityType != "spot" || in.State != "running" || in.SpotAction != nil || n.Spec.Unschedulable {
			continue
		}
		if s.PodsOn[name] > bestPods {
			best, bestPods = in, s.PodsOn[name]
		}
	}
	return best, bestPods > 0
}
