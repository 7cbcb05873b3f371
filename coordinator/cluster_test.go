package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

func postReport(t testing.TB, addr string, r report.Report) (*http.Response, error) {
	t.Helper()
	b, _ := json.Marshal(r)
	cl := &http.Client{Timeout: 5 * time.Second}
	return cl.Post("http://"+addr+report.Path, "application/json", bytes.NewReader(b))
}

// TestAnyReplicaServesTheCluster: reports posted to a follower are forwarded
// to the leader and committed; every replica shows the same cluster state
// (status, nodes, launches) through the API the CLI uses.
func TestAnyReplicaServesTheCluster(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	ctx := context.Background()
	if err := c.launchUntilDone(ctx, "api-claim"); err != nil {
		t.Fatal(err)
	}
	leader := c.acting(5 * time.Second)
	var follower string
	for _, p := range c.peers {
		if p.ID != leader.Node().ID() {
			follower = p.ID
			break
		}
	}
	rep := report.Report{ID: "rep-1", Kind: report.KindHealth, NodeName: "node-a", InstanceID: "i-123",
		ObservedAt: time.Now(), Checks: []report.CheckResult{{Name: "kubelet", State: "failed", Since: time.Now()}}}
	for i := 0; i < 2; i++ { // the retry of a delivered report is deduplicated
		resp, err := postReport(t, c.https[follower], rep)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("report via follower: %s", resp.Status)
		}
	}
	for _, p := range c.peers {
		cl := api.NewClient(c.https[p.ID])
		var nodes []api.Node
		if err := cl.Get(ctx, api.PathNodes+"?consistent=1", &nodes); err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		if len(nodes) != 1 || nodes[0].Health != "failed" || nodes[0].InstanceID != "i-123" {
			t.Fatalf("%s nodes = %+v", p.ID, nodes)
		}
		st, err := cl.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.LeaderID != leader.Node().ID() || len(st.Servers) != 3 || st.Launches != 1 {
			t.Fatalf("%s status = %+v", p.ID, st)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			l, err := cl.Launches(ctx, false)
			if err == nil && len(l.Intents) == 1 && l.Intents[0].State == fsm.IntentLaunched {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s launches = %+v, %v", p.ID, l, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, path := range []string{api.PathHealthz, api.PathReadyz, api.PathMetrics} {
			resp, err := http.Get("http://" + c.https[p.ID] + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s: %s", p.ID, path, resp.Status)
			}
		}
	}
	st := leader.Node().State()
	if n := len(st.ReportIDs); n != 1 {
		t.Fatalf("report applied %d times", n)
	}
}

// TestSnapshotRestoreAndReplicaReplacement snapshots every replica, then
// replaces one with an empty volume: it rejoins under its ID, receives the
// snapshot and holds the same state.
func TestSnapshotRestoreAndReplicaReplacement(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		if err := c.apply(ctx, fsm.ReportReceived{ReceivedAt: time.Now(), Report: report.Report{
			ID: fmt.Sprintf("r%d", i), Kind: report.KindHealth, NodeName: fmt.Sprintf("n%d", i%20)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"snap-a", "snap-b"} {
		if err := c.launchUntilDone(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	leader := c.acting(5 * time.Second)
	if err := leader.Node().Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	for _, r := range c.reps {
		if err := r.Node().Snapshot(); err != nil {
			t.Errorf("snapshot %s: %v", r.Node().ID(), err)
		}
	}
	c.mu.Unlock()
	want := leader.Node().State()

	var victim string
	for _, p := range c.peers {
		if p.ID != leader.Node().ID() {
			victim = p.ID
		}
	}
	c.kill(victim)
	if err := os.RemoveAll(c.dirs[victim]); err != nil {
		t.Fatal(err)
	}
	// More writes while it is gone, so it needs snapshot + log.
	if err := c.apply(ctx, fsm.RolloutSet{Rollout: fsm.Rollout{NodePool: "default", TargetAMI: "ami-2"}}); err != nil {
		t.Fatal(err)
	}
	r := c.start(victim)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := r.Node().State()
		if len(got.Nodes) == len(want.Nodes) && len(got.Intents) == len(want.Intents) && got.Rollouts["default"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replaced replica has %d nodes, %d intents, rollouts %v", len(got.Nodes), len(got.Intents), got.Rollouts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	servers, err := c.acting(5 * time.Second).Node().Servers()
	if err != nil || len(servers) != 3 {
		t.Fatalf("configuration after replacement: %v, %v", servers, err)
	}
	c.checkInvariants([]string{"snap-a", "snap-b"}, 10*time.Second)
}

// TestRollingRestart restarts every replica one by one (graceful: the leader
// hands over leadership) while launches keep arriving.
func TestRollingRestart(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	ctx := context.Background()
	var claims []string
	var mu sync.Mutex
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			name := fmt.Sprintf("rolling-%d", i)
			lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err := c.launchUntilDone(lctx, name)
			cancel()
			if err != nil {
				done <- err
				return
			}
			mu.Lock()
			claims = append(claims, name)
			mu.Unlock()
		}
	}()
	for _, p := range c.peers {
		c.stop(p.ID)
		c.start(p.ID)
		c.acting(10 * time.Second)
		time.Sleep(150 * time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(claims) < 3 {
		t.Fatalf("only %d launches during the rolling restart", len(claims))
	}
	c.checkInvariants(claims, 15*time.Second)
	t.Logf("%d launches across a rolling restart of 3 replicas", len(claims))
}

// TestCoordinatorsJoinTheGossipPool: replicas join the memberlist pool as
// role "coordinator" with their API address, which is where agents send
// reports.
func TestCoordinatorsJoinTheGossipPool(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{gossip: true})
	r := c.acting(5 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		coords := map[string]string{}
		for _, m := range r.Gossip().Members() {
			if m.Meta.Role == "coordinator" && m.State == "alive" {
				coords[m.Name] = m.Meta.RPCAddr
			}
		}
		ok := len(coords) == 3
		for _, p := range c.peers {
			if coords[p.ID] != c.https[p.ID] {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gossip pool coordinators = %v", coords)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
