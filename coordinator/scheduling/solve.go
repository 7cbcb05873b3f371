package scheduling

import (
	"fmt"
	"math"
	"math/bits"
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

type slotKind int

const (
	slotNode slotKind = iota
	slotClaim
	slotNew
)

// slot is somewhere pods can go: an existing node, an in-flight NodeClaim
// or a new NodeClaim being built by this run.
type slot struct {
	idx      int
	kind     slotKind
	name     string
	labels   map[string]string // node labels; for new slots the pool's fixed labels
	claim    requirements      // in-flight claims: their requirements
	types    []*itInfo         // in-flight claims: their instance-type options
	taints   []corev1.Taint
	closed   bool // cordoned or being deleted
	capacity vec
	used     vec
	pods     []*podInfo
	ports    []hostPort

	// new slots only
	pool     *poolInfo
	typeSet  bitset
	zoneMask uint64
	ctMask   uint8
	custom   requirements // pool keys narrowed by pods (nil when none)
	target   int
	reserved vec
	// res is the capacity reservation (index plus one into the solver's
	// counts) the slot is planned into; 0: none.
	res int
	// special: opened for a specialised run (nodes of the run's own type).
	special bool
}

type podInfo struct {
	pod   *corev1.Pod
	req   vec
	class *podClass
	name  string
	// rank is the pod's position in kube-scheduler's queue order.
	rank int
}

type solver struct {
	snap       *Snapshot
	opts       Options
	ri         *resourceIndex
	zones      []string
	zoneIdx    map[string]int
	cts        []string
	ctIdx      map[string]int
	typeKeys   map[string]bool
	its        map[*cloud.InstanceType]*itInfo
	pools      []*poolInfo
	poolByName map[string]*poolInfo
	dss        []dsInfo
	topo       *topology
	classes    []*podClass
	pods       []*podInfo
	slots      []*slot
	nNew       int
	epoch      int
	warnings   []string
	stats      Stats
	unsched    []Unschedulable
	universe   map[string][]string
	scratch    bitset
	orders     map[orderKey][]int
	priceMemo  map[orderKey][]float64
	// remaining is the demand of the pods not yet placed.
	remaining vec
	// aggRemaining is remaining without the specialised runs.
	aggRemaining vec
	// largest is the largest request of each resource in the batch;
	// sharedDemand what the shared nodes are sized for; poolPrices and
	// classPrices memoise unitPricesFor.
	largest      vec
	sharedDemand vec
	poolPrices   map[*poolInfo]unitPrices
	classPrices  map[*classPool]unitPrices
	// classLeft: pods of each class not placed yet.
	classLeft []int64
	// Capacity reservations of the batch: index by id, instances left to
	// plan (-1: not counted), and the types offering each.
	resIdx   map[string]int
	resLeft  []int
	resTypes [][]*itInfo
}

func (s *solver) warn(w string) {
	if len(s.warnings) < 50 {
		s.warnings = append(s.warnings, w)
	}
}

// Solve decides where the snapshot's pods go. It is pure and deterministic:
// no I/O, no clock, no randomness, and map iteration never leaks into the
// result. Bad input never panics; it ends up as a reason on the pods
// concerned or as a warning in Stats.
func Solve(snap Snapshot, opts Options) Result {
	if opts.MaxInstanceTypes <= 0 {
		opts.MaxInstanceTypes = 60
	}
	s := &solver{
		snap: &snap, opts: opts, ri: newResourceIndex(),
		zoneIdx: map[string]int{}, ctIdx: map[string]int{}, typeKeys: map[string]bool{},
		poolByName: map[string]*poolInfo{}, topo: &topology{byKey: map[string]*topoGroup{}, matchCache: map[string]*labelMatch{}, namespaces: snap.Namespaces}, universe: map[string][]string{}, orders: map[orderKey][]int{}, priceMemo: map[orderKey][]float64{},
	}
	s.ctIndex(cloud.CapacityTypeSpot)
	s.ctIndex(cloud.CapacityTypeOnDemand)
	s.ctIndex(cloud.CapacityTypeReserved)
	s.indexInstanceTypes()
	s.compileDaemonSets()
	s.compilePods()
	demand := make(vec, len(s.ri.names))
	for _, p := range s.pods {
		demand.addInPlace(p.req)
	}
	s.compilePools(demand)
	s.buildSlots()
	s.countExisting()
	s.schedule()
	res := s.finish()
	for _, p := range s.pools {
		// A pool open to new nodes whose requirements leave no instance type
		// with an available offering: Karpenter's NoCompatibleInstanceTypes.
		if p.err == nil && len(p.types) == 0 {
			res.NoCompatibleInstanceTypes = append(res.NoCompatibleInstanceTypes, p.np.Name)
		}
	}
	sort.Strings(res.NoCompatibleInstanceTypes)
	return res
}

// compilePods groups pods into classes and computes their requests.
func (s *solver) compilePods() {
	vz := newVolumeZones(s.snap)
	byKey := map[string]*podClass{}
	relevant := map[string]bool{}
	for _, p := range s.snap.Pods {
		if p != nil {
			selectorKeys(p, relevant)
		}
	}
	for i := range s.snap.Nodes {
		for _, p := range s.snap.Nodes[i].Pods {
			if p != nil {
				selectorKeys(p, relevant)
			}
		}
	}
	for i := range s.snap.NodeClaims {
		for _, p := range s.snap.NodeClaims[i].Pods {
			if p != nil {
				selectorKeys(p, relevant)
			}
		}
	}
	for _, p := range s.snap.Pods {
		if p == nil {
			continue
		}
		volReqs, volKey, volErr := vz.forPod(p)
		key := classKey(p, volKey, relevant)
		c, ok := byKey[key]
		if !ok {
			c = compileClass(len(s.classes), p, volReqs, s.topo)
			if volErr != nil && c.err == nil {
				c.err = volErr
			}
			byKey[key] = c
			s.classes = append(s.classes, c)
		}
		s.pods = append(s.pods, &podInfo{pod: p, req: s.ri.podRequests(p), class: c, name: p.Namespace + "/" + p.Name})
	}
	s.stats.Pods = len(s.pods)
	s.stats.Classes = len(s.classes)
	// Existing pods' required anti-affinity is symmetric: register it.
	for i := range s.snap.Nodes {
		for _, p := range s.snap.Nodes[i].Pods {
			s.registerOwnerTerms(p)
		}
	}
	for i := range s.snap.NodeClaims {
		for _, p := range s.snap.NodeClaims[i].Pods {
			s.registerOwnerTerms(p)
		}
	}
	for _, c := range s.classes {
		c.match = s.topo.match(c.ns, c.labels)
		c.current = c.initialLevel(s.opts.IgnorePreferences)
	}
	// Queue order: kube-scheduler binds by priority, then creation time.
	byQueue := append([]*podInfo(nil), s.pods...)
	sort.SliceStable(byQueue, func(i, j int) bool { return QueueLess(byQueue[i].pod, byQueue[j].pod) })
	for i, p := range byQueue {
		p.rank = i
	}
	// Constraints whose outcome depends on bind order: a zone-like spread
	// (its global minimum moves as pods bind) and required pod affinity
	// (the first pod of a group may go anywhere). Hostname spreads are made
	// order-free instead (capSlot), anti-affinity is symmetric already.
	for _, c := range s.classes {
		for _, sp := range c.hardSpread {
			if sp.g.key != LabelHostname {
				sp.g.ordered = true
			}
		}
		for _, t := range c.reqAff {
			t.g.ordered = true
		}
	}
	for _, c := range s.classes {
		for _, sp := range c.hardSpread {
			c.ordered = c.ordered || sp.g.ordered
		}
		for _, t := range c.reqAff {
			c.ordered = c.ordered || t.g.ordered
		}
		for _, g := range c.match.matching {
			c.ordered = c.ordered || g.ordered
		}
	}
}

func (s *solver) registerOwnerTerms(p *corev1.Pod) {
	if p == nil || p.Spec.Affinity == nil || p.Spec.Affinity.PodAntiAffinity == nil {
		return
	}
	for i := range p.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		t := &p.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[i]
		sel, err := selectorFor(t.LabelSelector, t.MatchLabelKeys, p.Labels)
		if err != nil || t.TopologyKey == "" {
			continue
		}
		nsAll, ns, err := s.topo.termNamespaces(p, t)
		if err != nil {
			continue
		}
		s.topo.group(countOwners, t.TopologyKey, nsAll, ns, sel)
	}
}

func podTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// buildSlots turns existing nodes and in-flight claims into slots and
// charges them to their pools' limits.
func (s *solver) buildSlots() {
	for i := range s.snap.Nodes {
		n := &s.snap.Nodes[i]
		sl := &slot{idx: len(s.slots), kind: slotNode, name: n.Name, labels: n.Labels, taints: n.Taints,
			closed: n.Unschedulable || n.MarkedForDeletion, capacity: s.ri.fromList(n.Allocatable), used: make(vec, len(s.ri.names)), target: -1}
		for _, p := range n.Pods {
			if p == nil || podTerminal(p) {
				continue
			}
			sl.used.addInPlace(s.ri.podRequests(p))
			sl.ports = append(sl.ports, podPorts(p)...)
		}
		s.slots = append(s.slots, sl)
		if p := s.poolByName[n.NodePool]; p != nil && n.NodePool != "" {
			c := n.Capacity
			if len(c) == 0 {
				c = n.Allocatable
			}
			p.used.addInPlace(s.ri.fromList(c))
			p.nodes++
		}
	}
	for i := range s.snap.NodeClaims {
		nc := &s.snap.NodeClaims[i]
		sl := &slot{idx: len(s.slots), kind: slotClaim, name: nc.Name, taints: nc.Taints, used: make(vec, len(s.ri.names)), target: -1, labels: map[string]string{}}
		reqs, err := compileRequirements(nc.Requirements)
		if err != nil {
			s.warn(fmt.Sprintf("nodeclaim %s: %v; not used for placement", nc.Name, err))
			sl.closed = true
			reqs = requirements{}
		}
		for k, v := range nc.Labels {
			reqs.add(k, valueSet{values: []string{v}, gt: math.MinInt64, lt: math.MaxInt64})
		}
		sl.claim = reqs
		for k, v := range reqs {
			if !v.complement && len(v.values) == 1 {
				sl.labels[k] = v.values[0]
			}
		}
		pool := s.poolByName[nc.NodePool]
		var names map[string]bool
		if v, ok := reqs[LabelInstanceType]; ok && !v.complement {
			names = map[string]bool{}
			for _, n := range v.values {
				names[n] = true
			}
		}
		var capMin, capMax vec
		if pool != nil {
			for _, pt := range pool.types {
				if names != nil && !names[pt.it.it.Name] {
					continue
				}
				sl.types = append(sl.types, pt.it)
				if capMin == nil {
					capMin = append(vec(nil), pt.cap...)
					capMax = append(vec(nil), pt.it.capacity...)
					continue
				}
				for d := range capMin {
					capMin[d] = min(capMin[d], pt.cap.get(d))
				}
				for d := range capMax {
					capMax[d] = max(capMax[d], pt.it.capacity.get(d))
				}
			}
		}
		switch {
		case len(nc.Allocatable) > 0:
			sl.capacity = s.ri.fromList(nc.Allocatable)
		case capMin != nil:
			sl.capacity = capMin
		default:
			s.warn(fmt.Sprintf("nodeclaim %s: no allocatable and no known instance type; not used for placement", nc.Name))
			sl.capacity = make(vec, len(s.ri.names))
			sl.closed = true
		}
		for _, p := range nc.Pods {
			if p == nil {
				continue
			}
			sl.used.addInPlace(s.ri.podRequests(p))
			sl.ports = append(sl.ports, podPorts(p)...)
		}
		s.slots = append(s.slots, sl)
		if pool != nil {
			c := s.ri.fromList(nc.Capacity)
			if len(nc.Capacity) == 0 && capMax != nil {
				c = capMax
			}
			pool.used.addInPlace(c)
			pool.nodes++
		}
	}
}

