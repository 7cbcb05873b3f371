package bench

import (
	"math"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/dovetail-dev/dovetail/cloud"
)

// AssignmentBound is the tightest floor this package computes: the linear
// relaxation of packing the batch's pods onto machines, with pods grouped
// into shapes (distinct cpu, memory requests). It buys fractional machines
// of any type and assigns fractional pods to them, but every pod's
// requests must be covered on a machine type it fits, and every machine's
// cpu, memory and pods must hold what it was given:
//
//	min Σ_t price_t·y_t  subject to  Σ_t a_st = count_s (every shape placed),
//	Σ_s req_sr·a_st ≤ cap_tr·y_t (every type's capacity), a, y ≥ 0.
//
// Unlike LPBound, capacity that only a few pods could use is not counted
// once per machine: 1,800 t4g.micro cannot all be filled with the same
// hundred cpu-heavy, memory-light pods.
//
// It is solved by column generation over machine configurations (a type
// and fractional pod counts that fit it): the restricted master is a
// covering LP (dualSimplex), the pricing problem per type a three-row LP
// (cpu, memory, pods). The returned value is Farley's bound, the master's
// dual value divided by the largest ratio of a configuration's dual value
// to its price, which is a valid floor at every iteration, so capping the
// iterations only loosens it. Batches with more than maxShapes distinct
// request shapes get 0 (no bound).
func AssignmentBound(pods []*corev1.Pod, types []*cloud.InstanceType) float64 {
	v, _ := assignmentSolution(pods, types)
	return v
}

// maxShapes bounds the distinct pod shapes AssignmentBound takes on; with
// more it returns 0 (no bound) rather than a huge dense LP.
const maxShapes = 1000

type lpShape struct {
	req   [3]float64 // cpu cores, GiB, pods
	count float64
	// group is the hostname anti-affinity group (-1: none): pods carrying
	// the same required hostname anti-affinity term that matches
	// themselves, so no two of them share a machine.
	group int
}

type lpType struct {
	name  string
	price float64
	cap   [3]float64
}

func (t *lpType) fits(s *lpShape) bool {
	for r := range s.req {
		if s.req[r] > t.cap[r]+1e-12 {
			return false
		}
	}
	return true
}

// antiGroup returns a key for the pod's first required hostname
// anti-affinity term that selects the pod itself ("" when none).
func antiGroup(p *corev1.Pod) string {
	a := p.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		return ""
	}
	for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		if t.TopologyKey != corev1.LabelHostname || t.NamespaceSelector != nil || len(t.Namespaces) > 0 || len(t.MatchLabelKeys) > 0 {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(t.LabelSelector)
		if err != nil || t.LabelSelector == nil || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		return p.Namespace + "|" + sel.String()
	}
	return ""
}

// batchShapes groups the pods by requests (cpu cores, GiB, 1 pod) and
// hostname anti-affinity group.
func batchShapes(pods []*corev1.Pod) []lpShape {
	type key struct {
		req   [3]float64
		group int
	}
	idx := map[key]int{}
	groups := map[string]int{}
	var shapes []lpShape
	for _, p := range pods {
		var req [3]float64
		req[2] = 1
		for _, c := range p.Spec.Containers {
			q := c.Resources.Requests[corev1.ResourceCPU]
			req[0] += q.AsApproximateFloat64()
			q = c.Resources.Requests[corev1.ResourceMemory]
			req[1] += q.AsApproximateFloat64() / (1 << 30)
		}
		g := -1
		if k := antiGroup(p); k != "" {
			var ok bool
			if g, ok = groups[k]; !ok {
				g = len(groups)
				groups[k] = g
			}
		}
		i, ok := idx[key{req, g}]
		if !ok {
			i = len(shapes)
			idx[key{req, g}] = i
			shapes = append(shapes, lpShape{req: req, group: g})
		}
		shapes[i].count++
	}
	return shapes
}

// batchTypes returns the types that hold at least one shape, at their
// cheapest available offering, without those another type dominates
// (no dearer and at least as large in cpu, memory and pods).
func batchTypes(shapes []lpShape, types []*cloud.InstanceType) []lpType {
	var all []lpType
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
		cpu, mem, n := it.Allocatable[corev1.ResourceCPU], it.Allocatable[corev1.ResourceMemory], it.Allocatable[corev1.ResourcePods]
		t := lpType{name: it.Name, price: p, cap: [3]float64{cpu.AsApproximateFloat64(), mem.AsApproximateFloat64() / (1 << 30), n.AsApproximateFloat64()}}
		for i := range shapes {
			if t.fits(&shapes[i]) {
				all = append(all, t)
				break
			}
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].price != all[j].price {
			return all[i].price < all[j].price
		}
		return all[i].name < all[j].name
	})
	var kept []lpType
	for _, t := range all {
		dominated := false
		for _, k := range kept {
			if k.cap[0] >= t.cap[0] && k.cap[1] >= t.cap[1] && k.cap[2] >= t.cap[2] {
				dominated = true
				break
			}
		}
		if !dominated {
			kept = append(kept, t)
		}
	}
	return kept
}

