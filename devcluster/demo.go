package devcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane/manifest"
	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/drain"
)

// DemoCoordinatorEnv are the coordinator settings `dovetail dev --demo`
// runs with: planning passes and the validation wait short enough that
// consolidation and rolls show within a minute (defaults: 10 s and 15 s).
var DemoCoordinatorEnv = []string{
	"DOVETAIL_COORDINATOR_DISRUPTION_INTERVAL=5s",
	"DOVETAIL_COORDINATOR_VALIDATION_DELAY=5s",
	"DOVETAIL_COORDINATOR_NODECLASS_INTERVAL=5s",
}

// demoManifests is the demo's NodePool and Deployment. The pool allows spot
// (so there is something to interrupt), consolidates after 10 s, lets empty
// nodes go all at once and any other disruption (drift) two nodes at a time.
// The Deployment starts at zero replicas; the demo scales it.
const demoManifests = `apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: demo
spec:
  template:
    spec:
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
      requirements:
        - key: karpenter.sh/capacity-type
          operator: In
          values: ["spot", "on-demand"]
        - key: karpenter.k8s.aws/instance-category
          operator: In
          values: ["c", "m"]
        - key: karpenter.k8s.aws/instance-generation
          operator: Gt
          values: ["5"]
        - key: karpenter.k8s.aws/instance-size
          operator: In
          values: ["large", "xlarge"]
        - key: kubernetes.io/arch
          operator: In
          values: ["amd64"]
      expireAfter: Never
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 10s
    budgets:
      - nodes: "100%"
        reasons: ["Empty"]
      - nodes: "2"
  limits:
    cpu: "200"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: dovetail-demo
  namespace: default
spec:
  replicas: 0
  selector:
    matchLabels:
      app: dovetail-demo
  template:
    metadata:
      labels:
        app: dovetail-demo
    spec:
      nodeSelector:
        karpenter.sh/nodepool: demo
      terminationGracePeriodSeconds: 5
      containers:
        - name: pause
          image: registry.k8s.io/pause:3.10
          resources:
            requests:
              cpu: 500m
              memory: 512Mi
`

// demoBudget is the pool's budget for voluntary disruption other than
// empty nodes (see demoManifests).
const demoBudget = 2

// Demo is the guided tour `dovetail dev --demo` runs once the cluster is
// up: (a) scale a Deployment and watch NodeClaims, instances, nodes and
// pods; (b) interrupt a spot instance in the simulator and watch the agent
// drain it and the coordinator replace it; (r) send a spot rebalance
// recommendation and watch the coordinator bring a replacement up first,
// then drain the node; (c) scale down and watch idle nodes consolidate;
// (d) publish a new AMI release and watch the pool roll.
// Each step waits at most StepTimeout and says what happened.
type Demo struct {
	// Replicas for step (a) (default 30) and ScaleDownTo for (c) (default 6).
	Replicas, ScaleDownTo int
	// StepTimeout bounds each step. Default 4 min.
	StepTimeout time.Duration
	// PollEvery is how often the demo looks (and so the resolution of the
	// timings it prints). Default 1 s.
	PollEvery time.Duration
	// AMIRelease is the al2023 release step (d) publishes. Default v20261201.
	AMIRelease string
	// Steps limits the run to some of "a", "b", "r", "c", "d" (default
	// all), played in that order.
	Steps string

	// Results are the steps' outcomes once Run returned.
	Results []StepResult
}

// StepResult is what one demo step did.
type StepResult struct {
	Step, Title string
	OK          bool
	Took        time.Duration
	// Detail says what happened, or what did not.
	Detail string
	// Events counts, by reason, the Events Dovetail recorded during the
	// step under Karpenter's reasons (what `kubectl get events` shows).
	Events map[string]int
}

