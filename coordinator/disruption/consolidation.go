package disruption

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

// Consolidation, in order of least disruption for the saving:
//  1. empty nodes are deleted (Empty budgets), one decision per pool;
//  2. underutilized nodes whose pods all fit on the remaining nodes are
//     deleted, emptiest first, each deletion simulated before the next;
//  3. several underutilized nodes are replaced by one cheaper node
//     (multi-node, binary search on how many, as Karpenter does);
//  4. a single underutilized node is replaced by one cheaper node.
//
// The fit simulation is resource-based (CPU, memory, pod slots,
// accelerators) and honours node selectors and taints; pending pods and pods
// of nodes already being disrupted are placed first so their room is kept.

// simNode is a node in the fit simulation.
type simNode struct {
	n         *Node
	free      Resources
	removed   bool // chosen for removal in this pass
	receiving bool // receives pods in this pass: not removed in the same pass
	target    bool // may receive pods (Ready, initialized, not going away)
	tainted   bool // has NoSchedule/NoExecute taints to check
}

type placement struct {
	node int
	req  Resources
}

type sim struct {
	nodes []simNode
	order []int // targets, fullest first
	index map[string]int
}

func utilization(n *Node, free Resources) float64 {
	u := 0.0
	if n.Allocatable.MilliCPU > 0 {
		u = float64(n.Allocatable.MilliCPU-free.MilliCPU) / float64(n.Allocatable.MilliCPU)
	}
	if n.Allocatable.Memory > 0 {
		u = max(u, float64(n.Allocatable.Memory-free.Memory)/float64(n.Allocatable.Memory))
	}
	return u
}

func (p *planner) newSim() *sim {
	s := &sim{nodes: make([]simNode, len(p.s.Nodes)), index: make(map[string]int, len(p.s.Nodes))}
	for i := range p.s.Nodes {
		n := &p.s.Nodes[i]
		free := n.Allocatable
		for j := range n.Pods {
			free = free.Sub(n.Pods[j].Requests)
		}
		sn := simNode{n: n, free: free}
		sn.target = n.Ready && n.Initialized && !n.Deleting && !p.taken[n.Name] && n.Interruption == nil && n.Unhealthy == nil
		for _, t := range n.Taints {
			if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
				sn.tainted = true
			}
		}
		s.nodes[i] = sn
		s.index[n.Name] = i
		if sn.target {
			s.order = append(s.order, i)
		}
	}
	sort.SliceStable(s.order, func(a, b int) bool {
		x, y := &s.nodes[s.order[a]], &s.nodes[s.order[b]]
		return utilization(x.n, x.free) > utilization(y.n, y.free)
	})
	// Keep room for pods that are looking for a home: pending ones and
	// those on nodes already being disrupted. Pods that fit nowhere are
	// the provisioner's business.
	var homeless []*Pod
	for i := range p.s.PendingPods {
		homeless = append(homeless, &p.s.PendingPods[i])
	}
	for i := range p.s.Nodes {
		n := &p.s.Nodes[i]
		if p.taken[n.Name] {
			for j := range n.Pods {
				if !n.Pods[j].Stays {
					homeless = append(homeless, &n.Pods[j])
				}
			}
		}
	}
	sortPodsLargestFirst(homeless)
	for _, pod := range homeless {
		if t := s.find(pod, nil); t >= 0 {
			s.nodes[t].free = s.nodes[t].free.Sub(pod.Requests)
		}
	}
	return s
}

