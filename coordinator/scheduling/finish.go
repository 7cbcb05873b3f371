package scheduling

import (
	"math"
	"math/bits"
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

// finish turns slots into the Result.
func (s *solver) finish() Result {
	res := Result{Placements: []Placement{}, NewNodeClaims: []NewNodeClaim{}, Unschedulable: s.unsched}
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
			if len(sl.pods) > 0 {
				res.NewNodeClaims = append(res.NewNodeClaims, s.finalize(sl))
			}
		}
	}
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

type candidate struct {
	i     int
	pt    *poolType
	price float64
}

// finalize builds the NodeClaim for a new slot: every pool type that
// holds the pods (with its DaemonSets), is offered in the slot's zones and
// capacity types and keeps the pool within limits, cheapest first.
func (s *solver) finalize(sl *slot) NewNodeClaim {
	pool := sl.pool
	spotOK := false
	var cands []candidate
	for i, pt := range pool.types {
		if !sl.typeSet.has(i) || !sl.used.lessOrEqual(pt.cap) || !pt.it.avail(sl.zoneMask, sl.ctMask) {
			continue
		}
		if !s.underReservation(pool, sl, pt) {
			continue
		}
		cands = append(cands, candidate{i: i, pt: pt, price: pt.it.price(sl.zoneMask, sl.ctMask)})
		if sl.ctMask&(1<<ctSpot) != 0 && pt.it.zonesByCT[ctSpot]&sl.zoneMask != 0 {
			spotOK = true
		}
	}
	if len(cands) == 0 && sl.target >= 0 {
		// The target always qualifies; this only guards against rounding.
		pt := pool.types[sl.target]
		cands = append(cands, candidate{i: sl.target, pt: pt, price: pt.it.price(sl.zoneMask, sl.ctMask)})
	}
	if spotOK {
		// Spot is preferred: rank by spot price only among types that have it.
		for j := range cands {
			if cands[j].pt.it.zonesByCT[ctSpot]&sl.zoneMask == 0 {
				cands[j].price = math.Inf(1)
			}
		}
	}
	sort.SliceStable(cands, func(a, b int) bool {
		if cands[a].price != cands[b].price {
			return cands[a].price < cands[b].price
		}
		return cands[a].pt.it.it.Name < cands[b].pt.it.it.Name
	})
	cands = s.truncate(pool, cands)

	var opts []cloud.LaunchOption
	var odOpts []cloud.LaunchOption
	zonesUsed := uint64(0)
	ctUsed := uint8(0)
	names := make([]string, 0, len(cands))
	for _, c := range cands {
		names = append(names, c.pt.it.it.Name)
		for _, o := range c.pt.it.offers {
			if sl.zoneMask&(1<<uint(o.zone)) == 0 || sl.ctMask&(1<<uint(o.ct)) == 0 {
				continue
			}
			lo := cloud.LaunchOption{InstanceType: c.pt.it.it.Name, Zone: s.zones[o.zone], CapacityType: s.cts[o.ct], Price: o.price}
			zonesUsed |= 1 << uint(o.zone)
			ctUsed |= 1 << uint(o.ct)
			if o.ct == ctSpot {
				opts = append(opts, lo)
			} else {
				odOpts = append(odOpts, lo)
			}
		}
	}
	byPrice := func(l []cloud.LaunchOption) {
		sort.SliceStable(l, func(a, b int) bool {
			if l[a].Price != l[b].Price {
				return l[a].Price < l[b].Price
			}
			if l[a].InstanceType != l[b].InstanceType {
				return l[a].InstanceType < l[b].InstanceType
			}
			return l[a].Zone < l[b].Zone
		})
	}
	byPrice(opts)
	byPrice(odOpts)
	opts = append(opts, odOpts...)

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

// truncate keeps MaxInstanceTypes types, extending the list where needed
// to keep minValues distinct values of each key.
func (s *solver) truncate(pool *poolInfo, cands []candidate) []candidate {
	max := s.opts.MaxInstanceTypes
	if len(cands) <= max {
		return cands
	}
	out := append([]candidate(nil), cands[:max]...)
	for k, mv := range pool.minVals {
		if k == LabelZone || k == LabelCapacityType {
			continue
		}
		seen := map[string]bool{}
		for _, c := range out {
			seen[c.pt.it.it.Labels[k]] = true
		}
		for _, c := range cands[max:] {
			if len(seen) >= mv {
				break
			}
			v := c.pt.it.it.Labels[k]
			if !seen[v] {
				seen[v] = true
				out = append(out, c)
			}
		}
	}
	return out
}

var _ = corev1.ResourceCPU