func (d *Demo) defaults() {
	if d.Replicas <= 0 {
		d.Replicas = 30
	}
	if d.ScaleDownTo <= 0 {
		d.ScaleDownTo = 6
	}
	if d.StepTimeout <= 0 {
		d.StepTimeout = 4 * time.Minute
	}
	if d.PollEvery <= 0 {
		d.PollEvery = time.Second
	}
	if d.AMIRelease == "" {
		d.AMIRelease = "v20261201"
	}
	if d.Steps == "" {
		d.Steps = "abrcd"
	}
}

// demoRun is one run's clients and output.
type demoRun struct {
	d      *Demo
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	sim    *ec2sim.Sim
	coords []string
	cl     *Cluster
	p      printer
	log    *slog.Logger
}

// Run plays the demo against a running dev cluster (it needs the simulator
// and the coordinators) and returns when every step has finished or ctx
// ends. The error is for the setup only; step outcomes are in Results.
func (d *Demo) Run(ctx context.Context, cl *Cluster) error {
	d.defaults()
	if cl.Sim == nil || len(cl.CoordinatorAddrs) == 0 {
		return errors.New("the demo needs the EC2 simulator and the coordinators")
	}
	kube, err := kubernetes.NewForConfig(cl.RESTConfig)
	if err != nil {
		return fmt.Errorf("demo: kubernetes client: %w", err)
	}
	ap, err := manifest.NewApplier(cl.RESTConfig)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	r := &demoRun{d: d, kube: kube, dyn: ap.Dynamic(), sim: cl.Sim, coords: cl.CoordinatorAddrs, cl: cl,
		p: printer{w: cl.Out}, log: cl.Log.With("part", "demo")}

	objs, err := manifest.Decode("demo", []byte(demoManifests))
	if err != nil {
		return fmt.Errorf("demo manifests: %w", err)
	}
	if err := ap.ApplyAll(ctx, objs); err != nil {
		return fmt.Errorf("demo: apply NodePool and Deployment: %w", err)
	}
	r.p.line("")
	r.p.step("demo: applied NodePool demo (spot + on-demand, consolidateAfter 10s, budget 2 nodes) and Deployment default/dovetail-demo (500m/512Mi pause pods)")

	steps := []struct {
		id, title string
		run       func(context.Context) (bool, string)
	}{
		{"a", fmt.Sprintf("scale up to %d pods", d.Replicas), r.scaleUp},
		{"b", "spot interruption", r.interrupt},
		{"r", "spot rebalance recommendation, replacement first", r.rebalance},
		{"c", fmt.Sprintf("scale down to %d pods, consolidate", d.ScaleDownTo), r.scaleDown},
		{"d", "new al2023 AMI release, rolling", r.rollAMI},
	}
	for _, s := range steps {
		if !strings.Contains(d.Steps, s.id) {
			continue
		}
		r.p.line("")
		r.p.step(fmt.Sprintf("demo step (%s): %s", s.id, s.title))
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, d.StepTimeout)
		ok, detail := s.run(sctx)
		cancel()
		if ctx.Err() != nil {
			r.p.line(fmt.Sprintf("  demo stopped during step (%s)", s.id))
			return nil
		}
		res := StepResult{Step: s.id, Title: s.title, OK: ok, Took: time.Since(start).Round(100 * time.Millisecond), Detail: detail}
		mark := "✓"
		if !ok {
			mark = "✗"
		}
		r.p.line(fmt.Sprintf("%s step (%s) %s in %s: %s", mark, s.id, map[bool]string{true: "done", false: "NOT done"}[ok], res.Took, detail))
		res.Events = r.printEvents(ctx, start)
		d.Results = append(d.Results, res)
		r.log.Info("demo step", "step", s.id, "ok", ok, "took", res.Took, "detail", detail)
	}
	r.p.line("")
	r.p.step("demo finished:")
	for _, res := range d.Results {
		mark := "ok  "
		if !res.OK {
			mark = "FAIL"
		}
		r.p.line(fmt.Sprintf("    (%s) %-4s %8s  %s", res.Step, mark, res.Took, res.Title))
	}
	r.p.line("  the cluster keeps running; Ctrl-C to stop")
	return nil
}

