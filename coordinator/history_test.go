package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/linearcheck"
	"github.com/dovetail-dev/dovetail/report"
)

// TestHistoryIsLinearizableUnderLeaderKills drives concurrent report writes
// and consistent reads through random replicas while the leader is killed
// and restarted, then checks the history with porcupine.
func TestHistoryIsLinearizableUnderLeaderKills(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.acting(5 * time.Second)
	var (
		history = linearcheck.NewHistory()
		seq     atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	keys := []string{"node-w", "node-x", "node-y", "node-z"}
	httpc := &http.Client{Timeout: 2 * time.Second}
	for client := 0; client < 4; client++ {
		wg.Add(1)
		go func(client int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(client)))
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(5+rng.Intn(10)) * time.Millisecond):
				}
				p := c.peers[rng.Intn(len(c.peers))]
				key := keys[rng.Intn(len(keys))]
				call := history.Now()
				if rng.Intn(2) == 0 {
					v := fmt.Sprintf("i-%d", seq.Add(1))
					resp, err := postReport(t, c.https[p.ID], report.Report{ID: v, Kind: report.KindHealth, NodeName: key, InstanceID: v})
					if err != nil && strings.Contains(err.Error(), "connection refused") {
						continue // never reached a replica: did not happen
					}
					ok := err == nil && resp.StatusCode == http.StatusOK
					refused := false
					if resp != nil {
						var e api.Error
						if !ok && json.NewDecoder(resp.Body).Decode(&e) == nil && e.NotApplied {
							refused = true
						}
						resp.Body.Close()
					}
					if refused {
						continue // the API guarantees it had no effect
					}
					// !ok: outcome unknown, it may take effect any time later.
					history.Write(client, key, v, call, ok)
				} else {
					cl := &api.Client{Base: "http://" + c.https[p.ID], HTTP: httpc}
					var n api.Node
					err := cl.Get(context.Background(), api.PathNodes+"/"+key+"?consistent=1", &n)
					switch {
					case err == nil:
						history.Read(client, key, n.InstanceID, call)
					case isNotFound(err):
						history.Read(client, key, "", call)
					}
					// A failed read tells nothing.
				}
			}
		}(client)
	}
	for i := 0; i < 3; i++ {
		time.Sleep(300 * time.Millisecond)
		l := c.acting(10 * time.Second)
		id := l.Node().ID()
		c.kill(id)
		c.acting(10 * time.Second)
		c.start(id)
	}
	// Requests now wait out elections instead of failing fast, so a loaded
	// machine completes fewer of them per second: run on until the history
	// is thick enough to mean something (bounded).
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); {
		time.Sleep(300 * time.Millisecond)
		if w, _, r := history.Counts(); w >= 20 && r >= 20 {
			break
		}
	}
	close(stop)
	wg.Wait()
	writes, unknown, reads := history.Counts()
	if writes < 20 || reads < 20 {
		t.Fatalf("history too thin: %d writes, %d reads", writes, reads)
	}
	res, _ := history.Check(20 * time.Second)
	if res != porcupine.Ok {
		t.Fatalf("history of %d writes (%d unknown) and %d reads is %v", writes, unknown, reads, res)
	}
	t.Logf("linearizable: %d writes (%d with unknown outcome), %d reads, 3 leader kills", writes, unknown, reads)
}

func isNotFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), "404")
}