func podPorts(p *corev1.Pod) []hostPort {
	var out []hostPort
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.HostPort == 0 {
				continue
			}
			proto := string(port.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			out = append(out, hostPort{proto: proto, ip: port.HostIP, port: port.HostPort})
		}
	}
	return out
}

// domainOf is the slot's value for a topology key ("" when unknown).
func (s *solver) domainOf(sl *slot, key string) string {
	if sl.kind == slotNew {
		switch key {
		case LabelZone:
			if bits.OnesCount64(sl.zoneMask) == 1 {
				return s.zones[bits.TrailingZeros64(sl.zoneMask)]
			}
			return ""
		case LabelCapacityType:
			if bits.OnesCount8(sl.ctMask) == 1 {
				return s.cts[bits.TrailingZeros8(sl.ctMask)]
			}
			return ""
		}
		if sl.custom != nil {
			if v, ok := sl.custom[key]; ok && !v.complement && len(v.values) == 1 {
				return v.values[0]
			}
		}
	}
	return sl.labels[key]
}

// countExisting records the pods already bound to nodes and claims in the topology counts.
func (s *solver) countExisting() {
	for i := range s.snap.Nodes {
		for _, p := range s.snap.Nodes[i].Pods {
			if p != nil && !podTerminal(p) {
				s.countPod(s.slots[i], p.Namespace, p.Labels, s.ownedGroups(p))
			}
		}
	}
	off := len(s.snap.Nodes)
	for i := range s.snap.NodeClaims {
		for _, p := range s.snap.NodeClaims[i].Pods {
			if p != nil {
				s.countPod(s.slots[off+i], p.Namespace, p.Labels, s.ownedGroups(p))
			}
		}
	}
}

