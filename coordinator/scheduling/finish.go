package scheduling

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"

	"github.com/dovetail-dev/dovetail/cloud"
)

// finish turns slots into the Result.
func (s *solver) finish() Result {
	res := Result{Placements: []Placement{}, NewNodeClaims: []NewNodeClaim{}}
	for _, sl := range s.slots {
		switch sl.kind {
		case slotNode, slotClaim:
			for _, p := range sl.pods {
				pl := Placement{Pod: p.pod, PodName: p.name}
				if sl.kind == slotNode {
					pl.Node = sl.name
				} else {
					pl.NodeClaim = sl.name
				}
				res.Placements = append(res.Placements, pl)
			}
		case slotNew:
			if len(sl.pods) == 0 {
				continue
			}
			nc := s.finalize(sl)
			if len(nc.Options) == 0 {
				// Only reserved offerings were left and their reservations
				// are planned full in this batch: the pods wait for the
				// next one (Karpenter defers them the same way).
				for _, p := range sl.pods {
					s.unsched = append(s.unsched, Unschedulable{Pod: p.pod, PodName: p.name,
						Reasons: map[string]string{sl.pool.np.Name: errReservationsFull},
						Message: "NodePool " + sl.pool.np.Name + ": " + errReservationsFull})
				}
				continue
			}
			res.NewNodeClaims = append(res.NewNodeClaims, nc)
		}
	}
	res.Unschedulable = s.unsched
	sort.SliceStable(res.Placements, func(i, j int) bool { return res.Placements[i].PodName < res.Placements[j].PodName })
	sort.SliceStable(res.Unschedulable, func(i, j int) bool { return res.Unschedulable[i].PodName < res.Unschedulable[j].PodName })
	if res.Unschedulable == nil {
		res.Unschedulable = []Unschedulable{}
	}
	s.stats.NewNodeClaims = len(res.NewNodeClaims)
	s.stats.ExistingPlaced = len(res.Placements)
	s.stats.Unschedulable = len(res.Unschedulable)
	s.stats.Warnings = append(s.stats.Warnings, s.warnings...)
	s.stats.Warnings = append(s.stats.Warnings, s.topo.warnings...)
	if len(s.stats.Warnings) > 50 {
		s.stats.Warnings = s.stats.Warnings[:50]
	}
	res.Stats = s.stats
	return res
}

// errReservationsFull: a new node's only launch options were capacity
// reservations that earlier NodeClaims of the batch already fill.
const errReservationsFull = "its capacity reservations have no free instance left in this batch"

type candidate struct {
	i  int
	pt *poolType
}

