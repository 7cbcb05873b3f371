package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/coordinator/provisioning"
	"github.com/dovetail-dev/dovetail/coordinator/wiring"
	"github.com/dovetail-dev/dovetail/test/bench"
)

// BenchmarkKubeScheduler runs Karpenter's diverse pods (test/bench's
// KarpenterPods, seed 42: fifths of plain, zone spread, hostname spread,
// zone self-affinity and hostname self-anti-affinity) through the whole
// path: the real kube-scheduler, controller manager and kwok nodes,
// Dovetail's three replicas with the shipped provisioning windows, the
// EC2 simulator, one NodePool (spot and on-demand) over the real
// catalogue. It measures what a user sees: how long until every pod runs,
// whether the first plan held (NodeClaims launched later, for pods whose
// nomination did not hold), how many pods kube-scheduler bound to a node
// other than the one Dovetail nominated, and the fleet's $/hour.
//
//	go test ./test/e2e/ -run XXX -bench KubeScheduler -benchtime=1x -timeout 60m
//
// DOVETAIL_E2E_BENCH_PODS=1000 picks sizes (comma-separated).
func BenchmarkKubeScheduler(b *testing.B) {
	sizes := []int{1000, 5000}
	if v := os.Getenv("DOVETAIL_E2E_BENCH_PODS"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			var n int
			if _, err := fmt.Sscan(f, &n); err != nil || n <= 0 {
				b.Fatalf("DOVETAIL_E2E_BENCH_PODS=%q: %q is not a positive pod count", v, f)
			}
			sizes = append(sizes, n)
		}
	}
	var rows []schedRow
	for _, n := range sizes {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r := runSchedBench(b, n)
				rows = append(rows, r)
				b.ReportMetric(r.allRunning.Seconds(), "s-to-running")
				b.ReportMetric(float64(r.claimsFirst), "claims-first-batch")
				b.ReportMetric(float64(r.claimsLater), "claims-later")
				b.ReportMetric(float64(r.offNomination), "off-nomination")
				b.ReportMetric(r.price, "$/h")
			}
		})
	}
	printSchedRows(os.Stdout, rows)
}

type schedRow struct {
	pods, running       int
	created, allRunning time.Duration // from the first create
	batches             int           // provisioning passes that launched
	claimsFirst         int           // launched in the first pass that launched
	claimsLater         int           // launched in later passes
	claimsRenominated   int           // of those: only for pods nominated before (the plan did not hold)
	renominatedPods     int           // pods nominated to more than one target
	offNomination       int           // bound to a node other than the last nomination
	unnominated         int           // running, never nominated
	late                int           // nominations made after the pod was bound (planner cache behind)
	terms               uint64        // Raft terms the run went through (leader elections; DOVETAIL_E2E_RAFT_SLOWDOWN)
	nodes               int
	price               float64
	timedOut            bool
}

func printSchedRows(w *os.File, rows []schedRow) {
	fmt.Fprintf(w, "\n%6s %9s %11s %7s %12s %12s %14s %14s %10s %12s %6s %6s %6s %9s\n", "pods", "created", "all running", "passes",
		"claims 1st", "claims later", "later (renom.)", "renominated", "off-nom.", "unnominated", "late", "terms", "nodes", "$/hour")
	fmt.Fprintln(w, strings.Repeat("-", 150))
	for _, r := range rows {
		running := r.allRunning.Round(100 * time.Millisecond).String()
		if r.timedOut {
			running = fmt.Sprintf("%d/%d!", r.running, r.pods)
		}
		fmt.Fprintf(w, "%6d %9s %11s %7d %12d %12d %14d %14d %10d %12d %6d %6d %6d %9.3f\n", r.pods,
			r.created.Round(100*time.Millisecond), running, r.batches, r.claimsFirst, r.claimsLater, r.claimsRenominated,
			r.renominatedPods, r.offNomination, r.unnominated, r.late, r.terms, r.nodes, r.price)
	}
}

// nominations keeps every pod's nominations, told by the provisioner
// itself (wiring.ProvisioningOptions.Nominated) on whichever replica leads:
// the Nominated Events are no record of them, Karpenter's dedupe (one per
// pod per 2 minutes) and rate limit (5/s, burst 10) keep about one pod in
// ten at 1,000 pods, and the API's event pipeline drops events when more
// than 1,000 are queued.
type nominations struct {
	mu     sync.Mutex
	byPod  map[string][]string // pod key → targets ("nodeclaim/x", "node/y"), in order
	claims map[string]*nominatedClaim
	// bound: pods the benchmark's watch has seen bound. A nomination after
	// that came from a planner whose cache lagged; it is counted as late,
	// not as the pod's nomination.
	bound map[string]bool
	late  int
}