func (s *solver) ownedGroups(p *corev1.Pod) []*topoGroup {
	if p.Spec.Affinity == nil || p.Spec.Affinity.PodAntiAffinity == nil {
		return nil
	}
	var out []*topoGroup
	for i := range p.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		t := &p.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[i]
		sel, err := selectorFor(t.LabelSelector, t.MatchLabelKeys, p.Labels)
		if err != nil || t.TopologyKey == "" {
			continue
		}
		nsAll, ns, err := s.topo.termNamespaces(p, t)
		if err != nil {
			continue
		}
		out = append(out, s.topo.group(countOwners, t.TopologyKey, nsAll, ns, sel))
	}
	return out
}

func (s *solver) countPod(sl *slot, ns string, lbls map[string]string, owned []*topoGroup) {
	m := s.topo.match(ns, lbls)
	for _, g := range m.matching {
		s.bump(g, sl)
	}
	for _, g := range owned {
		s.bump(g, sl)
	}
	s.epoch++
}

func (s *solver) bump(g *topoGroup, sl *slot) {
	g.total++
	g.addSlot(sl.idx, 1)
	if g.key == LabelHostname {
		return
	}
	if d := s.domainOf(sl, g.key); d != "" {
		g.domain[d]++
	}
}

// run is a maximal sequence of identical pods (same class and requests)
// in packing order.
type run struct {
	scan    runState
	left    int64 // pods of the run not placed yet
	special bool  // the run gets nodes of its own (specializeRuns)
}

// runParams are the parameters of the run a pod is placed for, passed
// down the placement path.
type runParams struct {
	// left: identical pods left in the run, the one being placed included.
	left int64
	// special: the run is specialised; its pods keep off shared new nodes.
	special bool
	// shared: a specialised pod is retried on shared nodes (find).
	shared bool
}