// assignmentSolution returns the bound and the machines (type → count,
// fractional) of the last restricted master.
func assignmentSolution(pods []*corev1.Pod, types []*cloud.InstanceType) (float64, map[string]float64) {
	shapes := batchShapes(pods)
	if len(shapes) > maxShapes {
		// The master's dense tableau grows with the square of the shapes.
		return 0, nil
	}
	ts := batchTypes(shapes, types)
	if len(shapes) == 0 || len(ts) == 0 {
		return 0, nil
	}
	b := make([]float64, len(shapes))
	for i, s := range shapes {
		b[i] = s.count
	}
	var cols [][]float64
	var costs []float64
	var colType []int
	// Start from each shape alone on its cheapest type per pod, so the
	// master is feasible.
	for i := range shapes {
		best, bestPer, bestN := -1, math.Inf(1), 0.0
		for j := range ts {
			if !ts[j].fits(&shapes[i]) {
				continue
			}
			n := math.Inf(1)
			for r, q := range shapes[i].req {
				if q > 0 {
					n = min(n, ts[j].cap[r]/q)
				}
			}
			if per := ts[j].price / n; per < bestPer {
				best, bestPer, bestN = j, per, n
			}
		}
		if best < 0 {
			// Some pod fits no type: no finite packing exists.
			return math.Inf(1), nil
		}
		col := make([]float64, len(shapes))
		if shapes[i].group >= 0 {
			bestN = min(bestN, 1) // one pod of an anti-affinity group per machine
		}
		col[i] = bestN
		cols, costs, colType = append(cols, col), append(costs, ts[best].price), append(colType, best)
	}
	const maxIter, perIter = 400, 150
	bound := 0.0
	var x []float64
	for iter := 0; iter < maxIter; iter++ {
		var y []float64
		_, x, y = dualSimplex(cols, costs, b)
		if y == nil {
			return bound, nil
		}
		dualValue := 0.0
		for i := range y {
			dualValue += y[i] * b[i]
		}
		type gen struct {
			t     int
			ratio float64
			a     []float64
		}
		var gens []gen
		worst := 1.0
		for j := range ts {
			v, a := priceType(&ts[j], shapes, y)
			ratio := v / ts[j].price
			worst = max(worst, ratio)
			if ratio > 1+1e-7 {
				gens = append(gens, gen{j, ratio, a})
			}
		}
		bound = max(bound, dualValue/worst)
		if len(gens) == 0 {
			break
		}
		sort.Slice(gens, func(i, j int) bool { return gens[i].ratio > gens[j].ratio })
		// Keep the master small: the starting columns (feasibility), the
		// ones in use, and the new ones. Dropping columns never makes the
		// bound invalid: Farley's bound holds for any non-negative duals.
		k := len(shapes)
		for j := len(shapes); j < len(cols); j++ {
			if x[j] > 1e-12 {
				cols[k], costs[k], colType[k] = cols[j], costs[j], colType[j]
				k++
			}
		}
		cols, costs, colType = cols[:k], costs[:k], colType[:k]
		for _, g := range gens[:min(len(gens), perIter)] {
			cols, costs, colType = append(cols, g.a), append(costs, ts[g.t].price), append(colType, g.t)
		}
	}
	sol := map[string]float64{}
	for j, v := range x {
		if v > 1e-9 {
			sol[ts[colType[j]].name] += v
		}
	}
	return bound, sol
}

// priceType solves max Σ_s y_s·a_s subject to Σ_s req_sr·a_s ≤ cap_r for
// cpu, memory and pods, Σ_{s in g} a_s ≤ 1 for each hostname anti-affinity
// group g, a ≥ 0, over the shapes that fit the type (primal simplex from
// the slack basis, Bland's rule against cycling). It returns the value and
// a (one entry per shape).
func priceType(t *lpType, shapes []lpShape, y []float64) (float64, []float64) {
	var vars []int
	row := map[int]int{} // anti-affinity group → its row
	m := 3
	for i := range shapes {
		if y[i] > 1e-12 && t.fits(&shapes[i]) {
			vars = append(vars, i)
			if g := shapes[i].group; g >= 0 {
				if _, ok := row[g]; !ok {
					row[g] = m
					m++
				}
			}
		}
	}
	n := len(vars)
	w := n + m
	T := make([][]float64, m)
	rhs := make([]float64, m)
	for r := 0; r < m; r++ {
		T[r] = make([]float64, w)
		T[r][n+r] = 1
		rhs[r] = 1
		if r < 3 {
			rhs[r] = t.cap[r]
		}
	}
	for k, i := range vars {
		for r := 0; r < 3; r++ {
			T[r][k] = shapes[i].req[r]
		}
		if g := shapes[i].group; g >= 0 {
			T[row[g]][k] = 1
		}
	}
	// Reduced profits: positive means entering improves the objective.
	d := make([]float64, w)
	for k, i := range vars {
		d[k] = y[i]
	}
	basis := make([]int, m)
	for r := range basis {
		basis[r] = n + r
	}
	for iter := 0; iter < 100+10*m; iter++ {
		col := -1
		for j := 0; j < w; j++ {
			if d[j] > 1e-12 {
				col = j
				break
			}
		}
		if col < 0 {
			break
		}
		pr, best := -1, math.Inf(1)
		for r := 0; r < m; r++ {
			if T[r][col] > 1e-12 {
				if ratio := rhs[r] / T[r][col]; ratio < best {
					best, pr = ratio, r
				}
			}
		}
		if pr < 0 {
			break // unbounded cannot happen: every shape needs one pod slot
		}
		row := pr
		piv := T[row][col]
		for j := 0; j < w; j++ {
			T[row][j] /= piv
		}
		rhs[row] /= piv
		for r := 0; r < m; r++ {
			if r == row || T[r][col] == 0 {
				continue
			}
			f := T[r][col]
			for j := 0; j < w; j++ {
				T[r][j] -= f * T[row][j]
			}
			rhs[r] -= f * rhs[row]
		}
		f := d[col]
		for j := 0; j < w; j++ {
			d[j] -= f * T[row][j]
		}
		basis[row] = col
	}
	a := make([]float64, len(shapes))
	v := 0.0
	for r, bj := range basis {
		if bj < n {
			a[vars[bj]] = rhs[r]
			v += y[vars[bj]] * rhs[r]
		}
	}
	return v, a
}
