package scheduling

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

// maxCT is how many capacity types the simulation distinguishes; index 0 is
// spot, 1 on-demand and 2 reserved so "reserved, then spot first" is a bit test.
const (
	maxCT      = 4
	ctSpot     = 0
	ctOD       = 1
	ctReserved = 2
	maxZone    = 64
)

// bitset is a set of small integers (instance-type indexes of a pool).
type bitset []uint64

func newBitset(n int, full bool) bitset {
	b := make(bitset, (n+63)/64)
	if full {
		for i := 0; i < n; i++ {
			b[i/64] |= 1 << uint(i%64)
		}
	}
	return b
}
func (b bitset) has(i int) bool { return b[i/64]&(1<<uint(i%64)) != 0 }
func (b bitset) set(i int)      { b[i/64] |= 1 << uint(i%64) }
func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// andInto writes a&o into dst and reports whether the result differs from a.
func andInto(dst, a, o bitset) bool {
	changed := false
	for i := range a {
		dst[i] = a[i] & o[i]
		if dst[i] != a[i] {
			changed = true
		}
	}
	return changed
}

// itInfo is an instance type compiled once per Solve.
type itInfo struct {
	it        *cloud.InstanceType
	alloc     vec
	capacity  vec
	zonesByCT [maxCT]uint64 // available offerings
	offers    []offer
	// resZones are the zones of reserved offerings whose reservation still
	// has room in this batch (zonesByCT[ctReserved] keeps every offered
	// one); left is the solver's count per reservation (resLeft).
	resZones uint64
	left     []int
}

type offer struct {
	zone, ct int
	price    float64
	// res is the capacity reservation of a reserved offering, ri its
	// index in the solver's reservation counts plus one (0: none).
	res string
	ri  int
}

// roomy reports whether the offer can still be planned: not a reserved
// offering, or its reservation has instances left (or is not counted).
func (t *itInfo) roomy(o *offer) bool {
	return o.ri == 0 || t.left[o.ri-1] != 0
}

// refreshResZones recomputes resZones from the reservation counts.
func (t *itInfo) refreshResZones() {
	t.resZones = 0
	for i := range t.offers {
		if o := &t.offers[i]; o.ct == ctReserved && t.roomy(o) {
			t.resZones |= 1 << uint(o.zone)
		}
	}
}

// roomyRes returns the reservation (index plus one) the type would launch
// into in the masks: the cheapest reserved offering with room, ties by
// reservation id; 0 when none.
func (t *itInfo) roomyRes(zm uint64, cm uint8) int {
	if cm&(1<<ctReserved) == 0 || t.resZones&zm == 0 {
		return 0
	}
	best := -1
	for i := range t.offers {
		o := &t.offers[i]
		if o.ct != ctReserved || zm&(1<<uint(o.zone)) == 0 || !t.roomy(o) {
			continue
		}
		if best < 0 || o.price < t.offers[best].price || (o.price == t.offers[best].price && o.res < t.offers[best].res) {
			best = i
		}
	}
	if best < 0 {
		return 0
	}
	return t.offers[best].ri
}

// usesRes reports whether the type has reservation ri's offering in the masks.
func (t *itInfo) usesRes(ri int, zm uint64, cm uint8) bool {
	if cm&(1<<ctReserved) == 0 {
		return false
	}
	for i := range t.offers {
		if o := &t.offers[i]; o.ri == ri && zm&(1<<uint(o.zone)) != 0 {
			return true
		}
	}
	return false
}

func (t *itInfo) avail(zm uint64, cm uint8) bool {
	for ci := 0; ci < maxCT; ci++ {
		if cm&(1<<uint(ci)) != 0 && t.zonesByCT[ci]&zm != 0 {
			return true
		}
	}
	return false
}

// tier is the capacity type a launch of this type would use first in the
// masks, as Karpenter orders them: 0 reserved (a capacity reservation with
// room), 1 spot, 2 anything else (on-demand).
func (t *itInfo) tier(zm uint64, cm uint8) int {
	switch {
	case cm&(1<<ctReserved) != 0 && t.resZones&zm != 0:
		return 0
	case cm&(1<<ctSpot) != 0 && t.zonesByCT[ctSpot]&zm != 0:
		return 1
	}
	return 2
}