// observe lists everything once.
func (r *demoRun) observe(ctx context.Context) (demoState, error) {
	nodes, err := r.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return demoState{}, fmt.Errorf("list nodes: %w", err)
	}
	pods, err := r.kube.CoreV1().Pods(demoNamespace).List(ctx, metav1.ListOptions{LabelSelector: demoAppLabel + "=" + demoDeployment})
	if err != nil {
		return demoState{}, fmt.Errorf("list pods: %w", err)
	}
	claims, err := r.dyn.Resource(nodeClaimsGVR).List(ctx, metav1.ListOptions{LabelSelector: "karpenter.sh/nodepool=" + demoPool})
	if err != nil {
		return demoState{}, fmt.Errorf("list nodeclaims: %w", err)
	}
	return observeDemo(r.sim.Instances(), nodes.Items, pods.Items, claims.Items), nil
}

// watch observes every PollEvery, prints the state line when it changes
// (with the time since start) and calls check, until check says done or
// ctx ends. It returns the last state and whether check finished.
func (r *demoRun) watch(ctx context.Context, start time.Time, check func(demoState) bool) (demoState, bool) {
	last := ""
	var s demoState
	for {
		var err error
		s, err = r.observe(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return s, false
			}
			r.log.Warn("demo observe", "err", err)
		} else {
			if l := s.line(); l != last {
				r.p.line(fmt.Sprintf("  %6s  %s", since(start), l))
				last = l
			}
			if check(s) {
				return s, true
			}
		}
		select {
		case <-ctx.Done():
			return s, false
		case <-time.After(r.d.PollEvery):
		}
	}
}

func since(t time.Time) string {
	return fmt.Sprintf("+%.1fs", time.Since(t).Seconds())
}

func (r *demoRun) scale(ctx context.Context, n int) error {
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
	_, err := r.kube.AppsV1().Deployments(demoNamespace).Patch(ctx, demoDeployment, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("scale %s to %d: %w", demoDeployment, n, err)
	}
	return nil
}

// (a) pending pods → NodeClaims → instances → Ready nodes → Running pods.
func (r *demoRun) scaleUp(ctx context.Context) (bool, string) {
	start := time.Now()
	if err := r.scale(ctx, r.d.Replicas); err != nil {
		return false, err.Error()
	}
	r.p.line(fmt.Sprintf("  scaled %s to %d replicas; waiting for every pod to run", demoDeployment, r.d.Replicas))
	want := r.d.Replicas
	s, ok := r.watch(ctx, start, func(s demoState) bool { return s.PodsRunning >= want && s.Pods == want })
	if !ok {
		return false, fmt.Sprintf("after %s only %d/%d pods run on %d nodes (%d nodeclaims): see .dev/cluster/logs/coordinator-*.log",
			since(start), s.PodsRunning, want, s.Nodes, s.Claims)
	}
	return true, fmt.Sprintf("%d pods Running on %d nodes (%d spot) from %d NodeClaims", s.PodsRunning, s.Nodes, s.Spot, s.Claims)
}

