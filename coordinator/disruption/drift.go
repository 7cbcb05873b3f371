package disruption

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/coordinator/drifthash"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// DriftKind says what drifted.
type DriftKind string

// Kinds of drift.
const (
	DriftRequirements  DriftKind = "Requirements"
	DriftTemplateHash  DriftKind = "NodePoolHash"
	DriftNodeClassHash DriftKind = "NodeClassHash"
	DriftAMI           DriftKind = "AMI"
	DriftSubnet        DriftKind = "Subnet"
	DriftSecurityGroup DriftKind = "SecurityGroup"
)

// Drift checks a node against its NodePool and NodeClass and returns what
// drifted and a human-readable detail, or "" when the node still matches.
func Drift(n *Node, pool *Pool, class *NodeClass) (DriftKind, string) {
	if pool != nil {
		for _, r := range pool.Requirements {
			if ok, why := satisfies(n.Labels, r); !ok {
				return DriftRequirements, why
			}
		}
		if pool.TemplateHash != "" && n.Annotations[AnnotationNodePoolHashVer] == drifthash.HashVersion {
			if h := n.Annotations[AnnotationNodePoolHash]; h != "" && h != pool.TemplateHash {
				return DriftTemplateHash, fmt.Sprintf("NodePool template changed (hash %s, node has %s)", pool.TemplateHash, h)
			}
		}
	}
	if class == nil {
		return "", ""
	}
	if class.Hash != "" {
		if h := n.Annotations[AnnotationNodeClassHash]; h != "" && h != class.Hash {
			return DriftNodeClassHash, fmt.Sprintf("EC2NodeClass %s changed (hash %s, node has %s)", class.Name, class.Hash, h)
		}
	}
	// A NodeClass that resolved nothing is broken, not a reason to replace
	// the fleet: only compare against non-empty resolutions.
	if len(class.AMIs) > 0 && n.ImageID != "" && !slices.ContainsFunc(class.AMIs, func(a AMIRef) bool { return a.ID == n.ImageID }) {
		return DriftAMI, fmt.Sprintf("AMI %s is no longer resolved by EC2NodeClass %s (now %s)", n.ImageID, class.Name, amiList(class))
	}
	if len(class.Subnets) > 0 && n.SubnetID != "" && !slices.Contains(class.Subnets, n.SubnetID) {
		return DriftSubnet, fmt.Sprintf("subnet %s is no longer selected by EC2NodeClass %s", n.SubnetID, class.Name)
	}
	if len(class.SecurityGroups) > 0 && len(n.SecurityGroups) > 0 && !sameSet(class.SecurityGroups, n.SecurityGroups) {
		return DriftSecurityGroup, fmt.Sprintf("security groups %v differ from EC2NodeClass %s's %v", n.SecurityGroups, class.Name, class.SecurityGroups)
	}
	return "", ""
}

func amiList(c *NodeClass) string {
	ids := make([]string, len(c.AMIs))
	for i, a := range c.AMIs {
		ids[i] = a.ID
	}
	return strings.Join(ids, ",")
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x := slices.Clone(a)
	y := slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// satisfies checks one NodePool requirement against a node's labels.
func satisfies(labels map[string]string, r corev1.NodeSelectorRequirement) (bool, string) {
	v, has := labels[r.Key]
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		if has && slices.Contains(r.Values, v) {
			return true, ""
		}
		if !has {
			return false, fmt.Sprintf("label %s missing, NodePool requires one of %v", r.Key, r.Values)
		}
		return false, fmt.Sprintf("%s=%s, NodePool now requires one of %v", r.Key, v, r.Values)
	case corev1.NodeSelectorOpNotIn:
		if has && slices.Contains(r.Values, v) {
			return false, fmt.Sprintf("%s=%s, NodePool now excludes %v", r.Key, v, r.Values)
		}
	case corev1.NodeSelectorOpExists:
		if !has {
			return false, fmt.Sprintf("label %s missing, NodePool requires it", r.Key)
		}
	case corev1.NodeSelectorOpDoesNotExist:
		if has {
			return false, fmt.Sprintf("label %s=%s present, NodePool requires it absent", r.Key, v)
		}
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt, "Gte", "Lte":
		if !has || len(r.Values) != 1 {
			return false, fmt.Sprintf("label %s missing for %s %v", r.Key, r.Operator, r.Values)
		}
		nv, err1 := strconv.ParseInt(v, 10, 64)
		rv, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false, fmt.Sprintf("%s=%s not comparable with %s %s", r.Key, v, r.Operator, r.Values[0])
		}
		if (r.Operator == corev1.NodeSelectorOpGt && nv <= rv) || (r.Operator == corev1.NodeSelectorOpLt && nv >= rv) ||
			(r.Operator == "Gte" && nv < rv) || (r.Operator == "Lte" && nv > rv) {
			return false, fmt.Sprintf("%s=%s, NodePool now requires %s %s", r.Key, v, r.Operator, r.Values[0])
		}
	}
	return true, ""
}

