package scheduling

import (
	"math"
	"sort"
)

// unitPrices are $/hour per millicore of cpu and per byte of memory: what
// one more unit of each costs when the batch's pods share nodes of the
// cheapest blend of types that can hold any of them (the duals of a
// two-resource covering LP). A pod's share of the shared nodes is then
// cpu·perCPU + memory·perMem, which, unlike its dominant share of one
// type, credits complementary pods (cpu-heavy next to memory-heavy).
type unitPrices struct {
	perCPU, perMem float64
	ok             bool
}

// blendCand is a pool type considered for the shared nodes.
type blendCand struct {
	i               int // index in pool.types
	price, cpu, mem float64
}

// blendCands lists the pool's types in allowed that are priced (prices,
// +Inf where not offered) and hold the largest request of each resource,
// without those another candidate dominates (no dearer, at least as much
// cpu and memory). A few dozen remain out of a thousand.
func blendCands(pool *poolInfo, allowed bitset, prices []float64, largest vec) []blendCand {
	var cs []blendCand
	for i, pt := range pool.types {
		p := prices[i]
		if !allowed.has(i) || math.IsInf(p, 1) || p <= 0 || !largest.lessOrEqual(pt.cap) {
			continue
		}
		c, m := float64(pt.cap.get(dimCPU)), float64(pt.cap.get(dimMemory))
		if c <= 0 || m <= 0 {
			continue
		}
		cs = append(cs, blendCand{i, p, c, m})
	}
	sort.Slice(cs, func(a, b int) bool {
		if cs[a].price != cs[b].price {
			return cs[a].price < cs[b].price
		}
		if cs[a].cpu != cs[b].cpu {
			return cs[a].cpu > cs[b].cpu
		}
		if cs[a].mem != cs[b].mem {
			return cs[a].mem > cs[b].mem
		}
		return cs[a].i < cs[b].i
	})
	kept := cs[:0:0]
	for _, c := range cs {
		dominated := false
		for _, k := range kept {
			if k.cpu >= c.cpu && k.mem >= c.mem {
				dominated = true
				break
			}
		}
		if !dominated {
			kept = append(kept, c)
		}
	}
	return kept
}

// blend is the optimum of min Σ price_t·x_t subject to Σ cap_t·x_t ≥
// demand over cpu and memory: at most two types (a, b; b = -1 when one
// suffices) with their fractional counts, and the unit prices (duals).
type blend struct {
	a, b   int // indexes into the candidate list
	xa, xb float64
	cost   float64
	prices unitPrices
}

// bestBlend tries every single candidate and every pair.
func bestBlend(cs []blendCand, demand vec) (blend, bool) {
	dc, dm := float64(max(0, demand.get(dimCPU))), float64(max(0, demand.get(dimMemory)))
	if len(cs) == 0 || (dc <= 0 && dm <= 0) {
		return blend{}, false
	}
	out := blend{a: -1, b: -1, cost: math.Inf(1)}
	for i, a := range cs {
		// One type alone: the resource it runs out of first carries the price.
		if x := max(dc/a.cpu, dm/a.mem); x*a.price < out.cost {
			out = blend{a: i, b: -1, xa: x, cost: x * a.price}
			if dc/a.cpu >= dm/a.mem {
				out.prices = unitPrices{perCPU: a.price / a.cpu, ok: true}
			} else {
				out.prices = unitPrices{perMem: a.price / a.mem, ok: true}
			}
		}
		for j := i + 1; j < len(cs); j++ {
			b := cs[j]
			det := a.cpu*b.mem - a.mem*b.cpu
			if det == 0 {
				continue
			}
			xa := (dc*b.mem - dm*b.cpu) / det
			xb := (a.cpu*dm - a.mem*dc) / det
			if xa <= 0 || xb <= 0 {
				continue
			}
			if cost := xa*a.price + xb*b.price; cost < out.cost {
				// Both types are used, so the unit prices price both
				// exactly: cap·p = price for a and for b.
				pc := (a.price*b.mem - b.price*a.mem) / det
				pm := (a.cpu*b.price - b.cpu*a.price) / det
				if pc >= 0 && pm >= 0 {
					out = blend{a: i, b: j, xa: xa, xb: xb, cost: cost, prices: unitPrices{perCPU: pc, perMem: pm, ok: true}}
				}
			}
		}
	}
	return out, out.a >= 0
}

// blendPrices computes the unit prices for pool from demand over the
// pool's types in allowed that hold the largest request.
func blendPrices(pool *poolInfo, allowed bitset, demand, largest vec) unitPrices {
	prices := make([]float64, len(pool.types))
	for i, pt := range pool.types {
		prices[i] = pt.price
	}
	b, ok := bestBlend(blendCands(pool, allowed, prices, largest), demand)
	if !ok {
		return unitPrices{}
	}
	return b.prices
}
