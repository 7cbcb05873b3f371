package bench

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

func TestZZWorst(t *testing.T) {
	types := catalog.MustLoad().InstanceTypes("us-east-1", Zones)
	for _, per := range []int{1, 40, 100} {
		pods := Pods(20000, MixPlain, 42)
		for i, p := range pods {
			g := i / per
			p.Spec.Containers[0].Resources.Requests["memory"] = *resource.NewQuantity(int64(100<<20+g*4096), resource.BinarySI)
			p.Labels["app"] = fmt.Sprint("g", g)
		}
		t0 := time.Now()
		res := scheduling.Solve(scheduling.Snapshot{Region: "us-east-1", Pods: pods, NodePools: []scheduling.NodePool{Pool()},
			InstanceTypes: map[string][]*cloud.InstanceType{"": types}}, scheduling.Options{})
		fmt.Println("per", per, time.Since(t0), len(res.NewNodeClaims), res.TotalPrice(), AssignmentBound(pods, types))
	}
}
