package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/launcher"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/gossip"
	"github.com/dovetail-dev/dovetail/internal/freeport"
)

const testCluster = "dovetail-coord-test"

func quietLog() *slog.Logger {
	if os.Getenv("DOVETAIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// countingCloud records every cloud side effect a replica attempts.
type countingCloud struct {
	launcher.CloudProvider
	creates, deletes atomic.Int64
	blocked          atomic.Bool // partitioned replica: any call is a test failure
	violations       atomic.Int64
}

func (c *countingCloud) Create(ctx context.Context, nc *awsv1.EC2NodeClass, req *cloud.LaunchRequest) (*cloud.Instance, error) {
	c.creates.Add(1)
	if c.blocked.Load() {
		c.violations.Add(1)
	}
	return c.CloudProvider.Create(ctx, nc, req)
}

func (c *countingCloud) Delete(ctx context.Context, id string) error {
	c.deletes.Add(1)
	if c.blocked.Load() {
		c.violations.Add(1)
	}
	return c.CloudProvider.Delete(ctx, id)
}

type staticClasses struct{ nc *awsv1.EC2NodeClass }

func (s staticClasses) NodeClass(_ context.Context, name string) (*awsv1.EC2NodeClass, error) {
	nc := s.nc.DeepCopy()
	nc.Name = name
	return nc, nil
}

func testNodeClass() *awsv1.EC2NodeClass {
	return &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": testCluster}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": testCluster}}},
			Role:                       "KarpenterNodeRole-" + testCluster,
		},
	}
}

type cluster struct {
	t     testing.TB
	sim   *ec2sim.Sim
	peers []raftnode.Peer
	dirs  map[string]string
	https map[string]string

	mu     sync.Mutex
	reps   map[string]*Coordinator
	clouds map[string]*countingCloud
	down   map[[2]string]bool // raft address pairs that cannot talk
	hook   func(ctx context.Context, replica string, step launcher.Step, token string) error
	opts   clusterOpts
	seeds  []string // gossip addresses of started replicas
}

type clusterOpts struct {
	leakGrace time.Duration
	interval  time.Duration
	gossip    bool // join a dev-mode gossip pool
	// configure, when set, adjusts each replica's config before it starts
	// (TLS and authentication in the trust tests).
	configure func(id string, cfg *Config)
}

func newCluster(t testing.TB, n int, opts clusterOpts) *cluster {
	t.Helper()
	if opts.leakGrace == 0 {
		opts.leakGrace = 400 * time.Millisecond
	}
	if opts.interval == 0 {
		opts.interval = 100 * time.Millisecond
	}
	sim := ec2sim.New(ec2sim.Config{DisableIMDS: true, ClusterName: testCluster})
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	c := &cluster{t: t, sim: sim, dirs: map[string]string{}, https: map[string]string{},
		reps: map[string]*Coordinator{}, clouds: map[string]*countingCloud{}, down: map[[2]string]bool{}, opts: opts}
	addrs := freeport.Addrs(t, 2*n)
	base := t.TempDir()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("coord-%d", i)
		c.peers = append(c.peers, raftnode.Peer{ID: id, RaftAddr: addrs[2*i], HTTPAddr: addrs[2*i+1]})
		c.dirs[id] = filepath.Join(base, id)
		c.https[id] = addrs[2*i+1]
	}
	for _, p := range c.peers {
		c.start(p.ID)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		reps := c.reps
		c.reps = map[string]*Coordinator{}
		c.mu.Unlock()
		for _, r := range reps {
			r.Kill()
		}
	})
	return c
}

func (c *cluster) peer(id string) raftnode.Peer {
	for _, p := range c.peers {
		if p.ID == id {
			return p
		}
	}
	c.t.Fatalf("no peer %s", id)
	return raftnode.Peer{}
}