// fits reports whether pod may be placed on sn.
func (s *sim) fits(pod *Pod, sn *simNode) bool {
	if sn.removed || !sn.target || !sn.free.Fits(pod.Requests) {
		return false
	}
	for k, v := range pod.NodeSelector {
		if sn.n.Labels[k] != v {
			return false
		}
	}
	if sn.tainted {
		for i := range sn.n.Taints {
			t := &sn.n.Taints[i]
			if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
				continue
			}
			ok := false
			for j := range pod.Tolerations {
				if scheduling.ToleratesTaint(&pod.Tolerations[j], t) {
					ok = true
					break
				}
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

// find returns the fullest target node pod fits on, skipping excluded ones.
func (s *sim) find(pod *Pod, exclude map[int]bool) int {
	for _, i := range s.order {
		if exclude[i] {
			continue
		}
		if s.fits(pod, &s.nodes[i]) {
			return i
		}
	}
	return -1
}

// moveOut places the moving pods of the group on other nodes. It applies the
// placements it made and returns them with the pods that did not fit; the
// caller undoes them with undo when it does not go ahead.
func (s *sim) moveOut(group []int) (placed []placement, leftover []*Pod) {
	exclude := make(map[int]bool, len(group))
	var pods []*Pod
	for _, g := range group {
		exclude[g] = true
		n := s.nodes[g].n
		for j := range n.Pods {
			if !n.Pods[j].Stays {
				pods = append(pods, &n.Pods[j])
			}
		}
	}
	sortPodsLargestFirst(pods)
	for _, pod := range pods {
		t := s.find(pod, exclude)
		if t < 0 {
			leftover = append(leftover, pod)
			continue
		}
		s.nodes[t].free = s.nodes[t].free.Sub(pod.Requests)
		placed = append(placed, placement{t, pod.Requests})
	}
	return placed, leftover
}

func (s *sim) undo(placed []placement) {
	for _, pl := range placed {
		s.nodes[pl.node].free = s.nodes[pl.node].free.Add(pl.req)
	}
}

func (s *sim) commit(group []int, placed []placement) {
	for _, g := range group {
		s.nodes[g].removed = true
	}
	for _, pl := range placed {
		s.nodes[pl.node].receiving = true
	}
}

func sortPodsLargestFirst(pods []*Pod) {
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i].Requests, pods[j].Requests
		if a.MilliCPU != b.MilliCPU {
			return a.MilliCPU > b.MilliCPU
		}
		return a.Memory > b.Memory
	})
}

// offer is one way to launch a replacement.
type offer struct {
	it     *cloud.InstanceType
	alloc  Resources
	labels map[string]string // type labels + zone + capacity type
	zone   string
	ct     string
	price  float64
}

// ResourcesOf converts a Kubernetes resource list.
func ResourcesOf(l corev1.ResourceList) Resources {
	q := func(name corev1.ResourceName) resource.Quantity { return l[name] }
	cpu, mem, pods := q(corev1.ResourceCPU), q(corev1.ResourceMemory), q(corev1.ResourcePods)
	gpu, neuron := q("nvidia.com/gpu"), q("aws.amazon.com/neuron")
	amd := q("amd.com/gpu")
	return Resources{MilliCPU: cpu.MilliValue(), Memory: mem.Value(), Pods: pods.Value(), Accel: gpu.Value() + neuron.Value() + amd.Value()}
}

// poolTypes are the instance types a pool's nodes can be: its
// EC2NodeClass's (the narrowing provisioning applies), else the shared list.
func (p *planner) poolTypes(pool *Pool) []cloud.InstanceType {
	if l, ok := p.s.ClassInstanceTypes[pool.NodeClass]; ok && pool.NodeClass != "" {
		return l
	}
	return p.s.InstanceTypes
}

// offers lists, cheapest first, the launchable offerings the pool allows.
func (p *planner) offers(pool *Pool) []offer {
	if p.offerCache == nil {
		p.offerCache = map[string][]offer{}
	}
	if o, ok := p.offerCache[pool.Name]; ok {
		return o
	}
	var out []offer
	types := p.poolTypes(pool)
	for i := range types {
		it := &types[i]
		alloc := ResourcesOf(it.Allocatable)
		for _, of := range it.Offerings {
			if !of.Available || of.Price <= 0 {
				continue
			}
			labels := make(map[string]string, len(it.Labels)+3)
			maps.Copy(labels, it.Labels)
			labels[LabelZone] = of.Zone
			labels[LabelCapacity] = of.CapacityType
			labels[LabelType] = it.Name
			labels[LabelNodePool] = pool.Name // nodes of a pool carry its name
			maps.Copy(labels, pool.Labels)
			ok := true
			for _, r := range pool.Requirements {
				if good, _ := satisfies(labels, r); !good {
					ok = false
					break
				}
			}
			if ok {
				out = append(out, offer{it: it, alloc: alloc, labels: labels, zone: of.Zone, ct: of.CapacityType, price: of.Price})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].price < out[j].price })
	p.offerCache[pool.Name] = out
	return out
}

