package disruption

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/disruption/budget"

	corev1 "k8s.io/api/core/v1"
)

// BenchResult is one row of the consolidation benchmark.
type BenchResult struct {
	Nodes         int           `json:"nodes"`
	PodsBefore    int           `json:"podsBefore"`
	PodsAfter     int           `json:"podsAfter"`
	CostFull      float64       `json:"costFull"`      // $/h before the scale-down
	CostScaled    float64       `json:"costScaled"`    // $/h right after deleting half the pods
	CostAfter     float64       `json:"costAfter"`     // $/h once consolidation converged
	LowerBound    float64       `json:"lowerBound"`    // LP bound for the remaining pods
	NodesAfter    int           `json:"nodesAfter"`    // nodes once converged
	FirstDecision time.Duration `json:"firstDecision"` // CPU time of the first pass
	Rounds        int           `json:"rounds"`        // passes until no decision
	TotalCPU      time.Duration `json:"totalCPU"`      // CPU time of all passes
	Decisions     int           `json:"decisions"`
}

// Ratio is CostAfter / LowerBound.
func (r BenchResult) Ratio() float64 { return r.CostAfter / r.LowerBound }

// benchPool is an on-demand amd64 c/m/r generation>4 pool (general-purpose),
// consolidating immediately and with a 100% budget so one pass shows the
// whole decision.
func benchPool() Pool {
	return Pool{
		Name: "general-purpose", NodeClass: "default", ConsolidationPolicy: WhenEmptyOrUnderutilized,
		ConsolidateAfter: new(time.Duration), Budgets: []budget.Budget{{Nodes: "100%"}},
		Requirements: []corev1.NodeSelectorRequirement{
			{Key: LabelCapacity, Operator: corev1.NodeSelectorOpIn, Values: []string{cloud.CapacityTypeOnDemand}},
			{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}},
			{Key: "karpenter.k8s.aws/instance-category", Operator: corev1.NodeSelectorOpIn, Values: []string{"c", "m", "r"}},
			{Key: "karpenter.k8s.aws/instance-generation", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}},
		},
	}
}

// benchShapes is the pod mix: web, API, worker, cache and batch pods.
var benchShapes = []Resources{
	{MilliCPU: 250, Memory: 512 << 20, Pods: 1},
	{MilliCPU: 500, Memory: 1 << 30, Pods: 1},
	{MilliCPU: 1000, Memory: 2 << 30, Pods: 1},
	{MilliCPU: 500, Memory: 4 << 30, Pods: 1},
	{MilliCPU: 2000, Memory: 4 << 30, Pods: 1},
}

// BenchCluster builds the benchmark cluster: pods packed first-fit
// decreasing onto the cheapest general-purpose type of at least 8 vCPU and
// 28 GiB (what a cost-minded provisioner launches for a large batch), n
// nodes, then a random half of the pods deleted. Deterministic per seed.
func BenchCluster(types []cloud.InstanceType, n int, seed uint64) (*Snapshot, int) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pool := benchPool()
	s := &Snapshot{Pools: []Pool{pool}, InstanceTypes: types}
	base := benchBase(s)
	if base == nil {
		return s, 0
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	podSeq := 0
	for len(s.Nodes) < n {
		node := Node{Name: fmt.Sprintf("node-%05d", len(s.Nodes)), NodeClaim: fmt.Sprintf("claim-%05d", len(s.Nodes)), Pool: pool.Name,
			NodeClass: "default", InstanceType: base.it.Name, Zone: base.zone, CapacityType: base.ct, Price: base.price,
			Labels: base.labels, Allocatable: base.alloc, Created: created, Initialized: true, Ready: true}
		free := base.alloc
		misses := 0
		for misses < 4 {
			shape := benchShapes[rng.IntN(len(benchShapes))]
			if !free.Fits(shape) {
				misses++
				continue
			}
			free = free.Sub(shape)
			podSeq++
			node.Pods = append(node.Pods, Pod{Namespace: "bench", Name: fmt.Sprintf("pod-%06d", podSeq), Requests: shape, Ready: true, Created: created})
		}
		s.Nodes = append(s.Nodes, node)
	}
	// Scale down: delete a random half of the pods.
	for i := range s.Nodes {
		kept := s.Nodes[i].Pods[:0]
		for _, p := range s.Nodes[i].Pods {
			if rng.IntN(2) == 0 {
				kept = append(kept, p)
			}
		}
		s.Nodes[i].Pods = kept
	}
	return s, podSeq
}

