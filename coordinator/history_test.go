package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/report"
)

type regInput struct {
	key   string
	write bool
	value string
}

// registerModel: each node's instance ID, as set by reports and read back
// with ?consistent=1, must behave like a linearizable register per node.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regInput).key
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("write(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("read(%s) -> %v", in.key, output)
	},
}

// TestHistoryIsLinearizableUnderLeaderKills drives concurrent report writes
// and consistent reads through random replicas while the leader is killed
// and restarted, then checks the history with porcupine.
func TestHistoryIsLinearizableUnderLeaderKills(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.acting(5 * time.Second)
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		seq     atomic.Int64
		unknown atomic.Int64
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
				op := porcupine.Operation{ClientId: client, Call: now()}
				if rng.Intn(2) == 0 {
					v := fmt.Sprintf("i-%d", seq.Add(1))
					op.Input = regInput{key: key, write: true, value: v}
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
					op.Return = now()
					if !ok {
						unknown.Add(1)
						op.Return = math.MaxInt64 // outcome unknown: may take effect any time later
					}
					op.Output = ""
				} else {
					op.Input = regInput{key: key}
					cl := &api.Client{Base: "http://" + c.https[p.ID], HTTP: httpc}
					var n api.Node
					err := cl.Get(context.Background(), api.PathNodes+"/"+key+"?consistent=1", &n)
					op.Return = now()
					switch {
					case err == nil:
						op.Output = n.InstanceID
					case isNotFound(err):
						op.Output = ""
					default:
						continue // a failed read tells nothing
					}
				}
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
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
		mu.Lock()
		w, r := 0, 0
		for _, op := range history {
			if op.Input.(regInput).write {
				w++
			} else {
				r++
			}
		}
		mu.Unlock()
		if w >= 20 && r >= 20 {
			break
		}
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	writes, reads := 0, 0
	for _, op := range history {
		if op.Input.(regInput).write {
			writes++
		} else {
			reads++
		}
	}
	if writes < 20 || reads < 20 {
		t.Fatalf("history too thin: %d writes, %d reads", writes, reads)
	}
	res := porcupine.CheckOperationsTimeout(registerModel, history, 20*time.Second)
	if res != porcupine.Ok {
		t.Fatalf("history of %d writes (%d unknown) and %d reads is %v", writes, unknown.Load(), reads, res)
	}
	t.Logf("linearizable: %d writes (%d with unknown outcome), %d reads, 3 leader kills", writes, unknown.Load(), reads)
}

func isNotFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), "404")
}
