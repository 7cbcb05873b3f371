package bench

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"

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
