package devcluster

import (
	"fmt"
	"sort"
	"strings"
	"time"

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
	// disruptedTaintKey is the taint the coordinator puts on a node before
	// it drains it (karpenter.sh/disrupted).
	disruptedTaintKey = "karpenter.sh/disrupted"
)

// demoState is one observation of the demo pool: what the simulator, the
// API server and the coordinators see. Built by observeDemo from plain
// lists, so it is tested without a cluster.
type demoState struct {
	Claims       int
	Replacements map[string]bool // NodeClaim names carrying the disruption key
	// ClaimNode maps a NodeClaim to its status.nodeName (once registered).
	ClaimNode map[string]string
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
	s := demoState{Replacements: map[string]bool{}, ClaimNode: map[string]string{}, ByAMI: map[string]int{}, PodsOn: map[string]int{},
		Live: map[string]ec2sim.InstanceInfo{}, NodeByName: map[string]corev1.Node{}}
	for _, c := range claims {
		if c.GetLabels()["karpenter.sh/nodepool"] != demoPool || c.GetDeletionTimestamp() != nil {
			continue
		}
		s.Claims++
		if _, ok := c.GetAnnotations()[disruptionKeyAnnotation]; ok {
			s.Replacements[c.GetName()] = true
		}
		if node, _, _ := unstructured.NestedString(c.Object, "status", "nodeName"); node != "" {
			s.ClaimNode[c.GetName()] = node
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

// ready reports whether the named node is a Node of the pool with Ready=True.
func (s demoState) ready(name string) bool {
	n, ok := s.NodeByName[name]
	if !ok {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// disrupted reports whether the node is cordoned or carries the
// coordinator's karpenter.sh/disrupted taint (the start of its drain).
func (s demoState) disrupted(name string) bool {
	n, ok := s.NodeByName[name]
	if !ok {
		return false
	}
	if n.Spec.Unschedulable {
		return true
	}
	for _, t := range n.Spec.Taints {
		if t.Key == disruptedTaintKey {
			return true
		}
	}
	return false
}

// rebalanceProgress follows step (r) over successive observations: a
// replacement NodeClaim that was not there before, its node Ready, then
// (never earlier) the old node cordoned, emptied and its instance gone.
// Each observation is one consistent list of Nodes, so "cordoned while the
// replacement is not Ready" is seen if it happens at a poll.
type rebalanceProgress struct {
	node   string // the node that got the recommendation
	victim ec2sim.InstanceInfo
	before map[string]bool // replacement NodeClaims before the step

	replacement, replNode string
	replInstance          ec2sim.InstanceInfo
	// Times since the recommendation (0: not yet).
	replaced, ready, cordoned, drained, gone time.Duration
	// violation says what went against replacement-first, if anything.
	violation string
}

// see takes one observation made at elapsed and returns the lines to print.
func (p *rebalanceProgress) see(s demoState, elapsed time.Duration) []string {
	var out []string
	if p.replacement == "" {
		var names []string
		for name := range s.Replacements {
			if !p.before[name] {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		if len(names) > 0 {
			p.replacement, p.replaced = names[0], elapsed
			out = append(out, fmt.Sprintf("coordinator launched replacement NodeClaim %s", p.replacement))
		}
	}
	if p.replacement != "" && p.replNode == "" {
		p.replNode = s.ClaimNode[p.replacement]
	}
	replReady := p.replNode != "" && s.ready(p.replNode)
	if replReady && p.ready == 0 {
		p.ready = elapsed
		p.replInstance = s.Live[p.replNode]
		out = append(out, fmt.Sprintf("replacement %s Ready (node %s, %s in %s, %s)", p.replacement, p.replNode,
			p.replInstance.InstanceType, p.replInstance.Zone, p.replInstance.CapacityType))
		if p.replInstance.InstanceType == p.victim.InstanceType && p.replInstance.Zone == p.victim.Zone && p.replInstance.CapacityType == p.victim.CapacityType {
			p.violation = fmt.Sprintf("the replacement runs on the recommended offering %s/%s/%s", p.victim.InstanceType, p.victim.Zone, p.victim.CapacityType)
		}
	}
	if p.cordoned == 0 && s.disrupted(p.node) {
		p.cordoned = elapsed
		if !replReady {
			p.violation = fmt.Sprintf("%s was cordoned while its replacement was not Ready", p.node)
			out = append(out, p.violation)
		} else {
			out = append(out, fmt.Sprintf("coordinator tainted and cordoned %s (its replacement is Ready): draining", p.node))
		}
	}
	if p.cordoned > 0 && p.drained == 0 && s.PodsOn[p.node] == 0 {
		p.drained = elapsed
		out = append(out, fmt.Sprintf("%s drained (no demo pods left)", p.node))
	}
	if _, live := s.Live[p.node]; !live && p.gone == 0 {
		p.gone = elapsed
		if p.cordoned == 0 && p.ready > 0 {
			// Cordon, drain and deletion all fell between two polls (they
			// take about a second): after the replacement was seen Ready.
			p.cordoned, p.drained = elapsed, elapsed
			out = append(out, fmt.Sprintf("%s cordoned, drained and deleted between two polls, after its replacement was Ready", p.node))
		}
		out = append(out, fmt.Sprintf("instance %s is gone (its NodeClaim deleted)", p.victim.ID))
		if p.ready == 0 && p.violation == "" {
			p.violation = fmt.Sprintf("instance %s went before any replacement was Ready", p.victim.ID)
		}
	}
	return out
}

// done: the whole sequence happened and want pods run again.
func (p *rebalanceProgress) done(s demoState, want int) bool {
	return p.ready > 0 && p.drained > 0 && p.gone > 0 && s.PodsRunning >= want && s.Pods == want
}

// missing says what did not happen.
func (p *rebalanceProgress) missing(s demoState, want int) string {
	var m []string
	if p.violation != "" {
		m = append(m, p.violation)
	}
	if p.replacement == "" {
		m = append(m, "no replacement NodeClaim (see .dev/cluster/logs/coordinator-*.log, component=disruption)")
	} else if p.ready == 0 {
		m = append(m, "replacement "+p.replacement+" never Ready")
	}
	if p.cordoned == 0 {
		m = append(m, p.node+" never cordoned")
	} else if p.drained == 0 {
		m = append(m, fmt.Sprintf("%d demo pods still on %s", s.PodsOn[p.node], p.node))
	}
	if p.gone == 0 {
		m = append(m, "instance "+p.victim.ID+" still runs")
	}
	return strings.Join(append(m, fmt.Sprintf("%d/%d pods running", s.PodsRunning, want)), "; ")
}
