package scheduling

import (
	"fmt"
	"math"
	"math/bits"
)

// Placement: one pod at a time, placePod → find → findSlot → fits →
// commit; fits is split by concern (specialisation, room, existing slots,
// new slots) and a new slot's target type is chosen by pickTarget.

// runState carries scan positions across consecutive identical pods.
type runState struct {
	level *classLevel
	start int // slots before start reject this run for good
	last  int // slot the previous pod of the run went to (+1), 0 when none
}

// placePod places one pod at the class's current relaxation level,
// relaxing preferences one at a time until it fits or none are left.
func (s *solver) placePod(p *podInfo, scan *runState, rp runParams) {
	c := p.class
	if c.err != nil {
		s.unschedulable(p, map[string]string{"": c.err.Error()})
		return
	}
	key := c.current
	for {
		L := c.level(key)
		if scan.level != L {
			*scan = runState{level: L}
		}
		if pl, ok := s.find(p, L, scan, rp); ok {
			if key != c.current {
				c.current = key
				s.stats.Relaxations++
			}
			s.commit(p, L, pl, scan, rp)
			return
		}
		nexts := c.next(key)
		if len(nexts) == 0 {
			s.unschedulable(p, s.reasons(p, c.level(c.current)))
			return
		}
		key = s.nextRelaxation(p, nexts, rp)
	}
}

// nextRelaxation picks among single relaxations the first that lets the
// pod schedule (the first when none does), so a satisfiable preference is
// not dropped with an unsatisfiable one.
func (s *solver) nextRelaxation(p *podInfo, nexts []levelKey, rp runParams) levelKey {
	if len(nexts) > 1 {
		for _, nk := range nexts {
			if _, ok := s.find(p, p.class.level(nk), &runState{level: p.class.level(nk)}, rp); ok {
				return nk
			}
		}
	}
	return nexts[0]
}

// proposal is a validated placement, applied by commit.
type proposal struct {
	sl       *slot
	isNew    bool
	zoneMask uint64
	ctMask   uint8
	types    bitset // nil: unchanged
	target   int
	custom   requirements
}

// find looks for the first slot that takes the pod, then for a new one.
// A specialised run's pod that finds neither (a node limit, one new node
// for consolidation) may still take room on the shared nodes.
func (s *solver) find(p *podInfo, L *classLevel, scan *runState, rp runParams) (proposal, bool) {
	pl, ok := s.findSlot(p, L, scan, rp)
	if !ok && rp.special {
		rp.shared = true
		pl, ok = s.findSlot(p, L, &runState{level: L}, rp)
	}
	return pl, ok
}

// findSlot tries the slot the run's previous pod went to, then every slot
// from the scan start, then a new slot of each pool in order.
func (s *solver) findSlot(p *podInfo, L *classLevel, scan *runState, rp runParams) (proposal, bool) {
	var pl proposal
	if scan.last > 0 {
		if ok, _ := s.fits(s.slots[scan.last-1], p, L, rp, &pl); ok {
			return pl, true
		}
	}
	for i := scan.start; i < len(s.slots); i++ {
		sl := s.slots[i]
		ok, permanent := s.fits(sl, p, L, rp, &pl)
		if ok {
			return pl, true
		}
		if permanent && i == scan.start {
			scan.start++
		}
	}
	if s.opts.NoNewNodeClaims || (s.opts.MaxNewNodeClaims > 0 && s.nNew >= s.opts.MaxNewNodeClaims) {
		return pl, false
	}
	for _, pool := range s.pools {
		if pool.err != nil || (pool.nodeCap >= 0 && pool.nodes+1 > pool.nodeCap) {
			continue
		}
		sl := &slot{idx: len(s.slots), kind: slotNew, pool: pool, labels: pool.fixed, typeSet: pool.all,
			zoneMask: pool.zoneMask, ctMask: pool.ctMask, target: -1, used: make(vec, len(s.ri.names)), reserved: make(vec, len(s.ri.names))}
		if ok, _ := s.fits(sl, p, L, rp, &pl); ok {
			pl.isNew = true
			return pl, true
		}
	}
	return pl, false
}