// schedule places the pods. Ordering: hostname-capped classes first (they
// decide how many nodes are needed), then largest first, grouped into
// runs; specialisation: which runs get nodes of their own; then the runs
// are interleaved (order-dependent constraints in queue order) and placed,
// balanced where that was measured to pay.
func (s *solver) schedule() {
	pods := s.pods
	sortForPacking(pods)
	runs, runOf := splitRuns(pods)
	s.initDemand(pods)
	s.specializeRuns(pods, runs)
	order := interleavedOrder(pods, runs, runOf)
	ordered := s.queueOrderWithinComponents(pods, order)
	s.classLeft = make([]int64, len(s.classes))
	for _, p := range pods {
		s.classLeft[p.class.id]++
	}
	// With host-capped pods in the batch, their nodes (sized for everything
	// still pending) take the other pods in interleaved order; balancing
	// that order was measured to cost more there (mixed bench +1–3 %).
	if ordered || len(runs) > maxBalancedRuns || (len(pods) > 0 && pods[order[0]].class.hostCapped) {
		for _, i := range order {
			s.placeNext(pods[i], runs[runOf[i]])
		}
		return
	}
	s.placeBalanced(pods, runs, runOf)
}

// sortForPacking orders pods hostname-capped first, then by cpu and memory
// descending, then by class, requests and name (a total order).
func sortForPacking(pods []*podInfo) {
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if a.class.hostCapped != b.class.hostCapped {
			return a.class.hostCapped
		}
		if a.req.get(dimCPU) != b.req.get(dimCPU) {
			return a.req.get(dimCPU) > b.req.get(dimCPU)
		}
		if a.req.get(dimMemory) != b.req.get(dimMemory) {
			return a.req.get(dimMemory) > b.req.get(dimMemory)
		}
		if a.class.id != b.class.id {
			return a.class.id < b.class.id
		}
		if c := compareVec(a.req, b.req); c != 0 {
			return c < 0
		}
		return a.name < b.name
	})
}

// splitRuns cuts the sorted pods into runs; runOf maps each pod to its run.
func splitRuns(pods []*podInfo) (runs []*run, runOf []int) {
	runOf = make([]int, len(pods))
	for i, p := range pods {
		if i == 0 || p.class != pods[i-1].class || compareVec(p.req, pods[i-1].req) != 0 {
			runs = append(runs, &run{})
		}
		runOf[i] = len(runs) - 1
		runs[len(runs)-1].left++
	}
	return runs, runOf
}

// initDemand sets the batch's pending demand and the largest request the
// shared nodes must hold.
func (s *solver) initDemand(pods []*podInfo) {
	s.remaining = make(vec, len(s.ri.names))
	for _, p := range pods {
		s.remaining.addInPlace(p.req)
	}
	s.aggRemaining = append(vec(nil), s.remaining...)
	// The shared nodes must hold the largest pod of each resource, leaving
	// out pods no type could hold anyway (they stay unschedulable and must
	// not narrow the candidates to nothing).
	maxCap := make(vec, len(s.ri.names))
	for _, pool := range s.pools {
		for _, pt := range pool.types {
			for _, d := range []int{dimCPU, dimMemory} {
				maxCap[d] = max(maxCap[d], pt.cap.get(d))
			}
		}
	}
	s.largest = make(vec, len(s.ri.names))
	for _, p := range pods {
		if p.req.get(dimCPU) > maxCap[dimCPU] || p.req.get(dimMemory) > maxCap[dimMemory] {
			continue
		}
		for _, d := range []int{dimCPU, dimMemory} {
			s.largest[d] = max(s.largest[d], p.req.get(d))
		}
	}
}

