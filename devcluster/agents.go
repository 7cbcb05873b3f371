package devcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/daemon/agent"
	"github.com/dovetail-dev/dovetail/gossip"
	"github.com/dovetail-dev/dovetail/health"
)

// Agents runs one dovetail-agent (package daemon/agent, in process) per
// running simulated instance, pointed at that instance's IMDS in the
// simulator, the dev cluster's API server and the coordinators. It learns
// about instances by polling the simulator; an agent stops when its
// instance leaves the running state (a spot instance keeps its agent
// through the two-minute notice, so the agent drains it) and on Stop.
//
// In process rather than one subprocess per node: a dev cluster has tens of
// nodes on a small machine, and a Go runtime plus a client-go cache each
// would cost more than the agents themselves.
//
// A kwok node has no kubelet, containerd, disks or kernel of its own, so
// the host health checks are off (they would read this machine's /proc and
// report its failures as the node's) and so is self-repair.
type Agents struct {
	// PollInterval is how often the simulator's instance list is read.
	// Default 1 s.
	PollInterval time.Duration
	// IMDSInterval is each agent's IMDS poll interval. Default 1 s: tens of
	// agents poll their IMDS at once on a shared machine.
	IMDSInterval time.Duration
	// NoGossip keeps the agents out of the coordinators' gossip pool;
	// reports then go to Cluster.CoordinatorAddrs only.
	NoGossip bool

	// source lists instances (the simulator); set by Start.
	source   instanceLister
	kube     kubernetes.Interface
	cl       *Cluster
	stateDir string
	cancel   context.CancelFunc
	loopDone chan struct{}

	mu      sync.Mutex
	running map[string]*runningAgent // by instance ID
	// wg counts agent goroutines, stopped ones included, so Stop returns
	// only once every agent has left gossip and stopped writing.
	wg sync.WaitGroup
}

// instanceLister is what Agents needs of the simulator.
type instanceLister interface {
	Instances() []ec2sim.InstanceInfo
}

type runningAgent struct {
	node, instance string
	agent          *agent.Agent
	cancel         context.CancelFunc
	done           chan struct{}
	// failedAt is set when Run returned on its own; retried after agentRetry.
	failedAt time.Time
}

// agentRetry is how long an agent that stopped on its own (an error while
// its instance still runs) waits before the next try: no restart loop.
const agentRetry = 10 * time.Second

// Name implements Part.
func (*Agents) Name() string { return "node agents (one per simulated instance)" }

// Start implements Part.
func (a *Agents) Start(ctx context.Context, cl *Cluster) error {
	if cl.Sim == nil {
		return errors.New("agents need the in-process EC2 simulator (drop --no-ec2sim or --agents=false)")
	}
	return a.start(ctx, cl, cl.Sim, nil)
}

// start is Start with the instance source and, for tests, the Kubernetes
// client injected.
func (a *Agents) start(ctx context.Context, cl *Cluster, src instanceLister, kube kubernetes.Interface) error {
	if a.PollInterval <= 0 {
		a.PollInterval = time.Second
	}
	if a.IMDSInterval <= 0 {
		a.IMDSInterval = time.Second
	}
	a.source, a.kube, a.cl = src, kube, cl
	a.stateDir = filepath.Join(cl.StateDir, "agents")
	// Spools and drain records of an earlier run belong to instances that no
	// longer exist.
	if err := os.RemoveAll(a.stateDir); err != nil {
		return fmt.Errorf("agents: clean state: %w", err)
	}
	a.running = map[string]*runningAgent{}
	loopCtx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	a.loopDone = make(chan struct{})
	a.sync(loopCtx)
	go func() {
		defer close(a.loopDone)
		t := time.NewTicker(a.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-loopCtx.Done():
				return
			case <-t.C:
				a.sync(loopCtx)
			}
		}
	}()
	return nil
}

// Nodes lists the nodes that have a running agent, sorted.
func (a *Agents) Nodes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, r := range a.running {
		if r.failedAt.IsZero() {
			out = append(out, r.node)
		}
	}
	sort.Strings(out)
	return out
}

// agentWanted: an instance gets an agent once it runs (its Node exists
// from then on) and has an IMDS to watch.
func agentWanted(in ec2sim.InstanceInfo) bool {
	return in.State == "running" && in.IMDSEndpoint != "" && in.PrivateDNS != ""
}

