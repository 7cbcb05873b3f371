package bench

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

func TestZZExperiment(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ZZN"))
	if n == 0 {
		t.Skip()
	}
	mix := Mix(os.Getenv("ZZMIX"))
	if mix == "" {
		mix = MixPlain
	}
	c := catalog.MustLoad()
	types := c.InstanceTypes("us-east-1", Zones)
	byName := map[string]*cloud.InstanceType{}
	for _, it := range types {
		byName[it.Name] = it
	}
	pods := Pods(n, mix, 42)
	snap := scheduling.Snapshot{Region: "us-east-1", Pods: pods, NodePools: []scheduling.NodePool{Pool()},
		InstanceTypes: map[string][]*cloud.InstanceType{"": types}}
	res := scheduling.Solve(snap, scheduling.Options{})
	type agg struct {
		n          int
		price      float64
		cpu, mem   float64
		ccap, mcap float64
	}
	h := map[string]*agg{}
	for _, nc := range res.NewNodeClaims {
		it := byName[nc.Options[0].InstanceType]
		a := h[it.Name]
		if a == nil {
			a = &agg{}
			h[it.Name] = a
		}
		a.n++
		a.price += nc.Price
		a.cpu += nc.Requests.Cpu().AsApproximateFloat64()
		a.mem += nc.Requests.Memory().AsApproximateFloat64() / (1 << 30)
		a.ccap += it.Allocatable.Cpu().AsApproximateFloat64()
		a.mcap += it.Allocatable.Memory().AsApproximateFloat64() / (1 << 30)
	}
	var names []string
	for k := range h {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return h[names[i]].price > h[names[j]].price })
	for _, k := range names {
		a := h[k]
		fmt.Printf("%-20s n=%4d $%8.3f cpu %7.1f/%7.1f mem %8.1f/%8.1f\n", k, a.n, a.price, a.cpu, a.ccap, a.mem, a.mcap)
	}
	var cpu, mem float64
	for _, p := range pods {
		cpu += p.Spec.Containers[0].Resources.Requests.Cpu().AsApproximateFloat64()
		mem += p.Spec.Containers[0].Resources.Requests.Memory().AsApproximateFloat64() / (1 << 30)
	}
	_, sol := LPSolution(pods, types)
	fmt.Println("LP", sol)
	t0 := time.Now()
	ab, asol := assignmentSolution(pods, types)
	fmt.Printf("assignment bound %.3f (%s) ratio %.3f %v\n", ab, time.Since(t0), res.TotalPrice()/ab, asol)
	fmt.Printf("total $%.3f demand cpu %.1f mem %.1f GiB LP %.3f bound %.3f\n", res.TotalPrice(), cpu, mem, LPBound(pods, types), LowerBound(pods, types))
	// cheapest per vcpu / per GiB spot types
	type e struct {
		name      string
		p, pc, pm float64
	}
	var es []e
	for _, it := range types {
		best := 1e9
		for _, o := range it.Offerings {
			if o.Available && o.Price > 0 && o.Price < best {
				best = o.Price
			}
		}
		cc := it.Allocatable.Cpu().AsApproximateFloat64()
		mm := it.Allocatable.Memory().AsApproximateFloat64() / (1 << 30)
		es = append(es, e{it.Name, best, best / cc, best / mm})
	}
	_ = corev1.ResourceCPU
	sort.Slice(es, func(i, j int) bool { return es[i].pc < es[j].pc })
	for _, x := range es[:8] {
		fmt.Printf("percpu %-18s %.4f %.5f %.5f\n", x.name, x.p, x.pc, x.pm)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].pm < es[j].pm })
	for _, x := range es[:8] {
		fmt.Printf("permem %-18s %.4f %.5f %.5f\n", x.name, x.p, x.pc, x.pm)
	}
}

