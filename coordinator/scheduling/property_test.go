package scheduling

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

// TestRandomSnapshotsKeepInvariants throws random batches (fixed seeds),
// with random existing nodes running pods of the same apps, at Solve and
// checks what must always hold: every pod is accounted for once, every
// listed instance type holds its claim, one-per-node constraints
// (hostname anti-affinity and spread) hold on new and existing nodes, zonal
// affinity and zonal spread hold counting bound pods, limits hold.
func TestRandomSnapshotsKeepInvariants(t *testing.T) {
	types := fakeTypes()
	byName := map[string]*cloud.InstanceType{}
	for _, it := range types {
		byName[it.Name] = it
	}
	cpus := []string{"100m", "250m", "500m", "1", "1500m", "3", "7"}
	mems := []string{"128Mi", "512Mi", "1Gi", "3Gi", "7Gi"}
	tiers := []string{"x", "y"}
	replayFailures, replayRefused := 0, 0
	totalUnsched, totalNodes := 0, 0
	defer func() {
		t.Logf("300 seeds: %d new nodes, %d pods unschedulable", totalNodes, totalUnsched)
		if replayFailures > 0 {
			t.Errorf("%d of 300 seeds have plans kube-scheduler would refuse (%d pods)", replayFailures, replayRefused)
		}
	}()
	for seed := int64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var ps []*corev1.Pod
		appOf := map[string]string{}
		kinds := map[string]int{}
		nApps := 1 + rng.Intn(6)
		// A label shared across apps (Karpenter's benchmark does the same):
		// spread and affinity selectors on it count other apps' pods too.
		tierOf := map[string]string{}
		for a := 0; a < nApps; a++ {
			app := fmt.Sprintf("app%d", a)
			kind := rng.Intn(8)
			kinds[app] = kind
			var opts []podOpt
			if rng.Intn(2) == 0 {
				tierOf[app] = tiers[rng.Intn(len(tiers))]
				opts = append(opts, withLabels("tier", tierOf[app]))
			}
			created := metav1.NewTime(time.Unix(1_700_000_000+int64(rng.Intn(4)), 0))
			opts = append(opts, func(p *corev1.Pod) { p.CreationTimestamp = created })
			if rng.Intn(5) == 0 {
				prio := int32(rng.Intn(3))
				opts = append(opts, func(p *corev1.Pod) { p.Spec.Priority = &prio })
			}
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
			case 6:
				opts = append(opts, withSpreadOn(LabelHostname, 1, "tier", tiers[rng.Intn(len(tiers))]))
			case 7:
				opts = append(opts, withSpreadOn(LabelZone, 1, "tier", tiers[rng.Intn(len(tiers))]))
			}
			for _, p := range pods(1+rng.Intn(15), app, cpus[rng.Intn(len(cpus))], mems[rng.Intn(len(mems))], opts...) {
				appOf[p.Namespace+"/"+p.Name] = app
				ps = append(ps, p)
			}
		}
		pool := defaultPool("default")
		limit := int64(0)
		if rng.Intn(3) == 0 {
			limit = int64(8 + rng.Intn(40))
			pool.Limits = corev1.ResourceList{corev1.ResourceCPU: *resource.NewQuantity(limit, resource.DecimalSI)}
		}
		// A heavier, tainted pool with a node limit; some apps tolerate it.
		tainted := defaultPool("tainted")
		tainted.Weight = 50
		tainted.Taints = []corev1.Taint{{Key: "dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule}}
		nodeCap := 1 + rng.Intn(3)
		tainted.Limits = corev1.ResourceList{"nodes": *resource.NewQuantity(int64(nodeCap), resource.DecimalSI)}
		tolerates := map[string]bool{}
		for _, p := range ps {
			app := appOf[p.Namespace+"/"+p.Name]
			if _, ok := tolerates[app]; !ok {
				tolerates[app] = rng.Intn(2) == 0
			}
			if tolerates[app] {
				withToleration("dedicated", "x")(p)
			}
		}
		var nodes []Node
		boundApp := map[string]string{}
		nodeZone := map[string]string{}
		for n := 0; n < rng.Intn(4); n++ {
			name := fmt.Sprintf("node%d", n)
			zone := testZones[rng.Intn(3)]
			nodeZone[name] = zone
			node := Node{Name: name, Labels: map[string]string{LabelHostname: name, LabelZone: zone, LabelArch: "amd64"},
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("20")}}
			if rng.Intn(2) == 0 {
				app := fmt.Sprintf("app%d", rng.Intn(nApps))
				bound := mkPod(name+"-bound", "500m", "512Mi", withLabels("app", app))
				if tier := tierOf[app]; tier != "" {
					bound.Labels["tier"] = tier
				}
				node.Pods = []*corev1.Pod{bound}
				boundApp[name] = app
			}
			nodes = append(nodes, node)
		}
		rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		snap := Snapshot{NodePools: []NodePool{pool, tainted}, InstanceTypes: map[string][]*cloud.InstanceType{"": types}, Pods: ps, Nodes: nodes}
		r := Solve(snap, Options{})
		totalUnsched += len(r.Unschedulable)
		totalNodes += len(r.NewNodeClaims)
		// The contract: kube-scheduler, binding in its queue order, accepts
		// every pod on its planned node.
		if refused := Replay(snap, r); len(refused) > 0 {
			replayRefused += len(refused)

			if replayFailures == 0 {
				t.Errorf("seed %d: %d pods refused on replay, first: %+v", seed, len(refused), refused[0])
			}
			replayFailures++
		}

		seen := map[string]int{}
		perHost := map[string]map[string]int{} // app → host (claim index or node) → pods, bound ones included
		perZone := map[string]map[string]int{} // app → zone → pods, bound ones included
		add := func(app, host, zone string) {
			if perHost[app] == nil {
				perHost[app], perZone[app] = map[string]int{}, map[string]int{}
			}
			perHost[app][host]++
			perZone[app][zone]++
		}
		for name, app := range boundApp {
			add(app, name, nodeZone[name])
		}
		var cpuMax int64
		taintedNodes := 0
		for i, nc := range r.NewNodeClaims {
			if nc.NodePool == "tainted" {
				taintedNodes++
				for _, p := range nc.PodNames {
					if !tolerates[appOf[p]] {
						t.Fatalf("seed %d: %s does not tolerate the tainted pool", seed, p)
					}
				}
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
			if nc.NodePool == "default" {
				cpuMax += maxCPU
			}
			for _, p := range nc.PodNames {
				seen[p]++
				add(appOf[p], fmt.Sprintf("claim%d", i), nc.Zone)
			}
		}
		for _, p := range r.Placements {
			seen[p.PodName]++
			add(appOf[p.PodName], p.Node, nodeZone[p.Node])
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
		if taintedNodes > nodeCap {
			t.Fatalf("seed %d: %d nodes in a pool limited to %d", seed, taintedNodes, nodeCap)
		}
		if limit > 0 && cpuMax > limit {
			t.Fatalf("seed %d: claims could launch %d cpu, over the limit %d", seed, cpuMax, limit)
		}
		for app, kind := range kinds {
			switch kind {
			case 1, 4:
				for host, n := range perHost[app] {
					if n > 1 {
						t.Fatalf("seed %d: %s (one per node) has %d pods on %s", seed, app, n, host)
					}
				}
			case 2:
				boundZones := map[string]bool{}
				for name, a := range boundApp {
					if a == app {
						boundZones[nodeZone[name]] = true
					}
				}
				for z := range perZone[app] {
					if (len(boundZones) > 0 && !boundZones[z]) || (len(boundZones) == 0 && len(perZone[app]) > 1) {
						t.Fatalf("seed %d: %s (zonal affinity) in zones %v, bound pods in %v", seed, app, perZone[app], boundZones)
					}
				}
			case 3:
				lo, hi := 1<<30, 0
				for _, z := range testZones {
					lo, hi = min(lo, perZone[app][z]), max(hi, perZone[app][z])
				}
				// Skew already present among bound pods is not the new pods'
				// doing (kube-scheduler only checks the domain it places into).
				preexisting := false
				for _, a := range boundApp {
					preexisting = preexisting || a == app
				}
				if hi-lo > 1 && !preexisting {
					t.Fatalf("seed %d: %s (zonal spread) skew %d: %v", seed, app, hi-lo, perZone[app])
				}
			}
		}
	}
}

// Gte/Lte bound integers inclusively; Gt/Lt exclusively.
func TestInclusiveIntegerOperators(t *testing.T) {
	for _, c := range []struct {
		op     corev1.NodeSelectorOperator
		bound  string
		in     []string
		out    []string
		absent bool
	}{
		{OpGte, "4", []string{"4", "5", "100"}, []string{"3", "-1", "four"}, false},
		{OpLte, "4", []string{"4", "0", "-7"}, []string{"5", "x"}, false},
		{corev1.NodeSelectorOpGt, "4", []string{"5"}, []string{"4"}, false},
		{OpGte, "-9223372036854775808", []string{"-9223372036854775808", "0"}, nil, false},
		{OpLte, "9223372036854775807", []string{"9223372036854775807"}, nil, false},
	} {
		v, err := newValueSet(c.op, []string{c.bound})
		if err != nil {
			t.Fatalf("%s %s: %v", c.op, c.bound, err)
		}
		for _, s := range c.in {
			if !v.has(s) {
				t.Errorf("%s %s excludes %s", c.op, c.bound, s)
			}
		}
		for _, s := range c.out {
			if v.has(s) {
				t.Errorf("%s %s admits %s", c.op, c.bound, s)
			}
		}
		if v.allowsAbsent() != c.absent {
			t.Errorf("%s %s: allowsAbsent = %v", c.op, c.bound, v.allowsAbsent())
		}
	}
	if _, err := newValueSet(OpGte, []string{"1", "2"}); err == nil {
		t.Error("Gte with two values accepted")
	}
}
