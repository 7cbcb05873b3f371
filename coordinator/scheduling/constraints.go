package scheduling

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// classPool is a class level matched against one NodePool, computed once.
type classPool struct {
	ok       bool
	reason   string
	all      bool // every pool type qualifies
	types    bitset
	zoneMask uint64 // zones where some qualifying type is offered
	ctMask   uint8
	custom   requirements // pod requirements on the pool's custom keys (nil if none)
}

func (s *solver) classPool(L *classLevel, pool *poolInfo) *classPool {
	if L.pools == nil {
		L.pools = make([]*classPool, len(s.pools))
	}
	if cp := L.pools[pool.idx]; cp != nil {
		return cp
	}
	cp := s.computeClassPool(L, pool)
	L.pools[pool.idx] = cp
	return cp
}

func (s *solver) computeClassPool(L *classLevel, pool *poolInfo) *classPool {
	cp := &classPool{}
	if pool.err != nil {
		cp.reason = pool.err.Error()
		return cp
	}
	if ok, t := tolerates(L.c.tolerations, pool.np.Taints, L.key.tolPrefer); !ok {
		cp.reason = fmt.Sprintf("does not tolerate taint %s=%s:%s", t.Key, t.Value, t.Effect)
		return cp
	}
	zm, cm := pool.zoneMask, pool.ctMask
	var typeKeys []string
	for _, k := range L.reqs.sortedKeys() {
		v := L.reqs[k]
		switch {
		case k == LabelZone:
			zm &= s.zoneMaskOf(v)
			if zm == 0 {
				cp.reason = fmt.Sprintf("requirement %s %s matches none of the pool's zones", k, v)
				return cp
			}
		case k == LabelCapacityType:
			cm &= s.ctMaskOf(v)
			if cm == 0 {
				cp.reason = fmt.Sprintf("requirement %s %s matches none of the pool's capacity types", k, v)
				return cp
			}
		case s.typeKeys[k]:
			typeKeys = append(typeKeys, k)
		default:
			pv, ok := pool.custom[k]
			if !ok {
				if !v.allowsAbsent() {
					cp.reason = fmt.Sprintf("requirement %s %s: the pool does not set label %s", k, v, k)
					return cp
				}
				continue
			}
			if !pv.compatible(v) {
				cp.reason = fmt.Sprintf("requirement %s %s conflicts with the pool's %s", k, v, pv)
				return cp
			}
			if cp.custom == nil {
				cp.custom = requirements{}
			}
			cp.custom[k] = v
		}
	}
	cp.types = newBitset(len(pool.types), false)
	cp.all = true
	var lastKey string
	for i, pt := range pool.types {
		ok := true
		for _, k := range typeKeys {
			v := L.reqs[k]
			val, has := pt.it.it.Labels[k]
			if (has && !v.has(val)) || (!has && !v.allowsAbsent()) {
				ok, lastKey = false, k
				break
			}
		}
		if ok && !pt.it.avail(zm, cm) {
			ok, lastKey = false, LabelZone
		}
		if !ok {
			cp.all = false
			continue
		}
		cp.types.set(i)
	}
	if cp.types.count() == 0 {
		switch {
		case len(pool.types) == 0:
			cp.reason = "the pool has no instance types with available offerings"
		case lastKey == LabelZone:
			cp.reason = "no instance type is offered (or available) in the allowed zones and capacity types"
		default:
			cp.reason = fmt.Sprintf("no instance type of the pool satisfies %s %s", lastKey, L.reqs[lastKey])
		}
		return cp
	}
	// Narrow the masks to where qualifying types are actually offered.
	var zAvail uint64
	var cAvail uint8
	for i, pt := range pool.types {
		if !cp.types.has(i) {
			continue
		}
		for ci := 0; ci < maxCT; ci++ {
			if cm&(1<<uint(ci)) != 0 && pt.it.zonesByCT[ci]&zm != 0 {
				zAvail |= pt.it.zonesByCT[ci] & zm
				cAvail |= 1 << uint(ci)
			}
		}
	}
	cp.zoneMask, cp.ctMask = zAvail, cAvail
	cp.ok = true
	return cp
}

