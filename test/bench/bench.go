// Package bench generates the provisioning benchmark workloads (pending pod
// batches, the synthetic 400-type catalogue), computes the cost lower bound
// and runs scheduling.Solve over them, measuring time, cost and peak heap.
// `dovetail bench` (what `make bench` runs) prints its table.
package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

// Zones used by the benchmark catalogues.
var Zones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

// Mix names a workload.
type Mix string

const (
	// MixPlain: pods with requests only.
	MixPlain Mix = "plain"
	// MixFifths: a fifth each of plain pods, zonal spread (maxSkew 1),
	// hostname spread, zonal self-affinity and hostname self-anti-affinity.
	MixFifths Mix = "mixed"
	// MixPreference: pods that prefer one zone, carry an unsatisfiable
	// zonal anti-affinity preference and a satisfiable hostname one.
	MixPreference Mix = "preference"
)

// Replicas is how many identical pods form one "deployment" in the
// generated batches: a realistic shape, and what lets Solve place them in bulk.
const Replicas = 100

var cpus = []string{"100m", "250m", "500m", "1", "1500m"}

// Pods generates n pending pods of the mix, deterministically from seed.
func Pods(n int, mix Mix, seed int64) []*corev1.Pod {
	if mix == MixKarpenter {
		return KarpenterPods(n, seed)
	}
	rng := rand.New(rand.NewSource(seed))
	type shape struct{ cpu, mem string }
	shapes := map[string]shape{}
	out := make([]*corev1.Pod, 0, n)
	for i := 0; i < n; i++ {
		kind := 0
		j := i
		switch mix {
		case MixFifths:
			kind, j = i%5, i/5
		case MixPreference:
			kind = 5
		}
		app := fmt.Sprintf("k%d-d%d", kind, j/Replicas)
		if mix == MixPreference {
			app = "pref"
		}
		sh, ok := shapes[app]
		if !ok {
			sh = shape{cpu: cpus[rng.Intn(len(cpus))], mem: fmt.Sprintf("%dMi", 100*(1+rng.Intn(41)))}
			shapes[app] = sh
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", app, i), Namespace: "bench", Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(sh.cpu), corev1.ResourceMemory: resource.MustParse(sh.mem)}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending},
		}
		sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
		switch kind {
		case 1:
			p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: sel}}
		case 2:
			p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: sel}}
		case 3:
			p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: corev1.LabelTopologyZone, LabelSelector: sel}}}}
		case 4:
			p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: corev1.LabelHostname, LabelSelector: sel}}}}
		case 5:
			p.Spec.Affinity = &corev1.Affinity{
				NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 50,
					Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{Zones[0]}}}}}}},
				PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{
					{Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: corev1.LabelTopologyZone, LabelSelector: sel}},
					{Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: corev1.LabelHostname, LabelSelector: sel}},
				}},
			}
		}
		out = append(out, p)
	}
	return out
}

// SyntheticTypes is the 400-type catalogue: type i has i+1 vCPU, 2(i+1)
// GiB and 10(i+1) pods, in three zones, spot and on-demand, priced 0.1 per
// vCPU plus 0.1 per GiB.
func SyntheticTypes() []*cloud.InstanceType {
	out := make([]*cloud.InstanceType, 0, 400)
	for i := 0; i < 400; i++ {
		n := int64(i + 1)
		name := fmt.Sprintf("syn.%dx", n)
		price := 0.1*float64(n) + 0.1*float64(2*n)
		res := corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewQuantity(n, resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(2*n<<30, resource.BinarySI),
			corev1.ResourcePods:   *resource.NewQuantity(10*n, resource.DecimalSI),
		}
		it := &cloud.InstanceType{Name: name, Capacity: res, Allocatable: res, Labels: map[string]string{
			corev1.LabelInstanceTypeStable: name, corev1.LabelArchStable: "amd64", corev1.LabelOSStable: "linux",
			"karpenter.k8s.aws/instance-cpu": fmt.Sprint(n), "karpenter.k8s.aws/instance-family": "syn",
		}}
		for _, z := range Zones {
			for _, ct := range []string{cloud.CapacityTypeSpot, cloud.CapacityTypeOnDemand} {
				it.Offerings = append(it.Offerings, cloud.Offering{Zone: z, CapacityType: ct, Price: price, Available: true})
			}
		}
		out = append(out, it)
	}
	return out
}

// Pool is the NodePool every benchmark uses: spot and on-demand, any type.
func Pool() scheduling.NodePool {
	return scheduling.NodePool{Name: "default", NodeClassRef: scheduling.NodeClassRef{Name: "default"},
		Requirements: []scheduling.Requirement{{Key: scheduling.LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{cloud.CapacityTypeSpot, cloud.CapacityTypeOnDemand}}}}
}

// LowerBound is a floor under the $/hour of any placement: for each of cpu,
// memory and pods, the sum of the pods' requests times the lowest $/hour
// per allocatable unit over the offerings; the largest of those.
func LowerBound(pods []*corev1.Pod, types []*cloud.InstanceType) float64 {
	names := []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods}
	var best float64
	for _, n := range names {
		var sum float64
		for _, p := range pods {
			if n == corev1.ResourcePods {
				sum++
				continue
			}
			for _, c := range p.Spec.Containers {
				q := c.Resources.Requests[n]
				sum += q.AsApproximateFloat64()
			}
		}
		unit := math.Inf(1)
		for _, it := range types {
			q, ok := it.Allocatable[n]
			if !ok || q.AsApproximateFloat64() <= 0 {
				continue
			}
			for _, o := range it.Offerings {
				if o.Available && o.Price > 0 {
					unit = min(unit, o.Price/q.AsApproximateFloat64())
				}
			}
		}
		if !math.IsInf(unit, 1) {
			best = max(best, sum*unit)
		}
	}
	return best
}