// price is what a node of this type costs in the masks: the cheapest
// offering of its first tier (reserved, else spot, else the rest).
func (t *itInfo) price(zm uint64, cm uint8) float64 {
	best := math.Inf(1)
	tier := t.tier(zm, cm)
	for _, o := range t.offers {
		if zm&(1<<uint(o.zone)) == 0 || cm&(1<<uint(o.ct)) == 0 || !t.roomy(&o) {
			continue
		}
		if (tier == 0 && o.ct != ctReserved) || (tier == 1 && o.ct != ctSpot) {
			continue
		}
		best = min(best, o.price)
	}
	return best
}

type poolInfo struct {
	idx      int
	np       *NodePool
	reqs     requirements // everything incl. template labels and nodepool
	custom   requirements // keys that are neither zone, capacity type nor instance-type labels
	fixed    map[string]string
	zoneMask uint64
	ctMask   uint8
	types    []*poolType
	all      bitset
	ranking  []int
	limits   vec
	limited  []bool
	// hasLimits: some resource (not counting nodes) is limited.
	hasLimits bool
	nodeCap   int64 // -1: no node limit
	used      vec
	nodes     int64
	minVals   map[string]int
	err       error
}

type poolType struct {
	it    *itInfo
	cap   vec // allocatable minus DaemonSet overhead
	ds    vec
	price float64
}

type dsInfo struct {
	ds    *appsv1.DaemonSet
	req   vec
	reqs  []requirements // OR terms
	tols  []corev1.Toleration
	valid bool
}

func (s *solver) zoneMaskOf(v valueSet) uint64 {
	var m uint64
	for i, z := range s.zones {
		if v.has(z) {
			m |= 1 << uint(i)
		}
	}
	return m
}

func (s *solver) ctMaskOf(v valueSet) uint8 {
	var m uint8
	for i, c := range s.cts {
		if v.has(c) {
			m |= 1 << uint(i)
		}
	}
	return m
}

func (s *solver) zoneIndex(z string) int {
	if i, ok := s.zoneIdx[z]; ok {
		return i
	}
	if len(s.zones) >= maxZone {
		s.warn(fmt.Sprintf("more than %d zones; zone %s ignored", maxZone, z))
		return -1
	}
	s.zoneIdx[z] = len(s.zones)
	s.zones = append(s.zones, z)
	return len(s.zones) - 1
}

func (s *solver) ctIndex(c string) int {
	if i, ok := s.ctIdx[c]; ok {
		return i
	}
	if len(s.cts) >= maxCT {
		s.warn(fmt.Sprintf("more than %d capacity types; %s ignored", maxCT, c))
		return -1
	}
	s.ctIdx[c] = len(s.cts)
	s.cts = append(s.cts, c)
	return len(s.cts) - 1
}