// slotCompatible checks taints and node requirements against an existing
// node or in-flight claim (memoised per level and slot).
func (s *solver) slotCompatible(L *classLevel, sl *slot) bool {
	for len(L.slotOK) <= sl.idx {
		L.slotOK = append(L.slotOK, 0)
	}
	if v := L.slotOK[sl.idx]; v != 0 {
		return v == 1
	}
	ok := s.computeSlotCompatible(L, sl)
	L.slotOK[sl.idx] = 2
	if ok {
		L.slotOK[sl.idx] = 1
	}
	return ok
}

func (s *solver) computeSlotCompatible(L *classLevel, sl *slot) bool {
	if sl.closed {
		return false
	}
	if ok, _ := tolerates(L.c.tolerations, sl.taints, L.key.tolPrefer); !ok {
		return false
	}
	if sl.kind == slotNode {
		ok, _ := L.reqs.matchesLabels(sl.labels)
		return ok
	}
	for k, v := range L.reqs {
		if cv, ok := sl.claim[k]; ok {
			if !cv.compatible(v) {
				return false
			}
			continue
		}
		if s.typeKeys[k] && len(sl.types) > 0 {
			for _, t := range sl.types {
				val, has := t.it.Labels[k]
				if (has && !v.has(val)) || (!has && !v.allowsAbsent()) {
					return false
				}
			}
			continue
		}
		if !v.allowsAbsent() {
			return false
		}
	}
	return true
}

// hostnameOK checks the hostname-keyed constraints on one slot.
func (s *solver) hostnameOK(L *classLevel, sl *slot) bool {
	i := sl.idx
	for _, sp := range L.spreads {
		if sp.g.key != LabelHostname {
			continue
		}
		self := int32(0)
		if sp.self {
			self = 1
		}
		// A new node is always a possible domain with count 0, so the
		// global minimum is 0 and each node takes at most maxSkew.
		if sp.g.slotCount(i)+self > sp.maxSkew {
			return false
		}
	}
	for _, t := range L.affs {
		if t.g.key == LabelHostname && !(t.g.slotCount(i) > 0 || (t.g.total == 0 && t.self)) {
			return false
		}
	}
	for _, t := range L.antis {
		if t.g.key == LabelHostname && t.g.slotCount(i) > 0 {
			return false
		}
	}
	for _, g := range L.c.match.owners {
		if g.key == LabelHostname && g.slotCount(i) > 0 {
			return false
		}
	}
	// A pod with a hostname spread on the slot capped how many pods its
	// selector matches may end up there, whatever their bind order.
	for _, g := range L.c.match.matching {
		if g.key == LabelHostname {
			if c := g.capOf(i); c > 0 && g.slotCount(i)+1 > c {
				return false
			}
		}
	}
	return true
}

// keys returns the non-hostname topology keys the level is constrained on.
func (L *classLevel) keys() []string {
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if k != LabelHostname && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, sp := range L.spreads {
		add(sp.g.key)
	}
	for _, t := range L.affs {
		add(t.g.key)
	}
	for _, t := range L.antis {
		add(t.g.key)
	}
	for _, g := range L.c.match.owners {
		add(g.key)
	}
	sort.Strings(out)
	return out
}

// domainsOK checks a fixed slot's domains for every non-hostname key.
func (s *solver) domainsOK(L *classLevel, sl *slot) bool {
	for _, k := range L.keys() {
		allowed := s.allowed(L, k)
		if allowed == nil {
			continue
		}
		if d := s.domainOf(sl, k); d == "" || !allowed[d] {
			return false
		}
	}
	return true
}