// cheaper finds launch options for one node holding need (and pods with
// selectors), strictly cheaper than limit and not of the excluded type.
func (p *planner) cheaper(pool *Pool, need Resources, pods []*Pod, limit float64, excludeType string) []cloud.LaunchOption {
	var opts []cloud.LaunchOption
	for i := range p.offers(pool) {
		of := &p.offers(pool)[i]
		if of.price >= limit {
			break
		}
		if of.it.Name == excludeType || !of.alloc.Fits(need) {
			continue
		}
		ok := true
		for _, pod := range pods {
			for k, v := range pod.NodeSelector {
				if of.labels[k] != v {
					ok = false
				}
			}
		}
		if !ok {
			continue
		}
		opts = append(opts, cloud.LaunchOption{InstanceType: of.it.Name, Zone: of.zone, CapacityType: of.ct, Price: of.price})
	}
	return opts
}

func distinctTypes(opts []cloud.LaunchOption, ct string) int {
	seen := map[string]bool{}
	for _, o := range opts {
		if o.CapacityType == ct {
			seen[o.InstanceType] = true
		}
	}
	return len(seen)
}

func capOptions(opts []cloud.LaunchOption, n int) []cloud.LaunchOption {
	if len(opts) > n {
		return opts[:n:n]
	}
	return opts
}

// consolidationCandidates returns, per pool, the sim indexes of nodes that
// may be consolidated, recording why the others may not.
func (p *planner) consolidationCandidates(s *sim, pool *Pool) (empty, under []int) {
	for _, n := range p.byPool[pool.Name] {
		if p.taken[n.Name] {
			continue
		}
		if pool.Replicas != nil {
			p.skip(n, ReasonUnderutilized, SkipStatic, "NodePool %s is static (replicas %d): its nodes are not consolidated", pool.Name, *pool.Replicas)
			continue
		}
		if pool.ConsolidateAfter == nil {
			p.skip(n, ReasonUnderutilized, SkipDisabled, "NodePool %s has consolidateAfter: Never", pool.Name)
			continue
		}
		if code, why := blocked(n, false); code != "" {
			p.skip(n, ReasonUnderutilized, code, "%s", why)
			continue
		}
		last := n.LastPodChange
		if last.IsZero() {
			last = n.Created
		}
		if wait := *pool.ConsolidateAfter - p.now.Sub(last); wait > 0 {
			p.skip(n, ReasonUnderutilized, SkipConsolidateAfter, "consolidateAfter %s not reached: pods last changed %s ago, %s to go",
				*pool.ConsolidateAfter, since(p.now, last), wait.Round(time.Second))
			continue
		}
		i := s.index[n.Name]
		if movingRequests(n).Pods == 0 {
			empty = append(empty, i)
			continue
		}
		if pool.ConsolidationPolicy == WhenEmpty {
			p.skip(n, ReasonUnderutilized, SkipPolicy, "NodePool %s has consolidationPolicy WhenEmpty and the node runs %d pod(s)", pool.Name, movingRequests(n).Pods)
			continue
		}
		under = append(under, i)
	}
	// Cheapest to disrupt first: fewest pods, then least utilized, then name.
	sort.SliceStable(under, func(a, b int) bool {
		x, y := &s.nodes[under[a]], &s.nodes[under[b]]
		px, py := movingRequests(x.n).Pods, movingRequests(y.n).Pods
		if px != py {
			return px < py
		}
		ux, uy := utilization(x.n, x.free), utilization(y.n, y.free)
		if ux != uy {
			return ux < uy
		}
		return x.n.Name < y.n.Name
	})
	sort.SliceStable(empty, func(a, b int) bool { return s.nodes[empty[a]].n.Name < s.nodes[empty[b]].n.Name })
	return empty, under
}

func (p *planner) consolidate() {
	s := p.newSim()
	for _, pool := range p.sortedPools() {
		empty, under := p.consolidationCandidates(s, pool)
		p.consolidateEmpty(s, pool, empty)
		under = p.consolidateDelete(s, pool, under)
		under = p.consolidateMulti(s, pool, under)
		p.consolidateReplace(s, pool, under)
	}
}