// indexInstanceTypes compiles every distinct instance type once.
func (s *solver) indexInstanceTypes() {
	s.its = map[*cloud.InstanceType]*itInfo{}
	unavail := map[[3]string]bool{}
	for _, u := range s.snap.Unavailable {
		unavail[[3]string{u.InstanceType, u.Zone, u.CapacityType}] = true
	}
	// Zones first, sorted, so masks are deterministic.
	zoneSet := map[string]bool{}
	for _, list := range s.snap.InstanceTypes {
		for _, it := range list {
			if it == nil {
				continue
			}
			for _, o := range it.Offerings {
				zoneSet[o.Zone] = true
			}
			for k := range it.Labels {
				s.typeKeys[k] = true
			}
		}
	}
	for i := range s.snap.Nodes {
		if z := s.snap.Nodes[i].Labels[LabelZone]; z != "" {
			zoneSet[z] = true
		}
	}
	zs := make([]string, 0, len(zoneSet))
	for z := range zoneSet {
		zs = append(zs, z)
	}
	sort.Strings(zs)
	for _, z := range zs {
		s.zoneIndex(z)
	}
	delete(s.typeKeys, LabelZone)
	delete(s.typeKeys, LabelCapacityType)
	delete(s.typeKeys, LabelNodePool)
	delete(s.typeKeys, LabelHostname)
	delete(s.typeKeys, LabelRegion)
	names := make([]string, 0, len(s.snap.InstanceTypes))
	for n := range s.snap.InstanceTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, it := range s.snap.InstanceTypes[n] {
			if it == nil || s.its[it] != nil {
				continue
			}
			info := &itInfo{it: it, alloc: s.ri.fromList(it.Allocatable), capacity: s.ri.fromList(it.Capacity)}
			if len(it.Capacity) == 0 {
				info.capacity = info.alloc
			}
			for _, o := range it.Offerings {
				if !o.Available || unavail[[3]string{it.Name, o.Zone, o.CapacityType}] {
					continue
				}
				zi, ci := s.zoneIndex(o.Zone), s.ctIndex(o.CapacityType)
				if zi < 0 || ci < 0 {
					continue
				}
				info.zonesByCT[ci] |= 1 << uint(zi)
				of := offer{zone: zi, ct: ci, price: o.Price, res: o.ReservationID}
				if ci == ctReserved && o.ReservationID != "" {
					of.ri = s.countReservation(o.ReservationID, o.ReservationCapacity, info)
				}
				info.offers = append(info.offers, of)
			}
			s.its[it] = info
		}
	}
	for _, info := range s.its {
		info.left = s.resLeft
		info.refreshResZones()
	}
}

// countReservation registers a reservation's free instance count and
// returns its index plus one. Several offerings of one reservation (pools
// of different classes, lists read at different times) keep the smallest
// count, as Karpenter's reservation manager does; a count of 0 on an
// available offering is unknown and does not limit (-1).
func (s *solver) countReservation(id string, capacity int, it *itInfo) int {
	n := -1
	if capacity > 0 {
		n = capacity
	}
	i, ok := s.resIdx[id]
	if !ok {
		if s.resIdx == nil {
			s.resIdx = map[string]int{}
		}
		i = len(s.resLeft)
		s.resIdx[id] = i
		s.resLeft = append(s.resLeft, n)
		s.resTypes = append(s.resTypes, nil)
	} else if n >= 0 && (s.resLeft[i] < 0 || n < s.resLeft[i]) {
		s.resLeft[i] = n
	}
	if !slices.Contains(s.resTypes[i], it) {
		s.resTypes[i] = append(s.resTypes[i], it)
	}
	return i + 1
}

// acquire plans one instance into reservation ri (index plus one); when it
// fills up, its offerings stop counting as reserved capacity for the
// rest of the batch.
func (s *solver) acquire(ri int) {
	if s.resLeft[ri-1] <= 0 {
		return // not counted
	}
	s.resLeft[ri-1]--
	if s.resLeft[ri-1] == 0 {
		s.reservationsChanged(ri)
	}
}

// release gives back a planned instance of reservation ri.
func (s *solver) release(ri int) {
	if s.resLeft[ri-1] < 0 {
		return
	}
	s.resLeft[ri-1]++
	if s.resLeft[ri-1] == 1 {
		s.reservationsChanged(ri)
	}
}

// reservationsChanged refreshes the types of reservation ri and drops the
// memoised orders and prices, which rank reserved offerings first.
func (s *solver) reservationsChanged(ri int) {
	for _, it := range s.resTypes[ri-1] {
		it.refreshResZones()
	}
	clear(s.orders)
	clear(s.priceMemo)
	clear(s.poolPrices)
	clear(s.classPrices)
}

// bindReservation keeps a new slot's reservation while its target type
// can still launch into it in the slot's masks; otherwise it releases it
// and plans the slot into the reservation its target would use, if one
// has room. So no more slots hold a reservation than it has instances.
func (s *solver) bindReservation(sl *slot) {
	if len(s.resLeft) == 0 || sl.target < 0 {
		return
	}
	t := sl.pool.types[sl.target].it
	if sl.res != 0 {
		if t.usesRes(sl.res, sl.zoneMask, sl.ctMask) {
			return
		}
		s.release(sl.res)
		sl.res = 0
	}
	if ri := t.roomyRes(sl.zoneMask, sl.ctMask); ri != 0 {
		s.acquire(ri)
		sl.res = ri
	}
}