func TestZZPairs(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ZZN"))
	if n == 0 {
		t.Skip()
	}
	c := catalog.MustLoad()
	types := c.InstanceTypes("us-east-1", Zones)
	pods := Pods(n, MixPlain, 42)
	var D [2]float64
	for _, p := range pods {
		D[0] += p.Spec.Containers[0].Resources.Requests.Cpu().AsApproximateFloat64()
		D[1] += p.Spec.Containers[0].Resources.Requests.Memory().AsApproximateFloat64() / (1 << 30)
	}
	type ty struct {
		name    string
		p, c, m float64
	}
	var ts []ty
	for _, it := range types {
		best := 1e9
		for _, o := range it.Offerings {
			if o.Available && o.Price > 0 && o.Price < best {
				best = o.Price
			}
		}
		cc := it.Allocatable.Cpu().AsApproximateFloat64()
		mm := it.Allocatable.Memory().AsApproximateFloat64() / (1 << 30)
		if cc < 1.5 || mm < 4.1 || best > 1e8 {
			continue
		}
		ts = append(ts, ty{it.Name, best, cc, mm})
	}
	bestCost := 1e18
	var ba, bb string
	for i := range ts {
		a := ts[i]
		// single
		x := max(D[0]/a.c, D[1]/a.m)
		if x*a.p < bestCost {
			bestCost, ba, bb = x*a.p, a.name, ""
		}
		for j := range ts {
			b := ts[j]
			det := a.c*b.m - a.m*b.c
			if det == 0 {
				continue
			}
			xa := (D[0]*b.m - D[1]*b.c) / det
			xb := (a.c*D[1] - a.m*D[0]) / det
			if xa < 0 || xb < 0 {
				continue
			}
			if cost := xa*a.p + xb*b.p; cost < bestCost {
				bestCost, ba, bb = cost, fmt.Sprintf("%s x%.1f ($%.4f %.0fc %.0fG)", a.name, xa, a.p, a.c, a.m), fmt.Sprintf("%s x%.1f ($%.4f %.0fc %.0fG)", b.name, xb, b.p, b.c, b.m)
			}
		}
	}
	fmt.Printf("pair LP (types holding any pod): $%.3f %s + %s\n", bestCost, ba, bb)
}

func TestZZCheck(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ZZN"))
	if n == 0 {
		t.Skip()
	}
	c := catalog.MustLoad()
	types := c.InstanceTypes("us-east-1", Zones)
	pods := Pods(n, MixPlain, 42)
	res := scheduling.Solve(scheduling.Snapshot{Region: "us-east-1", Pods: pods, NodePools: []scheduling.NodePool{Pool()},
		InstanceTypes: map[string][]*cloud.InstanceType{"": types}}, scheduling.Options{})
	fmt.Println("unsched", len(res.Unschedulable), "price", res.TotalPrice())
	shapes := batchShapes(pods)
	byName := map[string]*cloud.InstanceType{}
	for _, it := range types {
		byName[it.Name] = it
	}
	sidx := map[[3]float64]int{}
	for i, s := range shapes {
		sidx[s.req] = i
	}
	cnt := 0
	for _, nc := range res.NewNodeClaims {
		it := byName[nc.Options[0].InstanceType]
		one := batchShapes(nc.Pods)
		var sum [3]float64
		for _, s := range one {
			for r := range sum {
				sum[r] += s.req[r] * s.count
			}
		}
		cpu, mem, np := it.Allocatable[corev1.ResourceCPU], it.Allocatable[corev1.ResourceMemory], it.Allocatable[corev1.ResourcePods]
		capv := [3]float64{cpu.AsApproximateFloat64(), mem.AsApproximateFloat64() / (1 << 30), np.AsApproximateFloat64()}
		minp := 1e9
		for _, o := range it.Offerings {
			if o.Available && o.Price > 0 {
				minp = min(minp, o.Price)
			}
		}
		if cnt < 5 && (sum[0] > capv[0]+1e-9 || sum[1] > capv[1]+1e-9 || sum[2] > capv[2] || nc.Price < minp-1e-12) {
			fmt.Println("violation", it.Name, sum, capv, nc.Price, minp)
			cnt++
		}
	}
}

func TestZZNodes(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ZZN"))
	if n == 0 {
		t.Skip()
	}
	c := catalog.MustLoad()
	types := c.InstanceTypes("us-east-1", Zones)
	pods := Pods(n, MixPlain, 42)
	res := scheduling.Solve(scheduling.Snapshot{Region: "us-east-1", Pods: pods, NodePools: []scheduling.NodePool{Pool()},
		InstanceTypes: map[string][]*cloud.InstanceType{"": types}}, scheduling.Options{})
	for i, nc := range res.NewNodeClaims {
		if nc.Options[0].InstanceType != os.Getenv("ZZTYPE") {
			continue
		}
		fmt.Printf("%d %s pods=%d cpu=%.1f mem=%.1f\n", i, nc.Options[0].InstanceType, len(nc.Pods), nc.Requests.Cpu().AsApproximateFloat64(), nc.Requests.Memory().AsApproximateFloat64()/(1<<30))
	}
}