// finalize builds the NodeClaim for a new slot: every pool type that
// holds the pods (with its DaemonSets), is offered in the slot's zones and
// capacity types and keeps the pool within limits, cheapest first.
func (s *solver) finalize(sl *slot) NewNodeClaim {
	pool := sl.pool
	var cands []candidate
	var rest []candidate // beyond MaxInstanceTypes, kept only for minValues
	for _, i := range s.priceOrder(pool, sl.zoneMask, sl.ctMask) {
		pt := pool.types[i]
		if !sl.typeSet.has(i) || !sl.used.lessOrEqual(pt.cap) || !s.underReservation(pool, sl, pt) {
			continue
		}
		c := candidate{i: i, pt: pt}
		if len(cands) < s.opts.MaxInstanceTypes {
			cands = append(cands, c)
		} else if len(pool.minVals) > 0 {
			rest = append(rest, c)
		} else {
			break
		}
	}
	if len(cands) == 0 && sl.target >= 0 {
		// The target always qualifies; this only guards against rounding.
		cands = append(cands, candidate{i: sl.target, pt: pool.types[sl.target]})
	}
	cands = s.extendForMinValues(pool, cands, rest)
	cands = s.finalReservation(sl, cands)

	nOpts := 0
	for _, c := range cands {
		nOpts += len(c.pt.it.offers)
	}
	opts := make([]cloud.LaunchOption, 0, nOpts)
	odOpts := make([]cloud.LaunchOption, 0, nOpts)
	resOpts := make([]cloud.LaunchOption, 0)
	zonesUsed := uint64(0)
	ctUsed := uint8(0)
	names := make([]string, 0, len(cands))
	for _, c := range cands {
		emitted := false
		for _, o := range c.pt.it.offers {
			if sl.zoneMask&(1<<uint(o.zone)) == 0 || sl.ctMask&(1<<uint(o.ct)) == 0 {
				continue
			}
			if o.ri != 0 && o.ri != sl.res && s.resLeft[o.ri-1] >= 0 {
				// A counted reservation this claim was not planned into:
				// other claims of the batch hold its free instances.
				continue
			}
			emitted = true
			lo := cloud.LaunchOption{InstanceType: c.pt.it.it.Name, Zone: s.zones[o.zone], CapacityType: s.cts[o.ct], Price: o.price, ReservationID: o.res}
			zonesUsed |= 1 << uint(o.zone)
			ctUsed |= 1 << uint(o.ct)
			switch o.ct {
			case ctReserved:
				resOpts = append(resOpts, lo)
			case ctSpot:
				opts = append(opts, lo)
			default:
				odOpts = append(odOpts, lo)
			}
		}
		if emitted {
			names = append(names, c.pt.it.it.Name)
		}
	}
	byPrice := func(l []cloud.LaunchOption) {
		slices.SortFunc(l, func(a, b cloud.LaunchOption) int {
			if a.Price != b.Price {
				return cmp.Compare(a.Price, b.Price)
			}
			if a.InstanceType != b.InstanceType {
				return strings.Compare(a.InstanceType, b.InstanceType)
			}
			if a.Zone != b.Zone {
				return strings.Compare(a.Zone, b.Zone)
			}
			if a.CapacityType != b.CapacityType {
				return strings.Compare(a.CapacityType, b.CapacityType)
			}
			return strings.Compare(a.ReservationID, b.ReservationID)
		})
	}
	// Karpenter's order: reserved capacity, then spot, then on-demand.
	byPrice(resOpts)
	byPrice(opts)
	byPrice(odOpts)
	opts = append(append(resOpts, opts...), odOpts...)

	reqs := pool.reqs.clone()
	for k, v := range sl.custom {
		reqs[k] = v
	}
	reqs[LabelInstanceType] = valueSet{values: sortedUnique(names), gt: math.MinInt64, lt: math.MaxInt64, minValues: reqs[LabelInstanceType].minValues}
	var zs, cs []string
	for m := zonesUsed; m != 0; m &= m - 1 {
		zs = append(zs, s.zones[bits.TrailingZeros64(m)])
	}
	for m := ctUsed; m != 0; m &= m - 1 {
		cs = append(cs, s.cts[bits.TrailingZeros8(m)])
	}
	reqs[LabelZone] = valueSet{values: sortedUnique(zs), gt: math.MinInt64, lt: math.MaxInt64, minValues: reqs[LabelZone].minValues}
	reqs[LabelCapacityType] = valueSet{values: sortedUnique(cs), gt: math.MinInt64, lt: math.MaxInt64, minValues: reqs[LabelCapacityType].minValues}

	nc := NewNodeClaim{
		NodePool:      pool.np.Name,
		NodeClassRef:  pool.np.NodeClassRef,
		Labels:        map[string]string{LabelNodePool: pool.np.Name},
		Annotations:   pool.np.Annotations,
		Taints:        pool.np.Taints,
		StartupTaints: pool.np.StartupTaints,
		Requirements:  reqs.toList(),
		InstanceTypes: names,
		Options:       opts,
	}
	for k, v := range pool.np.Labels {
		nc.Labels[k] = v
	}
	req := append(vec(nil), sl.used...)
	if len(cands) > 0 {
		req.addInPlace(cands[0].pt.ds)
	}
	nc.Requests = s.ri.toList(req)
	for _, p := range sl.pods {
		nc.Pods = append(nc.Pods, p.pod)
		nc.PodNames = append(nc.PodNames, p.name)
	}
	if len(opts) > 0 {
		nc.Price, nc.CapacityType, nc.Zone = opts[0].Price, opts[0].CapacityType, opts[0].Zone
	}
	return nc
}