// specializeRuns marks the runs that get nodes of their own and takes
// their demand out of what the shared nodes are sized for. Which runs
// specialise depends on the unit prices of the shared nodes, which depend
// on what is left to share: iterate to a fixed point (it settles in two or
// three passes).
func (s *solver) specializeRuns(pods []*podInfo, runs []*run) {
	s.sharedDemand = s.remaining
	for pass := 0; pass < specializePasses; pass++ {
		s.poolPrices = map[*poolInfo]unitPrices{}
		s.classPrices = map[*classPool]unitPrices{}
		agg := append(vec(nil), s.remaining...)
		changed := false
		start := 0
		for _, r := range runs {
			sp := s.specialize(pods[start], r.left)
			changed = changed || sp != r.special
			r.special = sp
			if r.special {
				for d, x := range pods[start].req {
					agg[d] -= x * r.left
				}
			}
			start += int(r.left)
		}
		s.aggRemaining = agg
		s.sharedDemand = agg
		if !changed && pass > 0 {
			break
		}
	}
}

// interleavedOrder interleaves the runs in proportion to their sizes
// (hostname-capped pods first) so every stretch of the order carries the
// batch's overall mix of shapes: nodes then fill with complementary
// (cpu-heavy next to memory-heavy) pods. It returns indexes into pods.
func interleavedOrder(pods []*podInfo, runs []*run, runOf []int) []int {
	order := make([]int, len(pods))
	for i := range order {
		order[i] = i
	}
	key := make([]float64, len(pods))
	seen := make([]int64, len(runs))
	for i := range pods {
		r := runOf[i]
		key[i] = (float64(seen[r]) + 0.5) / float64(runs[r].left)
		seen[r]++
	}
	sort.SliceStable(order, func(a, b int) bool {
		pa, pb := pods[order[a]], pods[order[b]]
		if pa.class.hostCapped != pb.class.hostCapped {
			return pa.class.hostCapped
		}
		return key[order[a]] < key[order[b]]
	})
	return order
}

// queueOrderWithinComponents puts the pods taking part in order-dependent
// constraints in kube-scheduler's queue order among themselves (in the
// positions of order they held), so every check counts exactly the pods
// bound before them. Only pods that share an order-dependent group need
// each other's order: it reorders within each connected component
// (classes joined through their groups), so unrelated deployments keep
// the interleaving that packs nodes well. It reports whether any pod is
// ordered.
func (s *solver) queueOrderWithinComponents(pods []*podInfo, order []int) bool {
	comp := s.orderComponents()
	at, which := map[int][]int{}, map[int][]int{}
	var comps []int
	for k, i := range order {
		c := pods[i].class
		if !c.ordered {
			continue
		}
		id := comp[c.id]
		if _, ok := at[id]; !ok {
			comps = append(comps, id)
		}
		at[id], which[id] = append(at[id], k), append(which[id], i)
	}
	for _, id := range comps {
		w := which[id]
		sort.SliceStable(w, func(a, b int) bool { return pods[w[a]].rank < pods[w[b]].rank })
		for k, pos := range at[id] {
			order[pos] = w[k]
		}
	}
	return len(comps) > 0
}

// placeNext places the next pod of run r and takes it out of the pending
// demand.
func (s *solver) placeNext(p *podInfo, r *run) {
	s.placePod(p, &r.scan, runParams{left: r.left, special: r.special})
	r.left--
	for d, x := range p.req {
		s.remaining[d] -= x
		if !r.special {
			s.aggRemaining[d] -= x
		}
	}
	s.classLeft[p.class.id]--
}

// placeBalanced places the pods in proportion to their runs' sizes (like
// the interleaved order), but within a window of that order the next pod
// is one that complements the node the last pod went to: memory-heavy
// when that node is fuller in cpu, cpu-heavy when fuller in memory, so
// shared nodes end up full in both.
func (s *solver) placeBalanced(pods []*podInfo, runs []*run, runOf []int) {
	b := newBalancer(pods, runs, runOf)
	var last *slot
	for len(b.live) > 0 {
		pick := b.next(last)
		i := b.start[pick] + b.pos[pick]
		b.taken(pick)
		s.placeNext(pods[i], runs[pick])
		if runs[pick].scan.last > 0 {
			last = s.slots[runs[pick].scan.last-1]
		}
	}
}