// otherDomainsOK checks custom-label topology keys on a new slot.
func (s *solver) otherDomainsOK(L *classLevel, sl *slot) bool {
	for _, k := range L.keys() {
		if k == LabelZone || k == LabelCapacityType {
			continue
		}
		allowed := s.allowed(L, k)
		if allowed == nil {
			continue
		}
		if d := s.domainOf(sl, k); d == "" || !allowed[d] {
			return false
		}
	}
	return true
}

func (s *solver) allowedZones(L *classLevel) uint64 {
	a := s.allowed(L, LabelZone)
	if a == nil {
		return ^uint64(0)
	}
	var m uint64
	for z := range a {
		if i, ok := s.zoneIdx[z]; ok {
			m |= 1 << uint(i)
		}
	}
	return m
}

func (s *solver) allowedCTs(L *classLevel) uint8 {
	a := s.allowed(L, LabelCapacityType)
	if a == nil {
		return ^uint8(0)
	}
	var m uint8
	for c := range a {
		if i, ok := s.ctIdx[c]; ok {
			m |= 1 << uint(i)
		}
	}
	return m
}

type allowedCache struct {
	epoch int
	set   map[string]bool
}

// allowed returns the domains of key the level may go to right now (nil:
// unconstrained). Memoised until the next placement changes counts.
func (s *solver) allowed(L *classLevel, key string) map[string]bool {
	if L.allowedMemo == nil {
		L.allowedMemo = map[string]*allowedCache{}
	}
	if m, ok := L.allowedMemo[key]; ok && m.epoch == s.epoch {
		return m.set
	}
	set := s.computeAllowed(L, key)
	L.allowedMemo[key] = &allowedCache{epoch: s.epoch, set: set}
	return set
}

func (s *solver) computeAllowed(L *classLevel, key string) map[string]bool {
	var out map[string]bool
	restrict := func(pred func(v string) bool, over []string) {
		next := map[string]bool{}
		for _, v := range over {
			if (out == nil || out[v]) && pred(v) {
				next[v] = true
			}
		}
		out = next
	}
	universe := s.domainUniverse(key)
	for _, sp := range L.spreads {
		if sp.g.key != key {
			continue
		}
		counts, elig := s.spreadView(L, sp)
		minC := int32(math.MaxInt32)
		for _, v := range elig {
			minC = min(minC, counts[v])
		}
		if len(elig) == 0 || int32(len(elig)) < sp.minDomains {
			minC = 0
		}
		self := int32(0)
		if sp.self {
			self = 1
		}
		skew := sp.maxSkew
		restrict(func(v string) bool { return counts[v]+self <= skew+minC }, elig)
	}
	for _, t := range L.affs {
		if t.g.key != key {
			continue
		}
		if t.g.total == 0 && t.self {
			continue
		}
		g := t.g
		restrict(func(v string) bool { return g.domain[v] > 0 }, universe)
	}
	for _, t := range L.antis {
		if t.g.key != key {
			continue
		}
		g := t.g
		restrict(func(v string) bool { return g.domain[v] == 0 }, universe)
	}
	for _, g := range L.c.match.owners {
		if g.key != key {
			continue
		}
		gg := g
		restrict(func(v string) bool { return gg.domain[v] == 0 }, universe)
	}
	return out
}

// domainUniverse lists every known value of a topology key.
func (s *solver) domainUniverse(key string) []string {
	if u, ok := s.universe[key]; ok {
		return u
	}
	var u []string
	switch key {
	case LabelZone:
		u = s.zones
	case LabelCapacityType:
		u = s.cts
	default:
		set := map[string]bool{}
		for _, sl := range s.slots {
			if sl.kind != slotNew {
				if v, ok := sl.labels[key]; ok {
					set[v] = true
				}
			}
		}
		for _, p := range s.pools {
			if v, ok := p.fixed[key]; ok {
				set[v] = true
			}
		}
		for v := range set {
			u = append(u, v)
		}
		sort.Strings(u)
	}
	s.universe[key] = u
	return u
}