// finalReservation settles the claim's capacity reservation: a slot not
// planned into one takes the first candidate's reservation that still has
// room (the batch's leftovers, in claim order); a slot planned into one
// keeps the type that launches into it among its candidates.
func (s *solver) finalReservation(sl *slot, cands []candidate) []candidate {
	if len(s.resLeft) == 0 {
		return cands
	}
	if sl.res == 0 {
		for _, c := range cands {
			if ri := c.pt.it.roomyRes(sl.zoneMask, sl.ctMask); ri != 0 {
				s.acquire(ri)
				sl.res = ri
				break
			}
		}
		return cands
	}
	for _, c := range cands {
		if c.pt.it.usesRes(sl.res, sl.zoneMask, sl.ctMask) {
			return cands
		}
	}
	if sl.target >= 0 && sl.pool.types[sl.target].it.usesRes(sl.res, sl.zoneMask, sl.ctMask) {
		// Its reservation is the cheapest way to launch it: first.
		return append([]candidate{{i: sl.target, pt: sl.pool.types[sl.target]}}, cands...)
	}
	return cands
}

// underReservation keeps types whose capacity fits what was reserved
// against the pool's limits, so the launch can never exceed them whichever
// type EC2 picks.
func (s *solver) underReservation(pool *poolInfo, sl *slot, pt *poolType) bool {
	for d := range pool.limits {
		if pool.limited[d] && pt.it.capacity.get(d) > sl.reserved.get(d) {
			return false
		}
	}
	return true
}

// extendForMinValues adds types from rest (in price order) until every
// minValues requirement has enough distinct values in the list.
func (s *solver) extendForMinValues(pool *poolInfo, cands, rest []candidate) []candidate {
	keys := make([]string, 0, len(pool.minVals))
	for k := range pool.minVals {
		if k != LabelZone && k != LabelCapacityType {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		mv := pool.minVals[k]
		seen := map[string]bool{}
		for _, c := range cands {
			seen[c.pt.it.it.Labels[k]] = true
		}
		for _, c := range rest {
			if len(seen) >= mv {
				break
			}
			v := c.pt.it.it.Labels[k]
			if !seen[v] {
				seen[v] = true
				cands = append(cands, c)
			}
		}
	}
	return cands
}

type orderKey struct {
	pool *poolInfo
	zm   uint64
	cm   uint8
}

// priceOrder returns the pool's types offered in the masks, cheapest
// first; when spot is allowed, types with a spot offering come first (by
// spot price), the rest after them by their on-demand price. Memoised per
// masks, so finishing thousands of NodeClaims sorts only a handful of times.
func (s *solver) priceOrder(pool *poolInfo, zm uint64, cm uint8) []int {
	k := orderKey{pool, zm, cm}
	if o, ok := s.orders[k]; ok {
		return o
	}
	type e struct {
		i     int
		tier  int
		price float64
	}
	var es []e
	for i, pt := range pool.types {
		if !pt.it.avail(zm, cm) {
			continue
		}
		es = append(es, e{i: i, tier: pt.it.tier(zm, cm), price: pt.it.price(zm, cm)})
	}
	sort.Slice(es, func(a, b int) bool {
		if es[a].tier != es[b].tier {
			return es[a].tier < es[b].tier
		}
		if es[a].price != es[b].price {
			return es[a].price < es[b].price
		}
		return pool.types[es[a].i].it.it.Name < pool.types[es[b].i].it.it.Name
	})
	out := make([]int, len(es))
	for j, x := range es {
		out[j] = x.i
	}
	s.orders[k] = out
	return out
}