// LowerBound is the cost of the cheapest fractional fleet that holds the
// pods' total CPU and memory using the pool's offerings: the LP
// min Σ price·x s.t. Σ cpu·x ≥ C, Σ mem·x ≥ M, x ≥ 0, solved exactly by
// checking every single-type and two-type vertex. No real packing can beat it.
func LowerBound(s *Snapshot, pool *Pool) float64 {
	var need Resources
	for i := range s.Nodes {
		need = need.Add(movingRequests(&s.Nodes[i]))
	}
	pl := newPlanner(s, time.Time{}, Options{})
	seen := map[string]bool{}
	type tv struct{ c, m, p float64 }
	var ts []tv
	for _, of := range pl.offers(pool) {
		if seen[of.it.Name] || of.alloc.MilliCPU <= 0 || of.alloc.Memory <= 0 {
			continue
		}
		seen[of.it.Name] = true
		ts = append(ts, tv{float64(of.alloc.MilliCPU), float64(of.alloc.Memory), of.price})
	}
	C, M := float64(need.MilliCPU), float64(need.Memory)
	best := math.Inf(1)
	for _, t := range ts {
		best = min(best, t.p*max(C/t.c, M/t.m))
	}
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			a, b := ts[i], ts[j]
			det := a.c*b.m - b.c*a.m
			if det == 0 {
				continue
			}
			xa := (C*b.m - b.c*M) / det
			xb := (a.c*M - C*a.m) / det
			if xa >= 0 && xb >= 0 {
				best = min(best, a.p*xa+b.p*xb)
			}
		}
	}
	return best
}

// applyPlan plays a plan's decisions out the way the cluster would: the
// nodes go, a replacement of the cheapest option comes up, and the evicted
// pods are scheduled most-allocated first (existing nodes, then the new one).
func applyPlan(s *Snapshot, p Plan, seq *int) {
	gone := map[string]bool{}
	var homeless []Pod
	var fresh []Node
	for _, d := range p.Decisions {
		for _, name := range d.Nodes {
			gone[name] = true
		}
		if d.Replacement != nil && len(d.Replacement.Options) > 0 {
			o := d.Replacement.Options[0]
			for _, it := range s.InstanceTypes {
				if it.Name == o.InstanceType {
					*seq++
					labels := map[string]string{}
					for k, v := range it.Labels {
						labels[k] = v
					}
					labels[LabelZone], labels[LabelCapacity], labels[LabelType] = o.Zone, o.CapacityType, it.Name
					fresh = append(fresh, Node{Name: fmt.Sprintf("repl-%05d", *seq), NodeClaim: fmt.Sprintf("repl-claim-%05d", *seq),
						Pool: d.Pool, InstanceType: it.Name, Zone: o.Zone, CapacityType: o.CapacityType, Price: o.Price, Labels: labels,
						Allocatable: ResourcesOf(it.Allocatable), Initialized: true, Ready: true})
					break
				}
			}
		}
	}
	for i := range s.Nodes {
		if gone[s.Nodes[i].Name] {
			for _, pod := range s.Nodes[i].Pods {
				if !pod.Stays {
					homeless = append(homeless, pod)
				}
			}
		}
	}
	s.Nodes = slices.DeleteFunc(s.Nodes, func(n Node) bool { return gone[n.Name] })
	s.Nodes = append(s.Nodes, fresh...)
	free := make([]Resources, len(s.Nodes))
	for i := range s.Nodes {
		free[i] = s.Nodes[i].Allocatable
		for _, pod := range s.Nodes[i].Pods {
			free[i] = free[i].Sub(pod.Requests)
		}
	}
	order := make([]int, len(s.Nodes))
	for i := range order {
		order[i] = i
	}
	// Most-allocated first, like the planner's simulation.
	sort.SliceStable(order, func(a, b int) bool {
		return utilization(&s.Nodes[order[a]], free[order[a]]) > utilization(&s.Nodes[order[b]], free[order[b]])
	})
	sort.SliceStable(homeless, func(i, j int) bool { return homeless[i].Requests.MilliCPU > homeless[j].Requests.MilliCPU })
	for _, pod := range homeless {
		placed := false
		for _, i := range order {
			if free[i].Fits(pod.Requests) {
				free[i] = free[i].Sub(pod.Requests)
				s.Nodes[i].Pods = append(s.Nodes[i].Pods, pod)
				placed = true
				break
			}
		}
		if !placed {
			s.PendingPods = append(s.PendingPods, pod)
		}
	}
	// The scheduler may place pods differently from the planner's
	// simulation; what it cannot place the provisioner launches for, as in
	// a real cluster: cheapest type that holds the next pods, first fit.
	provision(s, seq)
}