func (p *planner) consolidateEmpty(s *sim, pool *Pool, empty []int) {
	if len(empty) == 0 {
		return
	}
	d := Decision{Reason: ReasonEmpty, Pool: pool.Name, DrainUntil: drainUntil(pool, p.now)}
	for _, i := range empty {
		n := s.nodes[i].n
		allowed, lim := p.allowance(pool, ReasonEmpty)
		if allowed <= len(d.Nodes) {
			p.skip(n, ReasonEmpty, SkipBudget, "empty but blocked by %s (%d disrupting, max %d)", lim.Budget, p.poolDisrupting[pool.Name]+len(d.Nodes), lim.Max)
			continue
		}
		d.Budget = lim.Budget
		d.Nodes = append(d.Nodes, n.Name)
		d.NodeClaims = append(d.NodeClaims, n.NodeClaim)
		d.Savings += n.Price
		s.nodes[i].removed = true
	}
	if len(d.Nodes) > 0 {
		d.Message = fmt.Sprintf("%d empty node(s), saves $%.4f/h", len(d.Nodes), d.Savings)
		p.decide(d)
	}
}

// consolidateDelete deletes underutilized nodes whose pods fit elsewhere
// and returns the candidates left.
func (p *planner) consolidateDelete(s *sim, pool *Pool, under []int) []int {
	var rest []int
	for _, i := range under {
		sn := &s.nodes[i]
		if sn.receiving {
			rest = append(rest, i)
			continue
		}
		placed, leftover := s.moveOut([]int{i})
		if len(leftover) > 0 {
			s.undo(placed)
			rest = append(rest, i)
			continue
		}
		why, approved := p.balancedVerdict(pool, []*Node{sn.n}, sn.n.Price)
		if why != "" {
			s.undo(placed)
			rest = append(rest, i)
			p.skip(sn.n, ReasonUnderutilized, SkipBalanced, "%s", why)
			continue
		}
		allowed, lim := p.allowance(pool, ReasonUnderutilized)
		if allowed <= 0 {
			s.undo(placed)
			p.skip(sn.n, ReasonUnderutilized, SkipBudget, "its pods fit elsewhere but blocked by %s (%d disrupting, max %d)", lim.Budget, p.poolDisrupting[pool.Name], lim.Max)
			continue
		}
		s.commit([]int{i}, placed)
		p.decide(Decision{Reason: ReasonUnderutilized, Pool: pool.Name, Nodes: []string{sn.n.Name}, NodeClaims: []string{sn.n.NodeClaim},
			Budget: lim.Budget, DrainUntil: drainUntil(pool, p.now), Savings: sn.n.Price, Approved: approved,
			Message: fmt.Sprintf("its %d pod(s) fit on other nodes; deleting saves $%.4f/h", movingRequests(sn.n).Pods, sn.n.Price)})
	}
	return rest
}