// spreadView is what kube-scheduler's PodTopologySpread sees for a
// zone-like constraint: the matching pods per domain on the nodes the
// constraint counts (nodeAffinityPolicy Honor: nodes matching the pod's
// nodeSelector and required node affinity; nodeTaintsPolicy Honor: nodes
// whose taints it tolerates), and the domains of those nodes: existing
// ones, new ones opened so far, and those a new node for the pod could be
// in (preferences aside).
func (s *solver) spreadView(L *classLevel, sp spreadC) (map[string]int32, []string) {
	c := L.c
	key := sp.g.key
	filter := (sp.affHonor && c.eligTerms != nil) || sp.taintHonor
	set := map[string]bool{}
	var doms []string
	addDom := func(v string) {
		if v != "" && !set[v] {
			set[v] = true
			doms = append(doms, v)
		}
	}
	for t := range c.nodeTerms {
		k := L.key
		k.term, k.nodePref = t, len(c.nodePrefs)
		for _, v := range s.eligible(c.level(k), key) {
			addDom(v)
		}
	}
	counts := sp.g.domain
	if filter {
		counts = map[string]int32{}
	}
	for _, sl := range s.slots {
		if filter && !s.spreadCounts(c, sp, sl) {
			continue
		}
		v := s.domainOf(sl, key)
		if v == "" {
			continue
		}
		if sl.kind != slotNew || len(sl.pods) > 0 {
			addDom(v)
		}
		if filter {
			counts[v] += sp.g.slotCount(sl.idx)
		}
	}
	sort.Strings(doms)
	return counts, doms
}

// spreadCounts reports whether a slot's pods count for the spread (and
// its domain is one), per the constraint's node inclusion policies.
func (s *solver) spreadCounts(c *podClass, sp spreadC, sl *slot) bool {
	if sp.taintHonor {
		taints := sl.taints
		if sl.kind == slotNew {
			taints = sl.pool.np.Taints
		}
		if ok, _ := tolerates(c.tolerations, taints, true); !ok {
			return false
		}
	}
	if !sp.affHonor || c.eligTerms == nil {
		return true
	}
	for _, t := range c.eligTerms {
		if s.slotMatches(sl, t) {
			return true
		}
	}
	return false
}

// slotMatches reports whether the node a slot becomes satisfies r: existing
// nodes and claims by their labels, new nodes by their pool's labels, the
// domains pinned so far and their target type's labels.
func (s *solver) slotMatches(sl *slot, r requirements) bool {
	for k, v := range r {
		val, ok := s.slotLabel(sl, k)
		if !ok {
			if !v.allowsAbsent() {
				return false
			}
			continue
		}
		if !v.has(val) {
			return false
		}
	}
	return true
}

func (s *solver) slotLabel(sl *slot, k string) (string, bool) {
	if sl.kind != slotNew {
		v, ok := sl.labels[k]
		return v, ok
	}
	switch {
	case k == LabelZone || k == LabelCapacityType:
		v := s.domainOf(sl, k)
		return v, v != ""
	case s.typeKeys[k]:
		if sl.target >= 0 {
			v, ok := sl.pool.types[sl.target].it.it.Labels[k]
			return v, ok
		}
		return "", false
	}
	if v := s.domainOf(sl, k); v != "" {
		return v, true
	}
	return "", false
}

// eligible lists the domains a spread constraint counts for this level:
// those its node requirements allow and some pool or node could provide.
func (s *solver) eligible(L *classLevel, key string) []string {
	if L.eligibleMemo == nil {
		L.eligibleMemo = map[string][]string{}
	}
	if e, ok := L.eligibleMemo[key]; ok {
		return e
	}
	var out []string
	for _, v := range s.domainUniverse(key) {
		if r, ok := L.reqs[key]; ok && !r.has(v) {
			continue
		}
		if s.domainReachable(L, key, v) {
			out = append(out, v)
		}
	}
	L.eligibleMemo[key] = out
	return out
}