// (b) the simulator gives a spot instance its two-minute notice; the
// node's agent taints, cordons and drains it and reports; the coordinator
// launches a replacement; every pod runs again.
func (r *demoRun) interrupt(ctx context.Context) (bool, string) {
	before, err := r.observe(ctx)
	if err != nil {
		return false, err.Error()
	}
	victim, ok := before.pickSpotVictim()
	if !ok {
		return false, fmt.Sprintf("no schedulable spot node with demo pods in the pool (%d instances, %d spot): nothing to interrupt", before.Instances, before.Spot)
	}
	node := victim.PrivateDNS
	start := time.Now()
	deadline, err := r.sim.InterruptSpot(victim.ID)
	if err != nil {
		return false, fmt.Sprintf("interrupt %s: %v", victim.ID, err)
	}
	r.p.line(fmt.Sprintf("  interrupted %s (%s %s, %d demo pods): spot notice in its IMDS, terminated at %s",
		victim.ID, victim.InstanceType, node, before.PodsOn[node], deadline.Format("15:04:05")))
	want := r.d.Replicas
	var cordoned, drained, replaced, gone time.Duration
	replacement := ""
	s, done := r.watch(ctx, start, func(s demoState) bool {
		if n, ok := s.NodeByName[node]; ok && cordoned == 0 && n.Spec.Unschedulable && n.Annotations[drain.CordonedByAnnotation] == agentComponent {
			cordoned = time.Since(start)
			// The agent acts as its node (system:node:<name>), which may
			// cordon itself but never change its taints (NodeRestriction).
			r.p.line(fmt.Sprintf("  %6s  agent cordoned %s with the node's own identity", since(start), node))
		}
		if replaced == 0 {
			for name := range s.Replacements {
				if !before.Replacements[name] {
					replaced, replacement = time.Since(start), name
					r.p.line(fmt.Sprintf("  %6s  coordinator launched replacement NodeClaim %s", since(start), name))
					break
				}
			}
		}
		if cordoned > 0 && drained == 0 && s.PodsOn[node] == 0 {
			drained = time.Since(start)
			r.p.line(fmt.Sprintf("  %6s  %s drained (no demo pods left)", since(start), node))
		}
		if _, live := s.Live[node]; !live && gone == 0 {
			gone = time.Since(start)
			r.p.line(fmt.Sprintf("  %6s  instance %s is gone (its NodeClaim deleted, or the notice's deadline reached)", since(start), victim.ID))
		}
		return drained > 0 && gone > 0 && s.PodsRunning >= want && s.Pods == want
	})
	if !done {
		var missing []string
		if cordoned == 0 {
			missing = append(missing, "the agent did not cordon/taint the node (see .dev/dev.log, part=agent)")
		}
		if drained == 0 {
			missing = append(missing, fmt.Sprintf("%d demo pods still on the node", s.PodsOn[node]))
		}
		if gone == 0 {
			missing = append(missing, "the instance still runs")
		}
		if replaced == 0 {
			missing = append(missing, "no replacement NodeClaim")
		}
		missing = append(missing, fmt.Sprintf("%d/%d pods running", s.PodsRunning, want))
		return false, strings.Join(missing, "; ")
	}
	detail := fmt.Sprintf("cordoned after %s, drained after %s, all %d pods Running again after %s",
		round(cordoned), round(drained), want, since(start))
	if replacement != "" {
		detail += fmt.Sprintf("; replacement %s after %s", replacement, round(replaced))
	} else {
		detail += "; no replacement NodeClaim (the pods fitted on other nodes)"
	}
	return true, detail + fmt.Sprintf("; instance gone after %s (deadline was %s)", round(gone), deadline.Format("15:04:05"))
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }

// (r) the simulator posts a rebalance recommendation for a spot node; its
// agent only reports it (the node keeps running); the coordinator launches
// a replacement away from that instance type and zone, waits until it is
// Ready, then taints, cordons and drains the old node and deletes its
// NodeClaim (coordinator/disruption/README.md, "Rebalance recommendations").
func (r *demoRun) rebalance(ctx context.Context) (bool, string) {
	before, err := r.observe(ctx)
	if err != nil {
		return false, err.Error()
	}
	victim, ok := before.pickSpotVictim()
	if !ok {
		return false, fmt.Sprintf("no schedulable spot node with demo pods in the pool (%d instances, %d spot): nothing to recommend rebalancing", before.Instances, before.Spot)
	}
	node := victim.PrivateDNS
	start := time.Now()
	if err := r.sim.RebalanceRecommendation(victim.ID); err != nil {
		return false, fmt.Sprintf("rebalance recommendation for %s: %v", victim.ID, err)
	}
	r.p.line(fmt.Sprintf("  rebalance recommendation for %s (%s in %s, %s, %d demo pods) in its IMDS: its capacity pool is at risk, no deadline",
		victim.ID, victim.InstanceType, victim.Zone, node, before.PodsOn[node]))
	want := r.d.Replicas
	p := &rebalanceProgress{node: node, victim: victim, before: before.Replacements}
	event := ""
	s, done := r.watch(ctx, start, func(s demoState) bool {
		for _, l := range p.see(s, time.Since(start)) {
			r.p.line(fmt.Sprintf("  %6s  %s", since(start), l))
		}
		if event == "" {
			if event = r.nodeEvent(ctx, node, "SpotRebalanceRecommendation"); event != "" {
				r.p.line(fmt.Sprintf("  %6s  Event SpotRebalanceRecommendation on %s: %s", since(start), node, event))
			}
		}
		return p.violation != "" || p.done(s, want)
	})
	if !done || p.violation != "" {
		return false, p.missing(s, want)
	}
	return true, fmt.Sprintf("replacement %s (%s in %s, %s) launched after %s, Ready after %s; then %s cordoned after %s, drained after %s, instance gone after %s; all %d pods Running after %s",
		p.replacement, p.replInstance.InstanceType, p.replInstance.Zone, p.replInstance.CapacityType, round(p.replaced), round(p.ready),
		node, round(p.cordoned), round(p.drained), round(p.gone), want, since(start))
}