// replacementFor tries to replace the group by one new node: pods go to
// existing nodes where they fit and the rest to the new node, which must be
// cheaper than the group by the pool's minimum saving, of another type and
// price, and (spot to spot) flexible enough. On success the simulation keeps
// the placements and the decision is returned; otherwise it is undone and a
// skip code and message say why.
func (p *planner) replacementFor(s *sim, pool *Pool, group []int, commit bool) (*Decision, string, string) {
	placed, leftover := s.moveOut(group)
	var need Resources
	var price float64
	allSpot := true
	sameType := ""
	for k, g := range group {
		n := s.nodes[g].n
		price += n.Price
		if n.CapacityType != cloud.CapacityTypeSpot {
			allSpot = false
		}
		if k == 0 {
			sameType = n.InstanceType
		} else if sameType != n.InstanceType {
			sameType = ""
		}
		for j := range n.Pods {
			if n.Pods[j].Stays {
				need = need.Add(n.Pods[j].Requests) // DaemonSet pods come along
			}
		}
	}
	for _, pod := range leftover {
		need = need.Add(pod.Requests)
	}
	if len(group) > 1 {
		// DaemonSet pods run once on the new node, not once per old node.
		need = Resources{}
		first := s.nodes[group[0]].n
		for j := range first.Pods {
			if first.Pods[j].Stays {
				need = need.Add(first.Pods[j].Requests)
			}
		}
		for _, pod := range leftover {
			need = need.Add(pod.Requests)
		}
	}
	limit := price * (1 - pool.MinSavings)
	exclude := ""
	if len(group) == 1 {
		exclude = sameType // never replace with the same instance type
	}
	opts := p.cheaper(pool, need, leftover, limit, exclude)
	if len(opts) == 0 {
		s.undo(placed)
		if pool.MinSavings > 0 && len(p.cheaper(pool, need, leftover, price, exclude)) > 0 {
			return nil, SkipMinSavings, fmt.Sprintf("a cheaper node exists but saves less than the NodePool's %s of %.0f%%", AnnotationMinSavings, pool.MinSavings*100)
		}
		return nil, SkipNoCheaperFit, fmt.Sprintf("its pods neither fit on other nodes nor on one node cheaper than $%.4f/h", price)
	}
	if allSpot && opts[0].CapacityType == cloud.CapacityTypeSpot {
		if k := distinctTypes(opts, cloud.CapacityTypeSpot); k < p.o.MinSpotFlexibility {
			s.undo(placed)
			return nil, SkipSpotFlexibility, fmt.Sprintf("spot-to-spot replacement needs %d cheaper instance types to stay flexible, only %d fit", p.o.MinSpotFlexibility, k)
		}
	}
	opts = capOptions(opts, p.o.MaxLaunchOptions)
	var moving []*Node
	for _, g := range group {
		moving = append(moving, s.nodes[g].n)
	}
	why, approved := p.balancedVerdict(pool, moving, price-opts[0].Price)
	if why != "" {
		s.undo(placed)
		return nil, SkipBalanced, why
	}
	d := &Decision{Reason: ReasonUnderutilized, Pool: pool.Name, DrainUntil: drainUntil(pool, p.now), Approved: approved,
		Replacement: &Replacement{Pool: pool.Name, NodeClass: pool.NodeClass, Options: opts, Price: opts[0].Price, Requests: need},
		Savings:     price - opts[0].Price}
	for _, g := range group {
		d.Nodes = append(d.Nodes, s.nodes[g].n.Name)
		d.NodeClaims = append(d.NodeClaims, s.nodes[g].n.NodeClaim)
	}
	d.Message = fmt.Sprintf("replace %d node(s) ($%.4f/h) by one %s ($%.4f/h), %d pod(s) move to other nodes, saves $%.4f/h",
		len(group), price, opts[0].InstanceType, opts[0].Price, len(placed), d.Savings)
	if commit {
		s.commit(group, placed)
	} else {
		s.undo(placed)
	}
	return d, "", ""
}

// consolidateMulti replaces the largest prefix of candidates (2 or more)
// that can be replaced by one cheaper node; returns the candidates left.
func (p *planner) consolidateMulti(s *sim, pool *Pool, under []int) []int {
	var pool2 []int
	for _, i := range under {
		if !s.nodes[i].receiving {
			pool2 = append(pool2, i)
		}
	}
	hi := min(len(pool2), p.o.MultiNodeMax)
	allowed, lim := p.allowance(pool, ReasonUnderutilized)
	hi = min(hi, allowed)
	if hi < 2 {
		return under
	}
	// Binary search the largest k that works (not strictly monotonic, as
	// in Karpenter; good enough and O(log n) simulations).
	lo, best := 2, 0
	for lo <= hi {
		mid := (lo + hi) / 2
		if d, _, _ := p.replacementFor(s, pool, pool2[:mid], false); d != nil {
			best = mid
			lo = mid + 1
		} else {
			hi = mid - 1
		}
	}
	if best == 0 {
		return under
	}
	d, _, _ := p.replacementFor(s, pool, pool2[:best], true)
	if d == nil {
		return under
	}
	d.Budget = lim.Budget
	p.decide(*d)
	return slices.DeleteFunc(slices.Clone(under), func(i int) bool { return s.nodes[i].removed })
}

func (p *planner) consolidateReplace(s *sim, pool *Pool, under []int) {
	for _, i := range under {
		sn := &s.nodes[i]
		if sn.removed {
			continue
		}
		if sn.receiving {
			p.skip(sn.n, ReasonUnderutilized, SkipReceivingPods, "other consolidations in this pass move pods onto it")
			continue
		}
		allowed, lim := p.allowance(pool, ReasonUnderutilized)
		if allowed <= 0 {
			p.skip(sn.n, ReasonUnderutilized, SkipBudget, "underutilized but blocked by %s (%d disrupting, max %d)", lim.Budget, p.poolDisrupting[pool.Name], lim.Max)
			continue
		}
		d, code, why := p.replacementFor(s, pool, []int{i}, true)
		if d == nil {
			p.skip(sn.n, ReasonUnderutilized, code, "%s", why)
			continue
		}
		d.Budget = lim.Budget
		p.decide(*d)
	}
}
