package scheduling

import (
	"fmt"
	"math/rand"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dovetail-dev/dovetail/cloud"
)

// TestRandomSnapshotsKeepInvariants throws random batches (fixed seeds) at
// Solve and checks what must always hold: every pod is accounted for once,
// every listed instance type holds its claim, hostname anti-affinity,
// zonal affinity and zonal spread hold, limits hold.
func TestRandomSnapshotsKeepInvariants(t *testing.T) {
	types := fakeTypes()
	byName := map[string]*cloud.InstanceType{}
	for _, it := range types {
		byName[it.Name] = it
	}
	cpus := []string{"100m", "250m", "500m", "1", "1500m", "3", "7"}
	mems := []string{"128Mi", "512Mi", "1Gi", "3Gi", "7Gi"}
	for seed := int64(0); seed < 3000; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var ps []*corev1.Pod
		kinds := map[string]int{}
		for a := 0; a < 1+rng.Intn(6); a++ {
			app := fmt.Sprintf("app%d", a)
			kind := rng.Intn(6)
			kinds[app] = kind
			opts := []podOpt{}
			switch kind {
			case 1:
				opts = append(opts, withAntiAffinity(LabelHostname))
			case 2:
				opts = append(opts, withAffinity(LabelZone))
			case 3:
				opts = append(opts, withSpread(LabelZone, 1, corev1.DoNotSchedule))
			case 4:
				opts = append(opts, withSpread(LabelHostname, 1, corev1.DoNotSchedule), withNodeSelector(LabelArch, "amd64"))
			case 5:
				opts = append(opts, withPreferredNode(10, LabelZone, "us-east-1c"), withPreferredAnti(5, LabelZone))
			}
			ps = append(ps, pods(1+rng.Intn(15), app, cpus[rng.Intn(len(cpus))], mems[rng.Intn(len(mems))], opts...)...)
		}
		pool := defaultPool("default")
		limit := int64(0)
		if rng.Intn(3) == 0 {
			limit = int64(8 + rng.Intn(40))
			pool.Limits = corev1.ResourceList{corev1.ResourceCPU: *resource.NewQuantity(limit, resource.DecimalSI)}
		}
		r := Solve(Snapshot{NodePools: []NodePool{pool}, InstanceTypes: map[string][]*cloud.InstanceType{"": types}, Pods: ps}, Options{})

		seen := map[string]int{}
		appNodes := map[string]map[int]int{}
		appZones := map[string]map[string]int{}
		var cpuMax int64
		for i, nc := range r.NewNodeClaims {
			for _, p := range nc.PodNames {
				seen[p]++
			}
			var maxCPU int64
			for _, n := range nc.InstanceTypes {
				it := byName[n]
				for res, q := range nc.Requests {
					if a := it.Allocatable[res]; q.Cmp(a) > 0 {
						t.Fatalf("seed %d: claim %d lists %s without room for %s %s", seed, i, n, res, q.String())
					}
				}
				maxCPU = max(maxCPU, it.Capacity.Cpu().Value())
			}
			cpuMax += maxCPU
			for _, p := range nc.Pods {
				app := p.Labels["app"]
				if appNodes[app] == nil {
					appNodes[app], appZones[app] = map[int]int{}, map[string]int{}
				}
				appNodes[app][i]++
				appZones[app][nc.Zone]++
			}
		}
		for _, p := range r.Placements {
			seen[p.PodName]++
		}
		for _, u := range r.Unschedulable {
			seen[u.PodName]++
			if u.Message == "" {
				t.Fatalf("seed %d: unschedulable %s without a reason", seed, u.PodName)
			}
		}
		for _, p := range ps {
			if n := seen[p.Namespace+"/"+p.Name]; n != 1 {
				t.Fatalf("seed %d: pod %s accounted %d times", seed, p.Name, n)
			}
		}
		if limit > 0 && cpuMax > limit {
			t.Fatalf("seed %d: claims could launch %d cpu over the limit %d", seed, cpuMax, limit)
		}
		for app, kind := range kinds {
			switch kind {
			case 1, 4:
				for node, n := range appNodes[app] {
					if n > 1 {
						t.Fatalf("seed %d: %s has %d pods on claim %d", seed, app, n, node)
					}
				}
			case 2:
				if len(appZones[app]) > 1 {
					t.Fatalf("seed %d: %s (zonal affinity) in zones %v", seed, app, appZones[app])
				}
			case 3:
				lo, hi := 1<<30, 0
				for _, z := range testZones {
					lo, hi = min(lo, appZones[app][z]), max(hi, appZones[app][z])
				}
				if hi-lo > 1 {
					t.Fatalf("seed %d: %s (zonal spread) skew %d: %v", seed, app, hi-lo, appZones[app])
				}
			}
		}
	}
}