// fits checks one slot and, when the pod fits, fills pl. permanent
// reports that the slot will keep rejecting pods of this run (so scans
// may skip it). The checks run cheapest first: specialisation, room
// (resources, host ports), then the slot kind's own checks.
func (s *solver) fits(sl *slot, p *podInfo, L *classLevel, rp runParams, pl *proposal) (ok, permanent bool) {
	if rp.special && !rp.shared && sl.kind == slotNew && sl.target >= 0 && !sl.special {
		// A specialised run's pods are cheaper on nodes of their own type;
		// taking room on shared nodes (sized for the rest of the batch)
		// only pushes the shared pods onto extra nodes.
		return false, true
	}
	if !hasRoom(sl, p, L.c) {
		return false, true
	}
	if sl.kind != slotNew {
		return s.fitsPlaced(sl, L, pl)
	}
	return s.fitsNew(sl, p, L, rp, pl)
}

// hasRoom: the slot's free capacity holds the pod's requests (new slots
// once they have a target type) and no host port conflicts.
func hasRoom(sl *slot, p *podInfo, c *podClass) bool {
	if sl.kind != slotNew || sl.target >= 0 {
		if !fitsWithin(sl.used, p.req, sl.capacity) {
			return false
		}
	}
	for _, hp := range c.ports {
		for _, o := range sl.ports {
			if hp.conflicts(o) {
				return false
			}
		}
	}
	return true
}

// fitsPlaced checks an existing node or in-flight claim: requirements and
// taints, then topology (hostname-keyed, then the other keys).
func (s *solver) fitsPlaced(sl *slot, L *classLevel, pl *proposal) (ok, permanent bool) {
	if !s.slotCompatible(L, sl) {
		return false, true
	}
	if !s.hostnameOK(L, sl) || !s.domainsOK(L, sl) {
		return false, L.monotone
	}
	*pl = proposal{sl: sl}
	return true, false
}

// fitsNew checks a new slot: the class × pool compatibility, topology,
// then narrows what the slot may become (zones and capacity types, the
// pool's custom labels, instance types), checks its target type and pins
// the domains topology needs exact.
func (s *solver) fitsNew(sl *slot, p *podInfo, L *classLevel, rp runParams, pl *proposal) (ok, permanent bool) {
	cp := s.classPool(L, sl.pool)
	if !cp.ok {
		return false, true
	}
	if !s.hostnameOK(L, sl) {
		return false, L.monotone
	}
	zm := sl.zoneMask & cp.zoneMask & s.allowedZones(L)
	cm := sl.ctMask & cp.ctMask & s.allowedCTs(L)
	if zm == 0 || cm == 0 {
		return false, L.monotone || sl.zoneMask&cp.zoneMask == 0 || sl.ctMask&cp.ctMask == 0
	}
	if !s.otherDomainsOK(L, sl) {
		return false, L.monotone
	}
	custom, ok := narrowCustom(sl, cp)
	if !ok {
		return false, true
	}
	types, newTypes := s.narrowTypes(sl, cp)
	need := sl.used.plus(p.req)
	target := s.slotTarget(sl, p, rp, types, zm, cm, need)
	if target < 0 {
		return false, true
	}
	pool := sl.pool
	zm, cm = s.pinDomains(L, pool.types[target].it, zm, cm)
	if len(pool.minVals) > 0 && !s.minValuesOK(pool, types, zm, cm, need) {
		return false, true
	}
	*pl = proposal{sl: sl, zoneMask: zm, ctMask: cm, target: target, custom: custom}
	if newTypes != nil {
		pl.types = append(bitset(nil), newTypes...)
	}
	return true, false
}

// narrowCustom intersects the slot's custom-label requirements with the
// class's; ok is false when they conflict. custom is nil when the class
// sets none.
func narrowCustom(sl *slot, cp *classPool) (custom requirements, ok bool) {
	for k, v := range cp.custom {
		cur, set := sl.custom[k]
		if !set {
			cur = sl.pool.custom[k]
		}
		if !cur.compatible(v) {
			return nil, false
		}
		if custom == nil {
			custom = requirements{}
		}
		custom[k] = cur.intersect(v)
	}
	return custom, true
}