// sync starts agents for new running instances and stops those whose
// instance is shutting down, terminated or gone.
func (a *Agents) sync(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	want := map[string]ec2sim.InstanceInfo{}
	state := map[string]string{}
	for _, in := range a.source.Instances() {
		state[in.ID] = in.State
		if agentWanted(in) {
			want[in.ID] = in
		}
	}
	p := printer{w: a.cl.Out}
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, r := range a.running {
		if _, ok := want[id]; ok {
			if r.failedAt.IsZero() || time.Since(r.failedAt) < agentRetry {
				continue
			}
			delete(a.running, id) // failed long enough ago: start afresh below
			continue
		}
		r.cancel()
		delete(a.running, id)
		if r.failedAt.IsZero() {
			why := "instance gone"
			if st := state[id]; st != "" {
				why = "instance " + st
			}
			p.line(fmt.Sprintf("  · agent stopped: %s (%s, %s)", r.node, id, why))
		}
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if _, ok := a.running[id]; ok {
			continue
		}
		in := want[id]
		r, err := a.startOne(ctx, in)
		if err != nil {
			a.cl.Log.Error("agent not started", "instance", id, "err", err)
			continue
		}
		a.running[id] = r
		p.line(fmt.Sprintf("  · agent started: %s (%s, %s %s)", in.PrivateDNS, id, in.CapacityType, in.InstanceType))
	}
}

// nodeClient is the Kubernetes client of node's agent: the node's own
// identity (system:node:<node>, a client certificate from the control
// plane's CA, as a kubelet's kubeconfig holds on a real node), so the API
// server confines each agent to its Node and its pods as in production.
// Without a local control plane (or with a client injected by a test)
// every agent shares that one client.
func (a *Agents) nodeClient(node string) (kubernetes.Interface, error) {
	if a.kube != nil {
		return a.kube, nil
	}
	var cfg *rest.Config
	if a.cl.ControlPlane != nil {
		var err error
		if cfg, err = a.cl.ControlPlane.NodeClientConfig(node); err != nil {
			return nil, fmt.Errorf("credentials for node %s: %w", node, err)
		}
	} else {
		cfg = rest.CopyConfig(a.cl.RESTConfig)
	}
	cfg.UserAgent = "dovetail-agent/dev"
	// Tens of agents share a small machine: a drain still evicts a node's
	// pods in one burst.
	cfg.QPS, cfg.Burst = 50, 100
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("agent %s: kubernetes client: %w", node, err)
	}
	return kube, nil
}

func (a *Agents) startOne(ctx context.Context, in ec2sim.InstanceInfo) (*runningAgent, error) {
	dir := filepath.Join(a.stateDir, in.ID)
	log := a.cl.Log.With("part", "agent", "node", in.PrivateDNS)
	kube, err := a.nodeClient(in.PrivateDNS)
	if err != nil {
		return nil, err
	}
	cfg := agent.Config{
		Kube:           kube,
		NodeName:       in.PrivateDNS, // the simulator names Nodes after the private DNS name
		IMDSEndpoint:   in.IMDSEndpoint,
		IMDSInterval:   a.IMDSInterval,
		Attest:         true, // the coordinators trust the simulator's signer
		Coordinators:   a.cl.CoordinatorAddrs,
		CoordinatorTLS: a.cl.CoordinatorTLS,
		StateDir:       dir,
		Checks:         []health.Check{}, // kwok node: no host to check
		DisableRepair:  true,
		BootIDFile:     filepath.Join(dir, "boot_id"), // this machine's boot ID is not the node's
		GossipLeave:    time.Second,
		Logger:         log,
	}
	if !a.NoGossip && len(a.cl.GossipSeeds) > 0 {
		cfg.Gossip = gossip.Config{Name: in.PrivateDNS, BindAddr: "127.0.0.1", Seeds: a.cl.GossipSeeds,
			Label: a.cl.GossipLabel, Keys: a.cl.GossipKeys, Dev: true} // Dev: fast local timings; the keyring encrypts
	}
	ag, err := agent.New(cfg)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	r := &runningAgent{node: in.PrivateDNS, instance: in.ID, agent: ag, cancel: cancel, done: make(chan struct{})}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(r.done)
		err := ag.Run(actx)
		if actx.Err() != nil {
			return
		}
		log.Error("agent stopped on its own; retrying later", "err", err, "retry", agentRetry)
		a.mu.Lock()
		r.failedAt = time.Now()
		a.mu.Unlock()
	}()
	return r, nil
}

// Stop implements Part: every agent stops (leaving gossip) before it returns.
func (a *Agents) Stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	<-a.loopDone
	a.mu.Lock()
	for _, r := range a.running {
		r.cancel()
	}
	a.running = nil
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		a.cl.Log.Warn("agents did not all stop within 15s")
	}
}