// balancer tracks each run's progress for placeBalanced.
type balancer struct {
	pods []*podInfo
	runs []*run
	// start: the run's first pod; total: its size; pos: pods taken.
	start, total, pos []int
	// live: runs (not hostname-capped) with pods left.
	live []int
}

func newBalancer(pods []*podInfo, runs []*run, runOf []int) *balancer {
	b := &balancer{pods: pods, runs: runs, start: make([]int, len(runs)), total: make([]int, len(runs)), pos: make([]int, len(runs))}
	for i := len(pods) - 1; i >= 0; i-- {
		b.start[runOf[i]] = i
		b.total[runOf[i]]++
	}
	for r := range runs {
		if b.total[r] > 0 && !pods[b.start[r]].class.hostCapped {
			b.live = append(b.live, r)
		}
	}
	return b
}

// key is the run's position in the interleaved order.
func (b *balancer) key(r int) float64 { return (float64(b.pos[r]) + 0.5) / float64(b.total[r]) }

// next picks the run to take a pod from: the first in interleaved order,
// unless a run within balanceWindow complements last, a shared new node.
func (b *balancer) next(last *slot) int {
	minKey, pick := math.Inf(1), -1
	for _, r := range b.live {
		if k := b.key(r); k < minKey {
			minKey, pick = k, r
		}
	}
	if last == nil || last.kind != slotNew || last.target < 0 || last.special {
		return pick
	}
	cc, cm := float64(last.capacity.get(dimCPU)), float64(last.capacity.get(dimMemory))
	if cc <= 0 || cm <= 0 {
		return pick
	}
	wantMem := float64(last.used.get(dimCPU))/cc > float64(last.used.get(dimMemory))/cm
	bestKey := math.Inf(1)
	for _, r := range b.live {
		k := b.key(r)
		if k > minKey+balanceWindow || k >= bestKey || b.runs[r].special {
			continue
		}
		p := b.pods[b.start[r]]
		pc, pm := float64(p.req.get(dimCPU))/cc, float64(p.req.get(dimMemory))/cm
		if (wantMem && pm > pc) || (!wantMem && pc > pm) {
			bestKey, pick = k, r
		}
	}
	return pick
}

// taken records that a pod of run pick is being placed.
func (b *balancer) taken(pick int) {
	b.pos[pick]++
	if b.pos[pick] < b.total[pick] {
		return
	}
	for j, r := range b.live {
		if r == pick {
			b.live = append(b.live[:j], b.live[j+1:]...)
			return
		}
	}
}

// orderComponents maps each ordered class to its component: classes that
// share an order-dependent topology group, transitively.
func (s *solver) orderComponents() []int {
	parent := make([]int, len(s.classes)+len(s.topo.groups))
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	union := func(c *podClass, g *topoGroup) {
		a, b := find(c.id), find(len(s.classes)+g.id)
		if a != b {
			parent[a] = b
		}
	}
	for _, c := range s.classes {
		if !c.ordered {
			continue
		}
		for _, sp := range c.hardSpread {
			if sp.g.ordered {
				union(c, sp.g)
			}
		}
		for _, t := range c.reqAff {
			union(c, t.g)
		}
		for _, g := range c.match.matching {
			if g.ordered {
				union(c, g)
			}
		}
	}
	out := make([]int, len(s.classes))
	for _, c := range s.classes {
		out[c.id] = find(c.id)
	}
	return out
}

// balanceWindow: how far ahead of the interleaved order (as a fraction of
// each run's progress) balanced placement may pick a complementary pod.
const balanceWindow = 0.1

// maxBalancedRuns: each balanced pick scans every unfinished run, so
// batches of many short runs (e.g. every pod a different size) keep the
// plain interleaved order.
const maxBalancedRuns = 512