// narrowTypes intersects the slot's instance types with the class's.
// newTypes is the narrowed set when it differs from the slot's (in the
// solver's scratch space, copied by the caller if kept), else nil.
func (s *solver) narrowTypes(sl *slot, cp *classPool) (types, newTypes bitset) {
	types = sl.typeSet
	if cp.all {
		return types, nil
	}
	if len(s.scratch) < len(types) {
		s.scratch = make(bitset, len(types))
	}
	if andInto(s.scratch[:len(types)], types, cp.types) {
		newTypes = s.scratch[:len(types)]
		types = newTypes
	}
	return types, newTypes
}

// slotTarget returns the type the new slot is packed against once it
// takes need: its current target if still allowed in the masks (-1 when
// need outgrows it), else a new pick; -1 when none fits.
func (s *solver) slotTarget(sl *slot, p *podInfo, rp runParams, types bitset, zm uint64, cm uint8, need vec) int {
	pool := sl.pool
	target := sl.target
	if target >= 0 && (!types.has(target) || !pool.types[target].it.avail(zm, cm)) {
		target = -1
	}
	if target >= 0 {
		if !need.lessOrEqual(pool.types[target].cap) {
			return -1
		}
		return target
	}
	return s.pickTarget(sl, p, rp, types, zm, cm, need)
}

// pinDomains pins zone / capacity type when the pod takes part in
// topology on them, so the per-domain counts stay exact; t is the slot's
// target type.
func (s *solver) pinDomains(L *classLevel, t *itInfo, zm uint64, cm uint8) (uint64, uint8) {
	if bits.OnesCount64(zm) > 1 && s.needsPin(L, LabelZone) {
		var best uint64
		for ci := 0; ci < maxCT; ci++ {
			if cm&(1<<uint(ci)) != 0 {
				best |= t.zonesByCT[ci] & zm
			}
		}
		zm = s.pickDomain(L, LabelZone, best, func(i int) string { return s.zones[i] })
	}
	if bits.OnesCount8(cm) > 1 && s.needsPin(L, LabelCapacityType) {
		var best uint64
		for ci := 0; ci < maxCT; ci++ {
			if cm&(1<<uint(ci)) != 0 && t.zonesByCT[ci]&zm != 0 {
				best |= 1 << uint(ci)
			}
		}
		cm = uint8(s.pickDomain(L, LabelCapacityType, best, func(i int) string { return s.cts[i] }))
	}
	return zm, cm
}

// pickTarget chooses the type a new slot is packed against, among the
// pool's types that hold need, are offered in the masks and keep the pool
// within its limits.
//
// For a run of identical pods the choice is exact: a node of type t holds
// n_t = min_r floor(free_r / request_r) of them, so covering the N pods
// left in the run with t costs ceil(N / n_t) × price_t; the cheapest total
// wins (ties: more pods per node). Nodes therefore specialise: cpu-heavy
// runs get compute-optimised types, memory-heavy runs memory-optimised
// ones, and a run's last node is the cheapest that holds its tail.
//
// Pods of hostname-capped classes take at most a few per node, so their
// nodes are sized to cover everything still pending as cheaply as possible
// (price / min(1, min_r capacity_r / demand_r)); other pods fill them.
// Either way finalize later shrinks each slot to the cheapest types that
// hold what it actually got.
func (s *solver) pickTarget(sl *slot, p *podInfo, rp runParams, types bitset, zm uint64, cm uint8, need vec) int {
	capped := p.class.hostCapped || !rp.special
	n := float64(max(1, rp.left))
	// When this is the last new node allowed (consolidation asks "one new
	// node?"), it must hold everything still pending if any type can.
	if s.opts.MaxNewNodeClaims > 0 && s.nNew+1 >= s.opts.MaxNewNodeClaims && !(sl.target >= 0) {
		if t := s.pickCoverAll(sl, types, zm, cm, need); t >= 0 {
			return t
		}
	}
	best, f := s.pickTargetShare(sl, p, types, zm, cm, need, capped, n, 1)
	// A class that takes one pod per node needs at least as many nodes as
	// it has pods left, K. When K nodes of the type chosen to cover
	// everything pending would hold several times all of it, the first
	// such node takes everything first-fit and the others stay nearly
	// empty: size each for a K-th of what is pending instead (Karpenter's
	// benchmark: one anti-affinity group over a fifth of the pods, -16 %).
	if k := float64(s.classLeft[p.class.id]); best >= 0 && p.class.hostCapped && k > 1 && k*f >= shareSizingFactor {
		if b, _ := s.pickTargetShare(sl, p, types, zm, cm, need, capped, n, k); b >= 0 {
			best = b
		}
	}
	return best
}