func (s *solver) typesFor(pool string) []*cloud.InstanceType {
	if l, ok := s.snap.InstanceTypes[pool]; ok {
		return l
	}
	return s.snap.InstanceTypes[""]
}

// compileDaemonSets turns DaemonSet templates into requests and selectors.
func (s *solver) compileDaemonSets() {
	for _, ds := range s.snap.DaemonSets {
		if ds == nil {
			continue
		}
		p := &corev1.Pod{Spec: ds.Spec.Template.Spec}
		d := dsInfo{ds: ds, req: s.ri.podRequests(p), tols: p.Spec.Tolerations, valid: true}
		base := requirements{}
		for k, v := range p.Spec.NodeSelector {
			base.add(k, valueSet{values: []string{v}, gt: math.MinInt64, lt: math.MaxInt64})
		}
		if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
			for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
				tr, err := compileSelectorTerm(t)
				if err != nil {
					s.warn(fmt.Sprintf("daemonset %s/%s: %v; ignored", ds.Namespace, ds.Name, err))
					d.valid = false
					break
				}
				d.reqs = append(d.reqs, base.merge(tr))
			}
		}
		if len(d.reqs) == 0 {
			d.reqs = []requirements{base}
		}
		if d.valid {
			s.dss = append(s.dss, d)
		}
	}
}

