package bench

import (
	"math"
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

// LPBound is a tighter floor than LowerBound: the optimum of the linear
// relaxation "buy fractional machines of any type so that their cpu,
// memory and pods cover the demand at least cost" (min Σ price_t·x_t with
// Σ use_t,r·x_t ≥ demand_r, x ≥ 0), solved with the dual simplex method
// (three rows, one column per type). No placement can beat it.
//
// use_t,r is the most of resource r that pods of this batch could ever
// use on one machine of type t, not its raw capacity: for each other
// resource s, a fractional knapsack filling s's capacity with the pods
// richest in r per unit of s bounds it from above. That keeps, e.g., a
// t4g.micro (489Mi allocatable) from "covering" two vCPUs that only pods
// with tiny memory could use, and the bound stays valid.
func LPBound(pods []*corev1.Pod, types []*cloud.InstanceType) float64 {
	v, _ := LPSolution(pods, types)
	return v
}

// LPSolution is LPBound plus the fractional machines of its optimum:
// instance-type name → how many machines (fractional) the bound buys.
func LPSolution(pods []*corev1.Pod, types []*cloud.InstanceType) (float64, map[string]float64) {
	names := []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods}
	scale := []float64{1, 1.0 / (1 << 30), 1} // cpu cores, GiB, pods
	demand := make([]float64, len(names))
	// Distinct request shapes with their counts.
	type shape struct {
		req   [3]float64
		count float64
	}
	idx := map[[3]float64]int{}
	var shapes []shape
	minReq := [3]float64{math.Inf(1), math.Inf(1), 1}
	maxReq := [3]float64{0, 0, 1}
	for _, p := range pods {
		var req [3]float64
		req[2] = 1
		for _, c := range p.Spec.Containers {
			for r := 0; r < 2; r++ {
				q := c.Resources.Requests[names[r]]
				req[r] += q.AsApproximateFloat64() * scale[r]
			}
		}
		for r := range req {
			demand[r] += req[r]
			minReq[r] = math.Min(minReq[r], req[r])
			maxReq[r] = math.Max(maxReq[r], req[r])
		}
		i, ok := idx[req]
		if !ok {
			i = len(shapes)
			idx[req] = i
			shapes = append(shapes, shape{req: req})
		}
		shapes[i].count++
	}
	var caps [][]float64
	var prices []float64
	var colNames []string
	for _, it := range types {
		p := math.Inf(1)
		for _, o := range it.Offerings {
			if o.Available && o.Price > 0 {
				p = min(p, o.Price)
			}
		}
		if math.IsInf(p, 1) {
			continue
		}
		var capv [3]float64
		for r, n := range names {
			q := it.Allocatable[n]
			capv[r] = q.AsApproximateFloat64() * scale[r]
		}
		// At most k pods fit (smallest requests), using at most k × the
		// largest request of each resource.
		k := math.Inf(1)
		for r := range capv {
			if minReq[r] > 0 {
				k = math.Min(k, math.Floor(capv[r]/minReq[r]+1e-9))
			}
		}
		col := make([]float64, len(names))
		useful := false
		for r := range names {
			col[r] = math.Min(capv[r], k*maxReq[r])
			for s := range names {
				if s == r {
					continue
				}
				// Fractional knapsack: fill capacity s with the pods
				// carrying the most r per unit of s.
				order := make([]int, 0, len(shapes))
				for i := range shapes {
					fits := true
					for d := range capv {
						if shapes[i].req[d] > capv[d] {
							fits = false
						}
					}
					if fits {
						order = append(order, i)
					}
				}
				sort.Slice(order, func(a, b int) bool {
					ra := shapes[order[a]].req[r] / math.Max(shapes[order[a]].req[s], 1e-12)
					rb := shapes[order[b]].req[r] / math.Max(shapes[order[b]].req[s], 1e-12)
					return ra > rb
				})
				room, got := capv[s], 0.0
				for _, i := range order {
					sh := shapes[i]
					if room <= 0 {
						break
					}
					take := sh.count
					if sh.req[s] > 0 {
						take = math.Min(take, room/sh.req[s])
					}
					got += take * sh.req[r]
					room -= take * sh.req[s]
				}
				col[r] = math.Min(col[r], got)
			}
			if col[r] > 0 {
				useful = true
			}
		}
		if !useful {
			continue
		}
		caps = append(caps, col)
		prices = append(prices, p)
		colNames = append(colNames, it.Name)
	}
	obj, x, _ := dualSimplex(caps, prices, demand)
	sol := map[string]float64{}
	for j, v := range x {
		if v > 1e-9 {
			sol[colNames[j]] = v
		}
	}
	return obj, sol
}

// dualSimplex solves min c·x subject to A·x ≥ b, x ≥ 0 for non-negative c
// (cols are A's columns). It returns the objective, x and the duals y of
// the rows. Every iterate is dual feasible, so even when the iteration cap
// stops it early, b·y is a valid lower bound.
func dualSimplex(cols [][]float64, c, b []float64) (float64, []float64, []float64) {
	m, n := len(b), len(cols)
	w := n + m
	// Rows: -A x + s = -b. Tableau T (m × w), rhs, reduced costs d.
	T := make([][]float64, m)
	rhs := make([]float64, m)
	for i := 0; i < m; i++ {
		T[i] = make([]float64, w)
		for j := 0; j < n; j++ {
			T[i][j] = -cols[j][i]
		}
		T[i][n+i] = 1
		rhs[i] = -b[i]
	}
	d := make([]float64, w)
	copy(d, c)
	basis := make([]int, m)
	for i := range basis {
		basis[i] = n + i
	}
	const eps = 1e-12
	for iter := 0; iter < 1000+20*m; iter++ {
		r := -1
		for i := 0; i < m; i++ {
			if rhs[i] < -1e-9 && (r < 0 || rhs[i] < rhs[r]) {
				r = i
			}
		}
		if r < 0 {
			break
		}
		col := -1
		best := math.Inf(1)
		for j := 0; j < w; j++ {
			if T[r][j] < -eps {
				if ratio := d[j] / -T[r][j]; ratio < best {
					best, col = ratio, j
				}
			}
		}
		if col < 0 {
			return math.Inf(1), nil, nil
		}
		piv := T[r][col]
		for j := 0; j < w; j++ {
			T[r][j] /= piv
		}
		rhs[r] /= piv
		for i := 0; i < m; i++ {
			if i == r || T[i][col] == 0 {
				continue
			}
			f := T[i][col]
			for j := 0; j < w; j++ {
				T[i][j] -= f * T[r][j]
			}
			rhs[i] -= f * rhs[r]
		}
		f := d[col]
		for j := 0; j < w; j++ {
			d[j] -= f * T[r][j]
		}
		basis[r] = col
	}
	var obj float64
	x := make([]float64, n)
	for i, bj := range basis {
		if bj < n {
			obj += c[bj] * rhs[i]
			x[bj] = rhs[i]
		}
	}
	// The reduced cost of row i's slack is its dual value.
	y := make([]float64, m)
	for i := range y {
		y[i] = max(0, d[n+i])
	}
	return obj, x, y
}
