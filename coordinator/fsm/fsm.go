package fsm

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"
)

// FSM implements raft.FSM over State.
type FSM struct {
	log *slog.Logger

	mu    sync.RWMutex
	state *State
	// watchers are closed and replaced on every applied index, so readers can
	// wait for "state changed" without polling.
	changed chan struct{}
}

// New returns an FSM with empty state.
func New(log *slog.Logger) *FSM {
	if log == nil {
		log = slog.Default()
	}
	return &FSM{log: log, state: NewState(), changed: make(chan struct{})}
}

// Apply implements raft.FSM. It returns nil or an error value; a command that
// fails validation changes nothing on any replica (each replica sees the same
// error because Apply is deterministic).
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := Decode(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state.Index = l.Index
	f.notifyLocked()
	if err != nil {
		f.log.Error("fsm: cannot decode command", "index", l.Index, "err", err)
		return err
	}
	if c == nil { // ignorable unknown command from a newer replica
		f.log.Warn("fsm: skipping unknown ignorable command", "index", l.Index, "type", l.Data[0])
		return nil
	}
	if err := f.state.apply(c); err != nil {
		return err
	}
	return nil
}

func (f *FSM) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Changed returns a channel closed at the next applied command.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// AppliedIndex returns the index of the last applied log entry.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Index
}

// View calls fn with the live state under a read lock. fn must not keep or
// modify anything it is given.
func (f *FSM) View(fn func(*State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// State returns a deep copy of the state.
func (f *FSM) State() *State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Clone()
}

// Snapshot implements raft.FSM.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := json.Marshal(f.state)
	if err != nil {
		return nil, fmt.Errorf("snapshot fsm: %w", err)
	}
	return &snapshot{data: b}, nil
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s := NewState()
	if err := json.NewDecoder(rc).Decode(s); err != nil {
		return fmt.Errorf("restore fsm: %w", err)
	}
	s.fillNil()
	f.mu.Lock()
	f.state = s
	f.notifyLocked()
	f.mu.Unlock()
	return nil
}

type snapshot struct{ data []byte }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