// Row is one line of the table.
type Row struct {
	Catalogue     string        `json:"catalogue"`
	Mix           Mix           `json:"mix"`
	Pods          int           `json:"pods"`
	Duration      time.Duration `json:"duration"`
	PodsPerSecond float64       `json:"podsPerSecond"`
	Nodes         int           `json:"nodes"`
	Price         float64       `json:"pricePerHour"`
	Bound         float64       `json:"lowerBound"` // the per-resource bound
	LPBound       float64       `json:"lpBound"`    // the larger of LPBound and AssignmentBound (tighter)
	Ratio         float64       `json:"ratio"`      // price / Bound
	LPRatio       float64       `json:"lpRatio"`    // price / LPBound
	PeakHeapMiB   float64       `json:"peakHeapMiB"`
	Unschedulable int           `json:"unschedulable"`
	// Refused is how many planned pods kube-scheduler, binding in its
	// queue order, would refuse on their planned node (scheduling.Replay).
	Refused int `json:"refusedOnReplay"`
}

// Case is one benchmark run.
type Case struct {
	Catalogue string
	Types     []*cloud.InstanceType
	Mix       Mix
	Pods      int
	// Pool is the NodePool (zero: Pool()).
	Pool scheduling.NodePool
}

// Measure runs Solve once for the case.
func Measure(c Case) Row {
	pods := Pods(c.Pods, c.Mix, 42)
	pool := c.Pool
	if pool.Name == "" {
		pool = Pool()
	}
	snap := scheduling.Snapshot{
		Region:        "us-east-1",
		Pods:          pods,
		NodePools:     []scheduling.NodePool{pool},
		InstanceTypes: map[string][]*cloud.InstanceType{"": c.Types},
	}
	runtime.GC()
	stop := sampleHeap()
	start := time.Now()
	res := scheduling.Solve(snap, scheduling.Options{})
	d := time.Since(start)
	peak := stop()
	r := Row{Catalogue: c.Catalogue, Mix: c.Mix, Pods: c.Pods, Duration: d, Nodes: len(res.NewNodeClaims),
		Price: res.TotalPrice(), Bound: LowerBound(pods, c.Types), LPBound: max(LPBound(pods, c.Types), AssignmentBound(pods, c.Types)), PeakHeapMiB: float64(peak) / (1 << 20), Unschedulable: len(res.Unschedulable),
		Refused: len(scheduling.Replay(snap, res))}
	if d > 0 {
		r.PodsPerSecond = float64(c.Pods) / d.Seconds()
	}
	if r.Bound > 0 {
		r.Ratio = r.Price / r.Bound
	}
	if r.LPBound > 0 {
		r.LPRatio = r.Price / r.LPBound
	}
	return r
}

// sampleHeap samples the live heap every millisecond until stopped and
// returns the peak.
func sampleHeap() func() uint64 {
	ctx, cancel := context.WithCancel(context.Background())
	var peak uint64
	var wg sync.WaitGroup
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			peak = max(peak, sample[0].Value.Uint64())
		}
	}
	read()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() uint64 {
		cancel()
		wg.Wait()
		read()
		return peak
	}
}

// Sizes are the batch sizes of the table.
var Sizes = []int{1, 50, 100, 500, 1000, 2000, 5000, 10000, 20000}

// Cases lists the standard table: every size in fifths and plain pods on
// each catalogue, plus the 4,000-pod preference case.
func Cases(real, synthetic []*cloud.InstanceType, sizes []int) []Case {
	var out []Case
	for _, cat := range []struct {
		name  string
		types []*cloud.InstanceType
	}{{"real", real}, {"synthetic-400", synthetic}} {
		for _, mix := range []Mix{MixFifths, MixPlain} {
			for _, n := range sizes {
				out = append(out, Case{Catalogue: cat.name, Types: cat.types, Mix: mix, Pods: n})
			}
		}
		out = append(out, Case{Catalogue: cat.name, Types: cat.types, Mix: MixPreference, Pods: 4000})
	}
	// Karpenter's own benchmark, shaped exactly like it (its catalogue,
	// pool and pods).
	kt := KarpenterTypes()
	for _, n := range sizes {
		out = append(out, Case{Catalogue: "karpenter-400", Types: kt, Mix: MixKarpenter, Pods: n, Pool: KarpenterPool()})
	}
	return out
}

// Print writes rows as an aligned table.
func Print(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "%-14s %-10s %6s %9s %8s %6s %10s %10s %6s %10s %6s %8s %5s %7s\n",
		"catalogue", "mix", "pods", "time", "pods/s", "nodes", "$/hour", "bound", "ratio", "LP bound", "LPratio", "heapMiB", "unsch", "refused")
	fmt.Fprintln(w, strings.Repeat("-", 126))
	for _, r := range rows {
		PrintRow(w, r)
	}
}

// PrintRow writes one row of the table.
func PrintRow(w io.Writer, r Row) {
	fmt.Fprintf(w, "%-14s %-10s %6d %9s %8.0f %6d %10.3f %10.3f %6.2f %10.3f %6.3f %8.1f %5d %7d\n",
		r.Catalogue, r.Mix, r.Pods, r.Duration.Round(time.Microsecond*100), r.PodsPerSecond, r.Nodes, r.Price, r.Bound, r.Ratio, r.LPBound, r.LPRatio, r.PeakHeapMiB, r.Unschedulable, r.Refused)
}
