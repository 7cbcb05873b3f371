package bench

import (
	"fmt"
	"sort"
	"testing"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
	"github.com/dovetail-dev/dovetail/cloud"
)

func TestDbg(t *testing.T) {
	c, _ := catalog.Load()
	its := c.InstanceTypes("us-east-1", Zones)
	type e struct{ n string; cpu, mem, pods float64 }
	var es []e
	for _, it := range its {
		cpu := it.Allocatable.Cpu().AsApproximateFloat64()
		mem := it.Allocatable.Memory().AsApproximateFloat64() / (1 << 30)
		pods := it.Allocatable.Pods().AsApproximateFloat64()
		p := 1e9
		for _, o := range it.Offerings { if o.Price < p { p = o.Price } }
		es = append(es, e{it.Name, p / cpu, p / mem, p / pods})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].cpu < es[j].cpu })
	for _, x := range es[:8] { fmt.Printf("cpu %s %.4f %.4f %.4f\n", x.n, x.cpu, x.mem, x.pods) }
	sort.Slice(es, func(i, j int) bool { return es[i].mem < es[j].mem })
	for _, x := range es[:8] { fmt.Printf("mem %s %.4f %.4f %.4f\n", x.n, x.cpu, x.mem, x.pods) }
	pods := Pods(5000, MixPlain, 42)
	res := scheduling.Solve(scheduling.Snapshot{Pods: pods, NodePools: []scheduling.NodePool{Pool()}, InstanceTypes: map[string][]*cloud.InstanceType{"": its}}, scheduling.Options{})
	for i, nc := range res.NewNodeClaims {
		if i > 10 { break }
		fmt.Println(nc.Price, nc.CapacityType, len(nc.Pods), nc.Requests.Cpu(), nc.Requests.Memory(), nc.InstanceTypes[:min(4, len(nc.InstanceTypes))])
	}
}