// drift: drifted nodes are replaced (replacement first) inside the Drifted
// budgets; AMI drift goes through the pool's rollout, which can be halted.
func (p *planner) drift() {
	for _, pool := range p.sortedPools() {
		class := p.classes[pool.NodeClass]
		ro := p.rollout(pool, class)
		nodes := append([]*Node(nil), p.byPool[pool.Name]...)
		// Oldest first: they have the least life left anyway.
		sort.SliceStable(nodes, func(i, j int) bool {
			if !nodes[i].Created.Equal(nodes[j].Created) {
				return nodes[i].Created.Before(nodes[j].Created)
			}
			return nodes[i].Name < nodes[j].Name
		})
		surge := -1 // computed lazily
		for _, n := range nodes {
			kind, detail := Drift(n, pool, class)
			if kind == "" || p.taken[n.Name] {
				continue
			}
			if code, why := blocked(n, false); code != "" {
				p.skip(n, ReasonDrifted, code, "drifted (%s) but %s", detail, why)
				continue
			}
			if kind == DriftAMI && ro != nil && ro.Paused {
				p.skip(n, ReasonDrifted, SkipRolloutHalted, "drifted (%s) but the rollout of NodePool %s is halted: %s", detail, pool.Name, ro.BlockedReason)
				continue
			}
			if surge < 0 {
				surge = p.unreadyMovedPods(pool)
			}
			if surge > 0 {
				p.skip(n, ReasonDrifted, SkipSurge, "drifted (%s) but %d recently moved pod(s) are not Ready yet", detail, surge)
				p.setBlocked(ro, fmt.Sprintf("waiting for %d moved pod(s) to become Ready", surge))
				continue
			}
			allowed, lim := p.allowance(pool, ReasonDrifted)
			if allowed <= 0 {
				p.skip(n, ReasonDrifted, SkipBudget, "drifted (%s) but blocked by %s (%d disrupting, max %d)", detail, lim.Budget, p.poolDisrupting[pool.Name], lim.Max)
				p.setBlocked(ro, "disruption budget: "+lim.Budget)
				continue
			}
			p.decide(Decision{Reason: ReasonDrifted, Pool: pool.Name, Nodes: []string{n.Name}, NodeClaims: []string{n.NodeClaim},
				Replacement: sameAs(n, pool), Budget: lim.Budget, DrainUntil: drainUntil(pool, p.now),
				Message: fmt.Sprintf("drifted: %s: %s", kind, detail)})
		}
		p.commitRollout(pool, ro)
	}
	p.forgetRollouts()
}

// forgetRollouts drops the rollout records of NodePools that no longer
// exist, so the replicated state holds rollouts only for live pools.
func (p *planner) forgetRollouts() {
	live := make(map[string]bool, len(p.s.Pools))
	for i := range p.s.Pools {
		live[p.s.Pools[i].Name] = true
	}
	names := make([]string, 0, len(p.s.Rollouts))
	for name := range p.s.Rollouts {
		if !live[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		p.plan.Commands = append(p.plan.Commands, fsm.RolloutDelete{NodePool: name})
	}
}

// unreadyMovedPods counts pods that were created within SurgeTimeout (so
// were probably moved by a disruption) and are not Ready yet, on the pool's
// nodes or pending. While there are any, the next drifted node waits: a
// rolling replacement surges one step at a time.
func (p *planner) unreadyMovedPods(pool *Pool) int {
	count := 0
	recent := func(pod *Pod) bool {
		return !pod.Stays && !pod.Ready && !pod.Created.IsZero() && p.now.Sub(pod.Created) < p.o.SurgeTimeout
	}
	for _, n := range p.byPool[pool.Name] {
		for i := range n.Pods {
			if recent(&n.Pods[i]) {
				count++
			}
		}
	}
	for i := range p.s.PendingPods {
		if recent(&p.s.PendingPods[i]) {
			count++
		}
	}
	return count
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}