func (s *solver) domainReachable(L *classLevel, key, v string) bool {
	for _, p := range s.pools {
		cp := s.classPool(L, p)
		if !cp.ok {
			continue
		}
		switch key {
		case LabelZone:
			if i, ok := s.zoneIdx[v]; ok && cp.zoneMask&(1<<uint(i)) != 0 {
				return true
			}
		case LabelCapacityType:
			if i, ok := s.ctIdx[v]; ok && cp.ctMask&(1<<uint(i)) != 0 {
				return true
			}
		default:
			if p.fixed[key] == v {
				return true
			}
		}
	}
	for _, sl := range s.slots {
		if sl.kind != slotNew && sl.labels[key] == v && s.slotCompatible(L, sl) {
			return true
		}
	}
	return false
}

// reasons explains, per pool, why a pod could not be placed.
func (s *solver) reasons(p *podInfo, L *classLevel) map[string]string {
	out := map[string]string{}
	if len(s.pools) == 0 {
		out[""] = "no NodePool exists and no existing node fits"
		return out
	}
	for _, pool := range s.pools {
		out[pool.np.Name] = s.poolReason(p, L, pool)
	}
	return out
}

func (s *solver) poolReason(p *podInfo, L *classLevel, pool *poolInfo) string {
	cp := s.classPool(L, pool)
	if !cp.ok {
		return cp.reason
	}
	var fits, withinLimits, priced bool
	short := -1
	var largest vec
	empty := &slot{pool: pool, reserved: make(vec, len(s.ri.names))}
	for i, pt := range pool.types {
		if !cp.types.has(i) {
			continue
		}
		if d := firstShortDim(nil, p.req, pt.cap); d >= 0 {
			short = d
			if largest == nil || pt.cap.get(d) > largest.get(d) {
				largest = pt.cap
			}
			continue
		}
		fits = true
		if !math.IsInf(pt.it.price(cp.zoneMask, cp.ctMask), 1) {
			priced = true
		}
		if s.withinLimits(pool, empty, pt) {
			withinLimits = true
		}
	}
	switch {
	case !fits:
		name := s.ri.names[short]
		return fmt.Sprintf("no instance type has enough %s: the pod needs %s, the largest offers %s (after DaemonSet overhead)",
			name, fmtQty(s, short, p.req.get(short)), fmtQty(s, short, largest.get(short)))
	case !priced:
		// Offered only through capacity reservations other NodeClaims of
		// this batch already fill.
		return errReservationsFull
	case pool.nodeCap >= 0 && pool.nodes+1 > pool.nodeCap:
		return fmt.Sprintf("node limit %d reached", pool.nodeCap)
	case !withinLimits:
		var lims []string
		for d, l := range pool.limits {
			if pool.limited[d] {
				lims = append(lims, fmt.Sprintf("%s %s (in use or launching: %s)", s.ri.names[d], fmtQty(s, d, l), fmtQty(s, d, pool.used.get(d))))
			}
		}
		return "a new node would exceed the pool's limits: " + strings.Join(lims, ", ")
	case s.opts.NoNewNodeClaims || (s.opts.MaxNewNodeClaims > 0 && s.nNew >= s.opts.MaxNewNodeClaims):
		return "new nodes are not allowed in this simulation"
	case len(pool.minVals) > 0:
		return "topology, host ports or minValues cannot be satisfied"
	default:
		return "topology constraints (spread, pod affinity or anti-affinity) or host ports cannot be satisfied"
	}
}

func fmtQty(s *solver, d int, v int64) string {
	tmp := make(vec, d+1)
	tmp[d] = v
	l := s.ri.toList(tmp)
	q, ok := l[s.ri.names[d]]
	if !ok {
		return "0"
	}
	return q.String()
}