// specialize decides whether a run of n identical pods should get nodes
// of its own best type rather than share nodes sized for the whole batch:
// yes when the run alone on its best type (exact node count) costs less per
// pod than its share of the shared nodes at the blend's unit prices
// (cpu·$/cpu + memory·$/GiB, see blend.go). A dominant share of one type
// would overcharge pods that complement their neighbours (memory-heavy
// next to cpu-heavy) and send them to dearer nodes of their own; small
// cpu-heavy, memory-light pods really are cheaper on small burstable spot
// types.
func (s *solver) specialize(p *podInfo, n int64) bool {
	if p.class.hostCapped || p.class.err != nil || len(s.pools) == 0 || n < minSpecializeRun || s.opts.NoNewNodeClaims || s.opts.MaxNewNodeClaims > 0 {
		return false
	}
	var pool *poolInfo
	var cp *classPool
	L := p.class.level(p.class.current)
	for _, pl := range s.pools {
		if c := s.classPool(L, pl); c.ok {
			pool, cp = pl, c
			break
		}
	}
	if pool == nil || pool.nodeCap >= 0 {
		// Under a node limit, more and smaller nodes can leave pods out.
		return false
	}
	// The run's cost per pod when it shares nodes with the rest of the
	// batch, at the unit prices of the cheapest blend of types.
	up := s.unitPricesFor(pool, cp)
	if !up.ok {
		return false
	}
	sharedPerPod := up.perCPU*float64(p.req.get(dimCPU)) + up.perMem*float64(p.req.get(dimMemory))
	best := math.Inf(1)
	for i, pt := range pool.types {
		if !cp.types.has(i) {
			continue
		}
		per := math.Inf(1)
		for d, r := range p.req {
			if r > 0 {
				per = min(per, math.Floor(float64(pt.cap.get(d))/float64(r)))
			}
		}
		if per < 1 || math.IsInf(per, 1) {
			continue
		}
		nodes := math.Ceil(float64(n) / min(per, float64(n)))
		best = min(best, nodes*pt.price/float64(n))
	}
	return best < specializeThreshold*sharedPerPod
}

// unitPricesFor memoises blendPrices per pool and class type set.
func (s *solver) unitPricesFor(pool *poolInfo, cp *classPool) unitPrices {
	if cp.all {
		if up, ok := s.poolPrices[pool]; ok {
			return up
		}
	} else if up, ok := s.classPrices[cp]; ok {
		return up
	}
	allowed := cp.types
	if cp.all {
		allowed = pool.all
	}
	up := blendPrices(pool, allowed, s.sharedDemand, s.largest)
	if cp.all {
		s.poolPrices[pool] = up
	} else {
		s.classPrices[cp] = up
	}
	return up
}

// specializePasses caps the fixed-point iteration of specialisation.
const specializePasses = 3

// minSpecializeRun: shorter runs share nodes (one odd pod alone on a
// cheap small node does not make a pattern worth its own nodes).
const minSpecializeRun = 10

// specializeThreshold: how much cheaper a run's own type must be per pod.
const specializeThreshold = 0.99

func compareVec(a, b vec) int {
	for i := 0; i < max(len(a), len(b)); i++ {
		if a.get(i) != b.get(i) {
			if a.get(i) < b.get(i) {
				return -1
			}
			return 1
		}
	}
	return 0
}

func (s *solver) unschedulable(p *podInfo, reasons map[string]string) {
	u := Unschedulable{Pod: p.pod, PodName: p.name, Reasons: reasons, Message: summarize(reasons)}
	s.unsched = append(s.unsched, u)
}

func summarize(reasons map[string]string) string {
	if r, ok := reasons[""]; ok && len(reasons) == 1 {
		return r
	}
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	msg := "no NodePool can serve the pod:"
	for i, k := range keys {
		if i > 0 {
			msg += ";"
		}
		if k == "" {
			msg += " " + reasons[k]
		} else {
			msg += fmt.Sprintf(" nodepool %s: %s", k, reasons[k])
		}
	}
	return msg
}
