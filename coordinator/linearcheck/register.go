// Package linearcheck records a history of register operations against the
// coordinator's API (report writes set a node's instance ID, consistent reads
// return it) and checks it with porcupine: the history must be linearizable
// per node, which also means no acknowledged write was lost. The in-process
// cluster tests and the multi-host Docker fault suite share it.
package linearcheck

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Input is one register operation: a write of Value to Key, or a read of Key.
type Input struct {
	Key   string
	Write bool
	Value string
}

// Model is a linearizable register per key, initially "" (a node never
// reported reads as 404, recorded as "").
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(Input).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(Input)
		if in.Write {
			return true, in.Value
		}
		return output.(string) == state.(string), state
	},
	Equal: func(a, b any) bool { return a.(string) == b.(string) },
	DescribeOperation: func(input, output any) string {
		in := input.(Input)
		if in.Write {
			return fmt.Sprintf("write(%s, %s)", in.Key, in.Value)
		}
		return fmt.Sprintf("read(%s) -> %v", in.Key, output)
	},
}

// History collects operations from concurrent clients.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// Writes, Unknown and Reads count what was recorded.
	writes, unknown, reads int
}

// NewHistory starts a history; operation times are measured from now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the clock operations are stamped with.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Write records a write called at call. acked false means the outcome is
// unknown (timeout, connection lost after sending): the write may take
// effect at any later time, so it never returns. A write the API refused
// with NotApplied, or that never reached a replica, must not be recorded.
func (h *History) Write(client int, key, value string, call int64, acked bool) {
	ret := h.Now()
	if !acked {
		ret = math.MaxInt64
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writes++
	if !acked {
		h.unknown++
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: Input{Key: key, Write: true, Value: value}, Call: call, Output: "", Return: ret})
}

// Read records a successful read of key returning value ("" for not found).
// A failed read tells nothing and must not be recorded.
func (h *History) Read(client int, key, value string, call int64) {
	ret := h.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reads++
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: Input{Key: key}, Call: call, Output: value, Return: ret})
}

// Counts returns the writes (of which unknown outcome) and reads recorded.
func (h *History) Counts() (writes, unknown, reads int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.writes, h.unknown, h.reads
}

// Check runs porcupine on the history (bounded by timeout: Unknown then).
// On Illegal, info can be written out with porcupine.VisualizePath.
func (h *History) Check(timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	return porcupine.CheckOperationsVerbose(Model, ops, timeout)
}