// shareSizingFactor: how many times over K one-per-node nodes must hold the
// pending demand before they are sized for a K-th of it (measured: the real
// catalogue's mixed batches, ≈1.4, lose 10 % with share sizing).
const shareSizingFactor = 4

// pickTargetShare is pickTarget's scan with the pending demand divided by
// share; it returns the type and, for capped pods, the fraction of the
// (shared) demand the type covers.
func (s *solver) pickTargetShare(sl *slot, p *podInfo, types bitset, zm uint64, cm uint8, need vec, capped bool, n, share float64) (int, float64) {
	pool := sl.pool
	prices := s.prices(pool, zm, cm)
	best, bestScore, bestPer, bestPrice := -1, math.Inf(1), 0.0, math.Inf(1)
	for i, pt := range pool.types {
		price := prices[i]
		if math.IsInf(price, 1) || !types.has(i) || !need.lessOrEqual(pt.cap) || (pool.hasLimits && !s.withinLimits(pool, sl, pt)) {
			continue
		}
		var score, per float64
		if capped {
			f := math.Inf(1)
			for _, d := range []int{dimCPU, dimMemory, dimPods} {
				want := sl.used.get(d) + max(int64(float64(s.aggRemaining.get(d))/share), p.req.get(d))
				if want > 0 {
					f = min(f, float64(pt.cap.get(d))/float64(want))
				}
			}
			score, per = price/min(1, f), f
		} else {
			per = math.Inf(1)
			for d, r := range p.req {
				if r > 0 {
					per = min(per, math.Floor(float64(pt.cap.get(d)-sl.used.get(d))/float64(r)))
				}
			}
			if per < 1 {
				continue
			}
			score = math.Ceil(n/min(per, n)) * price
		}
		if score < bestScore || (score == bestScore && (per > bestPer || (per == bestPer && (price < bestPrice || (price == bestPrice && pt.it.it.Name < pool.types[best].it.it.Name))))) {
			best, bestScore, bestPer, bestPrice = i, score, per, price
		}
	}
	return best, bestPer
}

// pickCoverAll returns the cheapest type that holds need plus the demand
// of every pod not yet placed, or -1.
func (s *solver) pickCoverAll(sl *slot, types bitset, zm uint64, cm uint8, need vec) int {
	pool := sl.pool
	all := need.plus(s.remaining)
	for d, x := range need {
		all[d] -= x // remaining already includes the pod being placed
	}
	for d := range all {
		all[d] = max(all[d], need.get(d))
	}
	prices := s.prices(pool, zm, cm)
	best, bestPrice := -1, math.Inf(1)
	for i, pt := range pool.types {
		price := prices[i]
		if math.IsInf(price, 1) || !types.has(i) || !all.lessOrEqual(pt.cap) || (pool.hasLimits && !s.withinLimits(pool, sl, pt)) {
			continue
		}
		if price < bestPrice {
			best, bestPrice = i, price
		}
	}
	return best
}

// prices returns each pool type's price in the masks (+Inf where it is not
// offered), memoised per masks.
func (s *solver) prices(pool *poolInfo, zm uint64, cm uint8) []float64 {
	k := orderKey{pool, zm, cm}
	if p, ok := s.priceMemo[k]; ok {
		return p
	}
	p := make([]float64, len(pool.types))
	for i, pt := range pool.types {
		p[i] = math.Inf(1)
		if pt.it.avail(zm, cm) {
			p[i] = pt.it.price(zm, cm)
		}
	}
	s.priceMemo[k] = p
	return p
}