// nodeEvent is the message of the latest Event with reason on the Node ("" if none).
func (r *demoRun) nodeEvent(ctx context.Context, node, reason string) string {
	evs, err := r.kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + node + ",reason=" + reason})
	if err != nil {
		r.log.Debug("list events", "node", node, "err", err)
		return ""
	}
	msg := ""
	var last time.Time
	for _, ev := range evs.Items {
		if t := ev.LastTimestamp.Time; msg == "" || t.After(last) {
			msg, last = ev.Message, t
		}
	}
	return msg
}

// (c) fewer pods → empty and underused nodes go after consolidateAfter.
func (r *demoRun) scaleDown(ctx context.Context) (bool, string) {
	before, err := r.observe(ctx)
	if err != nil {
		return false, err.Error()
	}
	start := time.Now()
	if err := r.scale(ctx, r.d.ScaleDownTo); err != nil {
		return false, err.Error()
	}
	r.p.line(fmt.Sprintf("  scaled %s to %d replicas on %d instances; empty nodes go after consolidateAfter (10s) + validation", demoDeployment, r.d.ScaleDownTo, before.Instances))
	want := r.d.ScaleDownTo
	stable := 0
	s, ok := r.watch(ctx, start, func(s demoState) bool {
		// Settled: the pods run, no running node of the pool is empty,
		// twice in a row (a fresh consolidation replacement is empty for a moment).
		if s.PodsRunning >= want && s.Pods == want && len(s.EmptyNodes) == 0 && s.Instances < before.Instances {
			stable++
		} else {
			stable = 0
		}
		return stable >= 2
	})
	if !ok {
		return false, fmt.Sprintf("still %d empty nodes (%s), %d instances (were %d), %d/%d pods running",
			len(s.EmptyNodes), strings.Join(s.EmptyNodes, ", "), s.Instances, before.Instances, s.PodsRunning, want)
	}
	return true, fmt.Sprintf("%d → %d instances, no empty node left, %d pods Running", before.Instances, s.Instances, s.PodsRunning)
}

