package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/launcher"
)

var allSteps = []launcher.Step{launcher.StepBeforeIntent, launcher.StepBeforeCreate, launcher.StepAfterCreate, launcher.StepAfterResult}

// TestLeaderKilledAtEveryLaunchStep kills the leader at each step of the
// launch protocol, for many seeds, in 3- and 5-replica clusters over real
// TCP, against the EC2 simulator through the real provider. After every
// round: every intent resolves, exactly one instance per NodeClaim, no leaks.
// DOVETAIL_SEEDS sets the rounds per cluster size (default 10).
func TestLeaderKilledAtEveryLaunchStep(t *testing.T) {
	seeds := envInt("DOVETAIL_SEEDS", 10)
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("replicas=%d", size), func(t *testing.T) {
			c := newCluster(t, size, clusterOpts{})
			var claims []string
			fires := 0
			for seed := 0; seed < seeds; seed++ {
				rng := rand.New(rand.NewSource(int64(seed*31 + size)))
				step := allSteps[seed%len(allSteps)] // every step, in turn
				k := 3 + rng.Intn(4)
				var round []string
				for i := 0; i < k; i++ {
					round = append(round, fmt.Sprintf("r%d-s%d-c%d", size, seed, i))
				}
				victim := launcher.TokenFor("uid-" + round[rng.Intn(k)])
				var fired atomic.Bool
				killed := make(chan string, 1)
				c.mu.Lock()
				c.hook = func(ctx context.Context, replica string, s launcher.Step, token string) error {
					if s != step || token != victim || !fired.CompareAndSwap(false, true) {
						return nil
					}
					killed <- replica
					go c.kill(replica)
					<-ctx.Done()
					return errKilled
				}
				c.mu.Unlock()

				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				var wg sync.WaitGroup
				errs := make(chan error, k)
				for _, name := range round {
					wg.Add(1)
					go func(name string) {
						defer wg.Done()
						if err := c.launchUntilDone(ctx, name); err != nil {
							errs <- err
						}
					}(name)
				}
				wg.Wait()
				cancel()
				close(errs)
				for err := range errs {
					t.Fatalf("seed %d step %s: %v", seed, step, err)
				}
				claims = append(claims, round...)
				select {
				case id := <-killed:
					fires++
					c.start(id) // rejoin with its data directory
				default:
					// An unplanned election (a loaded machine missing a
					// heartbeat) can resolve the victim's intent through
					// another path first; the invariants still must hold.
					t.Logf("seed %d: fault at %s did not fire", seed, step)
				}
				c.mu.Lock()
				c.hook = nil
				c.mu.Unlock()
				c.checkInvariants(claims, 15*time.Second)
			}
			if fires < seeds*3/4 {
				t.Fatalf("the planned fault fired in only %d of %d rounds", fires, seeds)
			}
			st := c.acting(5 * time.Second).Node().State()
			t.Logf("%d replicas: %d rounds (%d leader kills), %d NodeClaims, %d intents, epoch term %d", size, seeds, fires, len(claims), len(st.Intents), st.Epoch.Term)
		})
	}
}