type nominatedClaim struct {
	pass  time.Time // provisioning pass of its launch
	first bool      // some pod's first nomination is this claim
}

func newNominations() *nominations {
	return &nominations{byPod: map[string][]string{}, claims: map[string]*nominatedClaim{}, bound: map[string]bool{}}
}

func (n *nominations) record(nm provisioning.Nomination) {
	if nm.Pod == nil {
		return
	}
	key := nm.Pod.Namespace + "/" + nm.Pod.Name
	target := "node/" + nm.Node
	if nm.NodeClaim != "" {
		target = "nodeclaim/" + nm.NodeClaim
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if nm.NodeClaim != "" {
		c := n.claims[nm.NodeClaim]
		if c == nil {
			// A claim is first named by the pass that launches it (or,
			// launched by a leader whose pass this benchmark did not hear,
			// first seen in flight: then this pass).
			c = &nominatedClaim{pass: nm.Pass}
			n.claims[nm.NodeClaim] = c
		}
		if nm.New && nm.Pass.Before(c.pass) {
			c.pass = nm.Pass
		}
		if len(n.byPod[key]) == 0 && !n.bound[key] {
			c.first = true
		}
	}
	if n.bound[key] {
		n.late++
		return
	}
	n.byPod[key] = append(n.byPod[key], target)
}

func (n *nominations) sawBoundObj(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" {
		return
	}
	n.mu.Lock()
	n.bound[p.Namespace+"/"+p.Name] = true
	n.mu.Unlock()
}

func runSchedBench(b *testing.B, n int) schedRow {
	b.StopTimer()
	nom := newNominations()
	e := newEnvWith(b, ec2sim.Config{}, func(o *wiring.Options) {
		// The shipped provisioning windows (1 s idle gap, 10 s at most),
		// not the suite's short ones: batch boundaries are part of what
		// is measured.
		o.Provisioning = wiring.ProvisioningOptions{Nominated: nom.record}
	})
	e.apply(nodeClass(b, "e2e"), decode[karpv1.NodePool](b, `
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: bench}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: e2e}
      expireAfter: 720h
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot, on-demand]}
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 1h
`))
	// The benchmark's own watch of the pods' binding (see nominations.bound).
	inf := informers.NewSharedInformerFactoryWithOptions(e.kube, 0, informers.WithNamespace("default"))
	if _, err := inf.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { nom.sawBoundObj(o) },
		UpdateFunc: func(_, o any) { nom.sawBoundObj(o) },
	}); err != nil {
		b.Fatal(err)
	}
	watchCtx, stopWatch := context.WithCancel(e.ctx)
	inf.Start(watchCtx.Done())
	defer inf.Shutdown() // after stopWatch: Shutdown waits for the stop
	defer stopWatch()
	inf.WaitForCacheSync(watchCtx.Done())

	// Creation order is queue order: names sort as they are created, so
	// the plan's tie-break (snapshot order within a creation second) is
	// kube-scheduler's too.
	pods := bench.KarpenterPods(n, 42)
	for i, p := range pods {
		p.Name = fmt.Sprintf("p%05d-%s", i, p.Name)
		p.CreationTimestamp = metav1.Time{}
		p.Status = corev1.PodStatus{}
		p.Spec.TerminationGracePeriodSeconds = new(int64)
		p.Spec.Containers[0].Image = "registry.k8s.io/pause:3.10"
	}
	fast := rest.CopyConfig(e.cp.RESTConfig)
	fast.QPS, fast.Burst = 2000, 4000
	kube := kubernetes.NewForConfigOrDie(fast)

	firstTerm := e.replica(e.leader()).Launcher().Term()
	b.StartTimer()
	start := time.Now()
	work := make(chan *corev1.Pod)
	var wg sync.WaitGroup
	var createErr error
	var errMu sync.Mutex
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				if _, err := kube.CoreV1().Pods(p.Namespace).Create(e.ctx, p, metav1.CreateOptions{}); err != nil {
					errMu.Lock()
					createErr = fmt.Errorf("create pod %s: %w", p.Name, err)
					errMu.Unlock()
				}
			}
		}()
	}
	for _, p := range pods {
		work <- p
	}
	close(work)
	wg.Wait()
	if createErr != nil {
		b.Fatal(createErr)
	}
	row := schedRow{pods: n, created: time.Since(start)}

	// 5 min per 1,000 pods, 3 min at least (kwok alone took a minute to
	// start 200 pods on the loaded 2-core box): a bound, not a target.
	timeout := max(3*time.Minute, time.Duration(n)*300*time.Millisecond)
	deadline := start.Add(timeout)
	for {
		list, err := kube.CoreV1().Pods("default").List(e.ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			b.Fatalf("list pods: %v", err)
		}
		row.running = 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning {
				row.running++
			}
		}
		if row.running >= n {
			row.allRunning = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			row.allRunning, row.timedOut = time.Since(start), true
			b.Logf("%d of %d pods Running after %v", row.running, n, timeout)
			break
		}
		time.Sleep(time.Second)
	}
	b.StopTimer()
	row.terms = e.replica(e.leader()).Launcher().Term() - firstTerm
	e.schedOutcome(&row, nom)
	return row
}