// (d) a new al2023 release moves the SSM "recommended" parameter; the
// default EC2NodeClass (al2023@latest) resolves to the new AMIs, the
// pool's nodes drift and roll, at most demoBudget at a time.
func (r *demoRun) rollAMI(ctx context.Context) (bool, string) {
	// Enough nodes that the budget shows: back to the full Deployment.
	up := time.Now()
	if err := r.scale(ctx, r.d.Replicas); err != nil {
		return false, err.Error()
	}
	r.p.line(fmt.Sprintf("  scaled %s back to %d replicas, so there are nodes to roll", demoDeployment, r.d.Replicas))
	want := r.d.Replicas
	before, ok := r.watch(ctx, up, func(s demoState) bool { return s.PodsRunning >= want && s.Pods == want && len(s.EmptyNodes) == 0 })
	if !ok {
		return false, fmt.Sprintf("scaling back up: only %d/%d pods running", before.PodsRunning, want)
	}
	start := time.Now()
	ids, err := r.sim.PublishRelease(ec2sim.FamilyAL2023, r.d.AMIRelease)
	if err != nil {
		return false, fmt.Sprintf("publish %s: %v", r.d.AMIRelease, err)
	}
	newAMIs := map[string]bool{}
	for _, id := range ids {
		newAMIs[id] = true
	}
	r.p.line(fmt.Sprintf("  published al2023 %s in the simulator (%d images); %d instances to roll, budget %d at a time",
		r.d.AMIRelease, len(ids), before.Instances, demoBudget))
	client := r.cl.APIClient(r.coords[0])
	lastRollout, maxOut, hopeless := "", 0, ""
	s, ok := r.watch(ctx, start, func(s demoState) bool {
		if ro := r.rollout(ctx, client); ro != "" && ro != lastRollout {
			r.p.line(fmt.Sprintf("  %6s  rollout: %s", since(start), ro))
			lastRollout = ro
		}
		maxOut = max(maxOut, s.Cordons)
		if s.Instances > 0 && s.onAMIs(newAMIs) == s.Instances {
			return true
		}
		// Nothing started after a minute: say why now rather than wait
		// out the step's timeout.
		if lastRollout == "" && s.onAMIs(newAMIs) == 0 && time.Since(start) > time.Minute {
			if hopeless = r.nodeClassAMIs(ctx, newAMIs); hopeless != "" {
				return true
			}
		}
		return false
	})
	if hopeless != "" {
		return false, fmt.Sprintf("no node rolled within a minute: %s", hopeless)
	}
	if !ok {
		detail := fmt.Sprintf("%d of %d instances on the new AMI", s.onAMIs(newAMIs), s.Instances)
		if lastRollout == "" {
			detail += "; the coordinators report no rollout for pool demo"
		}
		if why := r.nodeClassAMIs(ctx, newAMIs); why != "" {
			detail += "; " + why
		}
		return false, detail
	}
	return true, fmt.Sprintf("all %d instances on %s; at most %d nodes cordoned at once (budget %d)", s.Instances, r.d.AMIRelease, maxOut, demoBudget)
}

// rollout is `dovetail rollouts` for the demo pool, in one line ("" when
// the coordinators have none or cannot be asked).
func (r *demoRun) rollout(ctx context.Context, c *api.Client) string {
	ro, err := c.Rollouts(ctx)
	if err != nil {
		r.log.Debug("rollouts", "err", err)
		return ""
	}
	for _, x := range ro.Rollouts {
		if x == nil || x.NodePool != demoPool {
			continue
		}
		l := fmt.Sprintf("target %s · done %d · in progress %d · remaining %d", x.TargetAMI, len(x.Done), len(x.InProgress), len(x.Remaining))
		if x.Paused {
			l += " · PAUSED"
		}
		if x.BlockedReason != "" {
			l += " · blocked: " + x.BlockedReason
		}
		return l
	}
	return ""
}

var ec2NodeClassesGVR = schema.GroupVersionResource{Group: "karpenter.k8s.aws", Version: "v1", Resource: "ec2nodeclasses"}

// nodeClassAMIs explains a roll that did not happen: drift is detected
// against the EC2NodeClass's status.amis, so it needs something that keeps
// that status current.
func (r *demoRun) nodeClassAMIs(ctx context.Context, newAMIs map[string]bool) string {
	nc, err := r.dyn.Resource(ec2NodeClassesGVR).Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		return ""
	}
	amis, _, _ := unstructured.NestedSlice(nc.Object, "status", "amis")
	if len(amis) == 0 {
		return "EC2NodeClass default has no status.amis yet (the nodeclass-status component resolves it every --nodeclass-interval), so no node can drift on its AMI"
	}
	var ids []string
	for _, a := range amis {
		if m, ok := a.(map[string]any); ok {
			if id, ok := m["id"].(string); ok {
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		if newAMIs[id] {
			return ""
		}
	}
	return "EC2NodeClass default status.amis still lists " + strings.Join(ids, ", ") + " (not the new release)"
}