func (s *solver) withinLimits(pool *poolInfo, sl *slot, pt *poolType) bool {
	for d, lim := range pool.limits {
		if !pool.limited[d] {
			continue
		}
		if pool.used.get(d)-sl.reserved.get(d)+pt.it.capacity.get(d) > lim {
			return false
		}
	}
	return true
}

func (s *solver) minValuesOK(pool *poolInfo, types bitset, zm uint64, cm uint8, need vec) bool {
	for k, mv := range pool.minVals {
		seen := map[string]bool{}
		for i, pt := range pool.types {
			if !types.has(i) || !need.lessOrEqual(pt.cap) || !pt.it.avail(zm, cm) {
				continue
			}
			var v string
			switch k {
			case LabelZone, LabelCapacityType:
				continue
			default:
				v = pt.it.it.Labels[k]
			}
			seen[v] = true
			if len(seen) >= mv {
				break
			}
		}
		if k != LabelZone && k != LabelCapacityType && len(seen) < mv {
			return false
		}
	}
	return true
}

// needsPin reports whether placing a pod of this level on an unpinned slot
// must fix the slot's domain for key.
func (s *solver) needsPin(L *classLevel, key string) bool {
	for _, g := range L.c.match.matching {
		if g.key == key {
			return true
		}
	}
	for _, g := range L.c.owns {
		if g.key == key {
			return true
		}
	}
	for _, sp := range L.spreads {
		if sp.g.key == key {
			return true
		}
	}
	for _, t := range L.affs {
		if t.g.key == key {
			return true
		}
	}
	for _, t := range L.antis {
		if t.g.key == key {
			return true
		}
	}
	return false
}

// pickDomain picks one bit of mask: the least-populated domain of the
// level's first spread on key, else the lowest index.
func (s *solver) pickDomain(L *classLevel, key string, mask uint64, name func(int) string) uint64 {
	if mask == 0 {
		return 0
	}
	for _, sp := range L.spreads {
		if sp.g.key != key {
			continue
		}
		best, bestN := -1, int32(math.MaxInt32)
		for m := mask; m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			if n := sp.g.domain[name(i)]; n < bestN {
				best, bestN = i, n
			}
		}
		return 1 << uint(best)
	}
	return 1 << uint(bits.TrailingZeros64(mask))
}

// commit applies a proposal.
func (s *solver) commit(p *podInfo, L *classLevel, pl proposal, scan *runState, rp runParams) {
	sl := pl.sl
	if pl.isNew {
		sl.idx = len(s.slots)
		sl.name = fmt.Sprintf("new-%d", s.nNew)
		s.slots = append(s.slots, sl)
		s.nNew++
		sl.pool.nodes++
		sl.special = rp.special
	}
	if sl.kind == slotNew {
		sl.zoneMask, sl.ctMask = pl.zoneMask, pl.ctMask
		if pl.types != nil {
			sl.typeSet = pl.types
		}
		if pl.custom != nil {
			if sl.custom == nil {
				sl.custom = requirements{}
			}
			for k, v := range pl.custom {
				sl.custom[k] = v
			}
		}
		if pl.target != sl.target {
			pt := sl.pool.types[pl.target]
			for d := range sl.pool.used {
				sl.pool.used[d] += pt.it.capacity.get(d) - sl.reserved.get(d)
			}
			sl.reserved = append(vec(nil), pt.it.capacity...)
			sl.target = pl.target
			sl.capacity = pt.cap
		}
		s.bindReservation(sl)
	}
	for _, sp := range L.spreads {
		if sp.hard && sp.g.key == LabelHostname {
			sp.g.setCap(sl.idx, sp.maxSkew)
		}
	}
	sl.used.addInPlace(p.req)
	sl.pods = append(sl.pods, p)
	sl.ports = append(sl.ports, p.class.ports...)
	s.countPod(sl, p.class.ns, p.class.labels, p.class.owns)
	scan.last = sl.idx + 1
}