// schedOutcome fills in the NodeClaims, nominations and price once the pods
// run (or the bound passed).
func (e *env) schedOutcome(row *schedRow, nom *nominations) {
	e.t.Helper()
	var claims karpv1.NodeClaimList
	if err := e.c.List(e.ctx, &claims); err != nil {
		e.t.Fatalf("list nodeclaims: %v", err)
	}
	claimOfNode := map[string]string{}
	for _, c := range claims.Items {
		if c.Status.NodeName != "" {
			claimOfNode[c.Status.NodeName] = c.Name
		}
	}
	pods, err := e.kube.CoreV1().Pods("default").List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatalf("list pods: %v", err)
	}
	nom.mu.Lock()
	defer nom.mu.Unlock()
	renominatedKinds := map[string]int{} // by the name's kind (generic, spread-zone, anti-hostname ...)
	for _, p := range pods.Items {
		targets := nom.byPod[p.Namespace+"/"+p.Name]
		if len(targets) > 1 {
			row.renominatedPods++
			if _, rest, ok := strings.Cut(p.Name, "-"); ok {
				renominatedKinds[strings.TrimRightFunc(rest, func(r rune) bool { return r == '-' || (r >= '0' && r <= '9') })]++
			}
		}
		if p.Spec.NodeName == "" {
			continue
		}
		if len(targets) == 0 {
			row.unnominated++
			continue
		}
		last := targets[len(targets)-1]
		if claim, ok := strings.CutPrefix(last, "nodeclaim/"); ok {
			if claimOfNode[p.Spec.NodeName] != claim {
				row.offNomination++
			}
		} else if strings.TrimPrefix(last, "node/") != p.Spec.NodeName {
			row.offNomination++
		}
	}
	e.t.Logf("renominated pods by kind: %v", renominatedKinds)
	var firstPass time.Time
	passes := map[time.Time]bool{}
	for _, c := range nom.claims {
		passes[c.pass] = true
		if firstPass.IsZero() || c.pass.Before(firstPass) {
			firstPass = c.pass
		}
	}
	row.batches = len(passes)
	row.late = nom.late
	for _, c := range nom.claims {
		if c.pass.Equal(firstPass) {
			row.claimsFirst++
			continue
		}
		row.claimsLater++
		if !c.first {
			row.claimsRenominated++
		}
	}

	// $/hour of the live fleet at the prices Dovetail planned with: the
	// simulator's catalogue as the EC2 provider reads it.
	prov, err := ec2.New(e.ctx, ec2.Config{Region: e.sim.Region(), Endpoint: e.sim.URL(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		ClusterName: clusterName, ClusterEndpoint: e.cp.APIServerURL,
		ClusterCA: base64.StdEncoding.EncodeToString(e.cp.CACertPEM), KubernetesVersion: "1.37", Logger: e.log})
	if err != nil {
		e.t.Fatalf("ec2 provider: %v", err)
	}
	its, err := prov.InstanceTypes(e.ctx)
	if err != nil {
		e.t.Fatalf("instance types: %v", err)
	}
	price := map[string]float64{}
	for _, it := range its {
		for _, o := range it.Offerings {
			price[it.Name+"/"+o.Zone+"/"+o.CapacityType] = o.Price
		}
	}
	var missing []string
	for _, in := range e.sim.Instances() {
		if in.State != cloud.StatePending && in.State != cloud.StateRunning {
			continue
		}
		row.nodes++
		p, ok := price[in.InstanceType+"/"+in.Zone+"/"+in.CapacityType]
		if !ok {
			missing = append(missing, in.InstanceType)
		}
		row.price += p
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		e.t.Errorf("no price for %d instances (%v)", len(missing), missing[:min(5, len(missing))])
	}
}