// provision packs pending pods onto new nodes of the base benchmark type.
func provision(s *Snapshot, seq *int) {
	if len(s.PendingPods) == 0 {
		return
	}
	base := benchBase(s)
	if base == nil {
		return
	}
	var open []int
	for _, pod := range s.PendingPods {
		placed := false
		for _, i := range open {
			free := s.Nodes[i].Allocatable.Sub(podSum(&s.Nodes[i]))
			if free.Fits(pod.Requests) {
				s.Nodes[i].Pods = append(s.Nodes[i].Pods, pod)
				placed = true
				break
			}
		}
		if placed {
			continue
		}
		*seq++
		s.Nodes = append(s.Nodes, Node{Name: fmt.Sprintf("prov-%05d", *seq), NodeClaim: fmt.Sprintf("prov-claim-%05d", *seq), Pool: s.Pools[0].Name,
			InstanceType: base.it.Name, Zone: base.zone, CapacityType: base.ct, Price: base.price, Labels: base.labels,
			Allocatable: base.alloc, Initialized: true, Ready: true, Pods: []Pod{pod}})
		open = append(open, len(s.Nodes)-1)
	}
	s.PendingPods = nil
}

func podSum(n *Node) Resources {
	var r Resources
	for i := range n.Pods {
		r = r.Add(n.Pods[i].Requests)
	}
	return r
}

// benchBase is the type a cost-minded provisioner launches for a large
// batch: the cheapest of at least 8 vCPU and 28 GiB allocatable.
func benchBase(s *Snapshot) *offer {
	pl := newPlanner(s, time.Time{}, Options{})
	offers := pl.offers(&s.Pools[0])
	for i := range offers {
		if offers[i].alloc.MilliCPU >= 7900 && offers[i].alloc.Memory >= 28<<30 {
			return &offers[i]
		}
	}
	return nil
}

func fleetCost(s *Snapshot) float64 {
	c := 0.0
	for i := range s.Nodes {
		c += s.Nodes[i].Price
	}
	return c
}

// RunBench builds a cluster of n nodes, scales it down and consolidates
// until a pass decides nothing (at most 50 passes).
func RunBench(types []cloud.InstanceType, n int, seed uint64) (BenchResult, error) {
	s, total := BenchCluster(types, n, seed)
	if total == 0 {
		return BenchResult{}, fmt.Errorf("bench: no instance type of at least 8 vCPU / 30 GiB in the catalogue")
	}
	r := BenchResult{Nodes: n, PodsBefore: total, CostFull: fleetCost(s)}
	for i := range s.Nodes {
		r.PodsAfter += len(s.Nodes[i].Pods)
	}
	r.CostScaled = fleetCost(s)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	seq := 0
	for round := 0; round < 50; round++ {
		c0 := cpuTime()
		p := Decide(s, now, Options{})
		spent := cpuTime() - c0
		if round == 0 {
			r.FirstDecision = spent
		}
		r.TotalCPU += spent
		if len(p.Decisions) == 0 {
			break
		}
		r.Rounds++
		r.Decisions += len(p.Decisions)
		applyPlan(s, p, &seq)
		now = now.Add(time.Minute)
	}
	r.CostAfter = fleetCost(s)
	r.NodesAfter = len(s.Nodes)
	r.LowerBound = LowerBound(s, &s.Pools[0])
	return r, nil
}

// BenchmarkTableSizes runs the consolidation benchmark on the given cluster sizes
// with the embedded catalogue (us-east-1) and prints a table: decision CPU time
// and $/hour after scale-down against the lower bound. Targets: < 1 s CPU for the
// first decision at 1,000 nodes; cost within 15 % of the bound.
func BenchmarkTableSizes(w io.Writer, sizes []int) error {
	cat, err := catalog.Load()
	if err != nil {
		return fmt.Errorf("bench: load catalogue: %w", err)
	}
	var types []cloud.InstanceType
	for _, it := range cat.InstanceTypes("us-east-1", []string{"us-east-1a", "us-east-1b", "us-east-1c"}) {
		types = append(types, *it)
	}
	fmt.Fprintf(w, "%-7s %-7s %-7s %-10s %-10s %-10s %-7s %-7s %-11s %-6s %-10s\n",
		"nodes", "pods", "left", "$/h before", "$/h after", "bound", "ratio", "nodes'", "1st pass", "rounds", "total CPU")
	for _, n := range sizes {
		r, err := RunBench(types, n, uint64(n))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%-7d %-7d %-7d %-10.2f %-10.2f %-10.2f %-7.3f %-7d %-11s %-6d %-10s\n",
			r.Nodes, r.PodsBefore, r.PodsAfter, r.CostScaled, r.CostAfter, r.LowerBound, r.Ratio(), r.NodesAfter,
			r.FirstDecision.Round(time.Millisecond), r.Rounds, r.TotalCPU.Round(time.Millisecond))
	}
	return nil
}