func (c *cluster) start(id string) *Coordinator {
	c.t.Helper()
	p := c.peer(id)
	ice := launcher.NewICEStore()
	prov, err := ec2.New(context.Background(), ec2.Config{Offerings: ice,
		Region: c.sim.Region(), Endpoint: c.sim.URL(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		ClusterName: testCluster, ClusterEndpoint: "https://10.0.0.1:6443", ClusterCA: "Q0EK",
		KubernetesVersion: "1.37", Logger: quietLog(), MaxAttempts: 3, MaxBackoff: 10 * time.Millisecond,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	cc := &countingCloud{CloudProvider: prov}
	self := p.RaftAddr
	cfg := Config{
		Raft: raftnode.Config{
			ID: id, DataDir: c.dirs[id], BindAddr: p.RaftAddr, Peers: c.peers,
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
			// The lease equals the heartbeat timeout (raftnode's default ratio):
			// at half of it, a leader whose quorum has no slack (5 replicas,
			// 2 cut off) stepped down whenever -race on a loaded machine
			// delayed one follower's answers by 100 ms.
			LeaderLeaseTimeout: 200 * time.Millisecond, SegmentSize: 1 << 20, ApplyTimeout: 2 * time.Second,
			LinkDown: func(target string) bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return c.down[[2]string{self, target}]
			},
		},
		HTTPAddr:    p.HTTPAddr,
		Cloud:       cc,
		NodeClasses: staticClasses{nc: testNodeClass()},
		Launcher: LauncherOptions{Interval: c.opts.interval, LeakGrace: c.opts.leakGrace, ICE: ice,
			Hook: func(ctx context.Context, step launcher.Step, token string) error {
				c.mu.Lock()
				h := c.hook
				c.mu.Unlock()
				if h == nil {
					return nil
				}
				return h(ctx, id, step, token)
			}},
		NodeGrace:          300 * time.Millisecond,
		MembershipInterval: 200 * time.Millisecond,
		Logger:             quietLog(),
	}
	if c.opts.gossip {
		c.mu.Lock()
		seeds := append([]string(nil), c.seeds...)
		c.mu.Unlock()
		cfg.Gossip = &gossip.Config{Dev: true, BindAddr: "127.0.0.1", Seeds: seeds, Label: testCluster}
	}
	if c.opts.configure != nil {
		c.opts.configure(id, &cfg)
	}
	r, err := Start(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.mu.Lock()
	if r.Gossip() != nil {
		c.seeds = append(c.seeds, r.Gossip().LocalAddr())
	}
	c.reps[id] = r
	c.clouds[id] = cc
	c.mu.Unlock()
	return r
}

func (c *cluster) kill(id string) {
	c.mu.Lock()
	r := c.reps[id]
	delete(c.reps, id)
	c.mu.Unlock()
	if r != nil {
		r.Kill()
	}
}

func (c *cluster) stop(id string) {
	c.mu.Lock()
	r := c.reps[id]
	delete(c.reps, id)
	c.mu.Unlock()
	if r != nil {
		if err := r.Close(context.Background()); err != nil {
			c.t.Logf("close %s: %v", id, err)
		}
	}
}

// partition cuts every link between the two groups (by replica ID).
func (c *cluster) partition(a, b []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			ax, by := c.peer(x).RaftAddr, c.peer(y).RaftAddr
			c.down[[2]string{ax, by}] = true
			c.down[[2]string{by, ax}] = true
		}
	}
}

func (c *cluster) heal() {
	c.mu.Lock()
	c.down = map[[2]string]bool{}
	c.mu.Unlock()
}

// acting waits for a replica (optionally among ids) that acts as leader:
// past its barrier, epoch committed, launcher bound to its term.
func (c *cluster) acting(timeout time.Duration, among ...string) *Coordinator {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		var found *Coordinator
		for id, r := range c.reps {
			if len(among) > 0 && !contains(among, id) {
				continue
			}
			if term, _ := r.Loop().Acting(); term != 0 && r.Node().IsLeader() && r.Launcher().Term() == term {
				found = r
			}
		}
		c.mu.Unlock()
		if found != nil {
			return found
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no acting leader within %v", timeout)
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func nodeClaim(name string) *karpv1.NodeClaim {
	return &karpv1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name),
			Labels: map[string]string{karpv1.NodePoolLabelKey: "default"}},
		Spec: karpv1.NodeClaimSpec{NodeClassRef: &karpv1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}},
	}
}

func launchOptions() []cloud.LaunchOption {
	return []cloud.LaunchOption{
		{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloud.CapacityTypeSpot, Price: 0.04},
		{InstanceType: "m5.large", Zone: "us-east-1b", CapacityType: cloud.CapacityTypeOnDemand, Price: 0.096},
	}
}

// launchUntilDone plays the provisioning controller: it retries a launch on
// whichever replica leads (among, when given) until the launch is committed.
// That is Launch's contract: it fails when leadership moves mid-launch, and
// provisioning re-plans on the next leader.
func (c *cluster) launchUntilDone(ctx context.Context, name string, among ...string) error {
	var last error
	for ctx.Err() == nil {
		r := c.acting(10*time.Second, among...)
		err := r.Launcher().Launch(ctx, nodeClaim(name), launchOptions())
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("launch %s never completed: %w", name, last)
}

// liveByClaim counts non-terminated simulator instances per NodeClaim tag.
func (c *cluster) liveByClaim() (map[string][]string, int) {
	out := map[string][]string{}
	total := 0
	for _, in := range c.sim.Instances() {
		if in.State == cloud.StateTerminated || in.State == cloud.StateShuttingDown {
			continue
		}
		total++
		out[in.Tags[cloud.TagNodeClaim]] = append(out[in.Tags[cloud.TagNodeClaim]], in.ID)
	}
	return out, total
}

// checkInvariants waits until every intent is resolved and then asserts
// exactly one live instance per claim, owned by its intent, and no others.
func (c *cluster) checkInvariants(claims []string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var problem error
	for time.Now().Before(deadline) {
		problem = c.invariants(claims)
		if problem == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("invariants do not hold: %v", problem)
}

func (c *cluster) invariants(claims []string) error {
	r := c.acting(10 * time.Second)
	st := r.Node().State()
	live, total := c.liveByClaim()
	if open := st.OpenIntents(); len(open) > 0 {
		return fmt.Errorf("%d intents still open (first %s %s)", len(open), open[0].NodeClaim, open[0].State)
	}
	for _, name := range claims {
		in := st.IntentByNodeClaim(name)
		if in == nil {
			return fmt.Errorf("claim %s has no intent", name)
		}
		if in.Instance == nil {
			return fmt.Errorf("claim %s intent %s has no instance (%s)", name, in.State, in.Error)
		}
		ids := live[name]
		if len(ids) != 1 || ids[0] != in.Instance.ID {
			return fmt.Errorf("claim %s: live instances %v, intent says %s", name, ids, in.Instance.ID)
		}
	}
	if total != len(claims) {
		return fmt.Errorf("%d live instances for %d claims (leak)", total, len(claims))
	}
	return nil
}

var errKilled = errors.New("replica killed by test")

// apply commits a command through whichever replica leads, retrying across
// elections (a loaded test machine can miss a 200 ms heartbeat).
func (c *cluster) apply(ctx context.Context, cmd fsm.Command) error {
	var last error
	for i := 0; i < 20; i++ {
		r := c.acting(10 * time.Second)
		if last = r.Node().Apply(ctx, cmd); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last
}