// dsLands reports whether a DaemonSet pod would run on a node of the pool with the given type labels.
func (s *solver) dsLands(d *dsInfo, p *poolInfo, labels map[string]string) bool {
	if ok, _ := tolerates(d.tols, p.np.Taints, true); !ok {
		return false
	}
	for _, r := range d.reqs {
		ok := true
		for k, v := range r {
			switch {
			case k == LabelZone:
				ok = s.zoneMaskOf(v)&p.zoneMask != 0
			case k == LabelCapacityType:
				ok = s.ctMaskOf(v)&p.ctMask != 0
			case s.typeKeys[k]:
				val, has := labels[k]
				ok = (has && v.has(val)) || (!has && v.allowsAbsent())
			default:
				if pv, has := p.custom[k]; has {
					ok = pv.compatible(v)
				} else {
					ok = v.allowsAbsent()
				}
			}
			if !ok {
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// compilePools builds per-pool indexes: requirements, the pre-filtered
// instance types with DaemonSet overhead, the efficiency ranking and limits.
func (s *solver) compilePools(demand vec) {
	pools := make([]*NodePool, 0, len(s.snap.NodePools))
	for i := range s.snap.NodePools {
		pools = append(pools, &s.snap.NodePools[i])
	}
	sort.SliceStable(pools, func(i, j int) bool {
		if pools[i].Weight != pools[j].Weight {
			return pools[i].Weight > pools[j].Weight
		}
		return pools[i].Name < pools[j].Name
	})
	for _, np := range pools {
		p := &poolInfo{idx: len(s.pools), np: np, nodeCap: -1, fixed: map[string]string{}, minVals: map[string]int{}}
		s.pools = append(s.pools, p)
		s.poolByName[np.Name] = p
		reqs, err := compileRequirements(np.Requirements)
		if err != nil {
			p.err = fmt.Errorf("nodepool requirements: %w", err)
			continue
		}
		for k, v := range np.Labels {
			reqs.add(k, valueSet{values: []string{v}, gt: math.MinInt64, lt: math.MaxInt64})
		}
		reqs.add(LabelNodePool, valueSet{values: []string{np.Name}, gt: math.MinInt64, lt: math.MaxInt64})
		if s.snap.Region != "" {
			if _, ok := reqs[LabelRegion]; !ok {
				reqs.add(LabelRegion, valueSet{values: []string{s.snap.Region}, gt: math.MinInt64, lt: math.MaxInt64})
			}
		}
		p.reqs = reqs
		p.custom = requirements{}
		p.zoneMask, p.ctMask = ^uint64(0), ^uint8(0)
		var typeReqs []string
		for _, k := range reqs.sortedKeys() {
			v := reqs[k]
			if v.minValues > 0 {
				p.minVals[k] = v.minValues
			}
			switch {
			case k == LabelZone:
				p.zoneMask = s.zoneMaskOf(v)
			case k == LabelCapacityType:
				p.ctMask = s.ctMaskOf(v)
			case s.typeKeys[k]:
				typeReqs = append(typeReqs, k)
			default:
				p.custom[k] = v
				if !v.complement && len(v.values) == 1 {
					p.fixed[k] = v.values[0]
				}
			}
		}
		if _, ok := reqs[LabelCapacityType]; !ok {
			// Karpenter's default when a pool says nothing: on-demand only.
			p.ctMask = 0
			if i, ok := s.ctIdx[cloud.CapacityTypeOnDemand]; ok {
				p.ctMask = 1 << uint(i)
			}
		}
		for _, it := range s.typesFor(np.Name) {
			info := s.its[it]
			if info == nil || !info.avail(p.zoneMask, p.ctMask) {
				continue
			}
			ok := true
			for _, k := range typeReqs {
				v := reqs[k]
				val, has := it.Labels[k]
				if (has && !v.has(val)) || (!has && !v.allowsAbsent()) {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			pt := &poolType{it: info, ds: make(vec, len(s.ri.names))}
			for i := range s.dss {
				if s.dsLands(&s.dss[i], p, it.Labels) {
					pt.ds.addInPlace(s.dss[i].req)
				}
			}
			pt.cap = make(vec, max(len(info.alloc), len(pt.ds)))
			for d := range pt.cap {
				pt.cap[d] = info.alloc.get(d) - pt.ds.get(d)
			}
			pt.price = info.price(p.zoneMask, p.ctMask)
			p.types = append(p.types, pt)
		}
		p.all = newBitset(len(p.types), true)
		p.rank(demand)
		p.limits = make(vec, len(s.ri.names))
		p.limited = make([]bool, len(s.ri.names))
		for n, q := range np.Limits {
			if n == "nodes" {
				p.nodeCap = q.Value()
				continue
			}
			d := s.ri.dim(n)
			for len(p.limits) <= d {
				p.limits = append(p.limits, 0)
				p.limited = append(p.limited, false)
			}
			p.limits[d] = quantityValue(n, q)
			p.limited[d] = true
			p.hasLimits = true
		}
		p.used = make(vec, len(s.ri.names))
		if np.Static {
			// Compiled (in-flight claims of the pool need its types) but
			// closed to new NodeClaims: every path that opens one checks err.
			p.err = errStaticPool
		}
	}
}

// errStaticPool is the reason a pending pod gets no node from a static pool.
var errStaticPool = errors.New("static NodePool (spec.replicas): its node count is fixed, pending pods never add nodes to it")

// rank orders the pool's types by how cheaply copies of the type would
// cover the batch's demand (cpu, memory, pods): price / min(1, min_r
// capacity_r / demand_r). A type that alone holds everything costs its
// price; otherwise the cost of enough copies to hold it all. New nodes are
// opened with the best-ranked type that fits as their target, which keeps
// packing close to the cost lower bound.
func (p *poolInfo) rank(demand vec) {
	score := make([]float64, len(p.types))
	for i, t := range p.types {
		f := math.Inf(1)
		for _, d := range []int{dimCPU, dimMemory, dimPods} {
			if demand.get(d) <= 0 {
				continue
			}
			c := t.cap.get(d)
			if c <= 0 {
				f = 0
				break
			}
			f = min(f, float64(c)/float64(demand.get(d)))
		}
		if f <= 0 || math.IsInf(t.price, 1) {
			score[i] = math.Inf(1)
			continue
		}
		score[i] = t.price / min(1, f)
	}
	p.ranking = make([]int, len(p.types))
	for i := range p.ranking {
		p.ranking[i] = i
	}
	sort.SliceStable(p.ranking, func(a, b int) bool {
		ia, ib := p.ranking[a], p.ranking[b]
		if score[ia] != score[ib] {
			return score[ia] < score[ib]
		}
		if p.types[ia].price != p.types[ib].price {
			return p.types[ia].price < p.types[ib].price
		}
		return p.types[ia].it.it.Name < p.types[ib].it.it.Name
	})
	// Infinite scores (types with no cpu, no price) stay at the end; they
	// can still serve pods that need their special resources.
}