// TestLeakedInstanceFromStaleTermIsCollected plants an instance tagged with
// an old leader term and no intent (what a deposed leader's late launch looks
// like): the leader terminates it after the grace period and leaves owned
// instances alone.
func TestLeakedInstanceFromStaleTermIsCollected(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	ctx := context.Background()
	if err := c.launchUntilDone(ctx, "owned"); err != nil {
		t.Fatal(err)
	}
	leader := c.acting(5 * time.Second)
	c.mu.Lock()
	cc := c.clouds[leader.Node().ID()]
	c.mu.Unlock()
	stale, err := cc.CloudProvider.Create(ctx, testNodeClass(), &cloud.LaunchRequest{
		ClientToken: "stale-token", NodeClaimName: "ghost", NodePoolName: "default", NodeClassName: "default",
		LeaderTerm: 1, Options: launchOptions(),
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, ok := c.sim.Instance(stale.ID)
		if !ok || in.State == cloud.StateTerminated || in.State == cloud.StateShuttingDown {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaked instance %s still %s", stale.ID, in.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.checkInvariants([]string{"owned"}, 5*time.Second)
}

// TestPartitionedMinorityNeverCallsEC2 isolates the leader with one follower
// in a 5-replica cluster while launches are requested on both sides. The
// minority never reaches the cloud; the majority elects a leader and
// launches; after healing, every claim has exactly one instance.
func TestPartitionedMinorityNeverCallsEC2(t *testing.T) {
	c := newCluster(t, 5, clusterOpts{})
	ctx := context.Background()
	if err := c.launchUntilDone(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	old := c.acting(5 * time.Second)
	oldID := old.Node().ID()
	var minority, majority []string
	minority = append(minority, oldID)
	for _, p := range c.peers {
		if p.ID == oldID {
			continue
		}
		if len(minority) < 2 {
			minority = append(minority, p.ID)
		} else {
			majority = append(majority, p.ID)
		}
	}
	c.partition(minority, majority)
	c.mu.Lock()
	for _, id := range minority {
		c.clouds[id].blocked.Store(true)
	}
	c.mu.Unlock()

	// The deposed leader is asked to launch right away, inside its lease.
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := old.Launcher().Launch(lctx, nodeClaim("minority-side"), launchOptions())
	cancel()
	if err == nil {
		t.Fatal("a leader cut off from the majority completed a launch")
	}
	// The majority elects a leader and launches. Under -race on a loaded
	// machine the majority may hold another election meanwhile; provisioning
	// then re-plans the claim on the next majority leader, as here.
	if err := c.launchUntilDone(ctx, "majority-side", majority...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the minority's loops try their worst
	c.mu.Lock()
	for _, id := range minority {
		if v := c.clouds[id].violations.Load(); v > 0 {
			t.Errorf("minority replica %s made %d cloud calls while partitioned", id, v)
		}
		c.clouds[id].blocked.Store(false)
	}
	c.mu.Unlock()
	c.heal()
	// The claim asked of the deposed leader is retried by "provisioning".
	if err := c.launchUntilDone(ctx, "minority-side"); err != nil {
		t.Fatal(err)
	}
	c.checkInvariants([]string{"before", "majority-side", "minority-side"}, 15*time.Second)
}

// TestInsufficientCapacityIsReplicated: when every option is out of
// capacity the launch fails with an ICE error, the intent resolves as
// Failed and the refused offerings are in the replicated ICE cache, so the
// next leader knows them too.
func TestInsufficientCapacityIsReplicated(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	for _, o := range launchOptions() {
		if err := c.sim.ExhaustPool(o.InstanceType, o.Zone, o.CapacityType); err != nil {
			t.Fatal(err)
		}
	}
	l := c.acting(5 * time.Second)
	err := l.Launcher().Launch(context.Background(), nodeClaim("no-room"), launchOptions())
	var ice *cloud.InsufficientCapacityError
	if !errors.As(err, &ice) || len(ice.Unavailable) == 0 {
		t.Fatalf("launch error = %v, want insufficient capacity with the refused offerings", err)
	}
	id := l.Node().ID()
	c.kill(id)
	nl := c.acting(10 * time.Second)
	st := nl.Node().State()
	in := st.IntentByNodeClaim("no-room")
	if in == nil || in.State != fsm.IntentFailed || !in.ICE {
		t.Fatalf("intent = %+v", in)
	}
	for _, o := range launchOptions() {
		if !st.Unavailable(o.InstanceType, o.Zone, o.CapacityType, time.Now()) {
			t.Errorf("%s/%s/%s not in the replicated ICE cache", o.InstanceType, o.Zone, o.CapacityType)
		}
	}
	if _, total := c.liveByClaim(); total != 0 {
		t.Fatalf("%d instances launched without capacity", total)
	}
}

// TestNewLeaderReadsTheReplicatedICECache: the replicated cache is the
// providers' only one. A refusal met by a launch that then succeeded on
// another option is committed; the next leader's provider, which never saw
// it and is not re-seeded, skips the offering although EC2 has room again;
// and once the entry leaves the replicated state the offering is used at
// once, with no provider-side TTL left to run out.
func TestNewLeaderReadsTheReplicatedICECache(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	spot := launchOptions()[0] // then on-demand in another zone
	if err := c.sim.ExhaustPool(spot.InstanceType, spot.Zone, spot.CapacityType); err != nil {
		t.Fatal(err)
	}
	launched := func(r *Coordinator, name string) *cloud.Instance {
		t.Helper()
		if err := r.Launcher().Launch(context.Background(), nodeClaim(name), launchOptions()); err != nil {
			t.Fatalf("launch %s: %v", name, err)
		}
		in := r.Node().State().IntentByNodeClaim(name)
		if in == nil || in.Instance == nil {
			t.Fatalf("launch %s: intent %+v", name, in)
		}
		return in.Instance
	}
	l := c.acting(5 * time.Second)
	if inst := launched(l, "first"); inst.CapacityType != cloud.CapacityTypeOnDemand {
		t.Fatalf("first launch is %s, want on-demand", inst.CapacityType)
	}
	if !l.Node().State().Unavailable(spot.InstanceType, spot.Zone, spot.CapacityType, time.Now()) {
		t.Fatal("the refused spot offering of a successful launch is not in the replicated cache")
	}

	if err := c.sim.RefillPool(spot.InstanceType, spot.Zone, spot.CapacityType); err != nil {
		t.Fatal(err)
	}
	c.kill(l.Node().ID())
	nl := c.acting(10 * time.Second)
	if inst := launched(nl, "second"); inst.CapacityType != cloud.CapacityTypeOnDemand {
		t.Fatalf("new leader launched %s: it retried the offering the replicated cache holds", inst.CapacityType)
	}

	if err := nl.Node().ApplyInTerm(context.Background(), nl.Launcher().Term(), fsm.ICEExpire{Now: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if inst := launched(nl, "third"); inst.CapacityType != cloud.CapacityTypeSpot {
		t.Fatalf("after the entry expired in Raft the launch is %s, want spot", inst.CapacityType)
	}
}

// TestDeleteDuringLaunchLeavesNoInstance deletes a NodeClaim's launch while
// the cloud call is in flight: the late instance is terminated, not leaked.
func TestDeleteDuringLaunchLeavesNoInstance(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{leakGrace: time.Hour}) // the leak collector must not be what saves us
	victim := launcher.TokenFor("uid-doomed")
	release := make(chan struct{})
	c.mu.Lock()
	c.hook = func(ctx context.Context, _ string, s launcher.Step, token string) error {
		if s == launcher.StepAfterCreate && token == victim {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	}
	c.mu.Unlock()
	l := c.acting(5 * time.Second)
	errc := make(chan error, 1)
	go func() { errc <- l.Launcher().Launch(context.Background(), nodeClaim("doomed"), launchOptions()) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if live, _ := c.liveByClaim(); len(live["doomed"]) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("instance never launched")
		}
		time.Sleep(20 * time.Millisecond)
	}
	delErr := make(chan error, 1)
	go func() { delErr <- l.Launcher().Delete(context.Background(), "doomed") }()
	for {
		if in := l.Node().State().IntentByNodeClaim("doomed"); in != nil && in.State == fsm.IntentDeleting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("intent never marked Deleting")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release) // the launch result now arrives after the deletion
	<-errc
	if err := <-delErr; err != nil {
		t.Logf("delete: %v (the reconcile pass finishes it)", err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, total := c.liveByClaim()
		st := c.acting(5 * time.Second).Node().State()
		if total == 0 && len(st.Intents) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d live instances, %d intents left", total, len(st.Intents))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
