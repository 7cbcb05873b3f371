package raftnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// memberFile, kept in the data dir beside (not inside) the WAL directory,
// says this replica has been part of a Raft cluster. It is written once the
// replica has Raft state (after its bootstrap, or at a start with state),
// so that losing the WAL directory is detected instead of silently
// bootstrapping an empty replica, which could vote as if it had never
// promised anything and, with enough such peers, elect a leader with an
// empty log.
const memberFile = "raft-member.json"

// ErrStorage marks Raft storage a replica must not start from (a corrupt
// WAL, a lost WAL); the message says which file and what to do.
var ErrStorage = errors.New("raft storage unusable")

type memberRecord struct {
	ID      string    `json:"id"`
	Since   time.Time `json:"since"`
	Comment string    `json:"comment"`
}

func readMember(dataDir string) (*memberRecord, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, memberFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", memberFile, err)
	}
	var m memberRecord
	if err := json.Unmarshal(b, &m); err != nil {
		// Present but unreadable still means "was a member".
		return &memberRecord{}, nil
	}
	return &m, nil
}

func writeMember(dataDir, id string, now time.Time) error {
	p := filepath.Join(dataDir, memberFile)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	b, _ := json.Marshal(memberRecord{ID: id, Since: now.UTC(),
		Comment: "this replica has joined a Raft cluster; if wal/ is lost, wipe this whole directory and start with --raft-rejoin"})
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", memberFile, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("write %s: %w", memberFile, err)
	}
	return nil
}

// recoverHint is the documented recovery for unusable storage.
func recoverHint(dataDir string) string {
	return fmt.Sprintf("to recover, stop this replica, delete its whole data directory %s (keep a copy if you want to investigate) "+
		"and start it with --raft-rejoin (DOVETAIL_COORDINATOR_RAFT_REJOIN=true): it then waits for the leader to send it the log and a snapshot "+
		"instead of bootstrapping; the other replicas must hold a quorum (see coordinator/README.md, Raft storage)", dataDir)
}

// checkLostWAL refuses to start a replica whose WAL has no state although
// the replica was a member (marker file) or still has snapshots.
func checkLostWAL(cfg Config, walDir string, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore) error {
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("inspect raft wal %s: %w", walDir, err)
	}
	term, _ := stable.GetUint64([]byte("CurrentTerm"))
	if last > 0 || term > 0 {
		return nil
	}
	m, err := readMember(cfg.DataDir)
	if err != nil {
		return err
	}
	if m != nil && !cfg.Rejoin {
		return fmt.Errorf("%w: raft wal %s is empty or missing but %s says replica %q joined the cluster on %s; "+
			"starting would bootstrap an empty replica; %s", ErrStorage, walDir, filepath.Join(cfg.DataDir, memberFile),
			cfg.ID, m.Since.Format(time.RFC3339), recoverHint(cfg.DataDir))
	}
	if list, err := snaps.List(); err == nil && len(list) > 0 {
		return fmt.Errorf("%w: raft wal %s is empty or missing but %s holds snapshots (latest %s); "+
			"the replica's term and vote are lost with the WAL; %s", ErrStorage, walDir, filepath.Join(cfg.DataDir, "snapshots"),
			list[0].ID, recoverHint(cfg.DataDir))
	}
	return nil
}

// verifyWAL reads every entry the WAL holds before raft.NewRaft does:
// raft panics on an entry it cannot read (it scans the log for
// configuration changes at start), which would crash-loop the replica with
// a stack and no advice. The error names the segment file.
func verifyWAL(walDir string, logs raft.LogStore) error {
	first, err := logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("%w: raft wal %s: read first index: %v", ErrStorage, walDir, err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("%w: raft wal %s: read last index: %v", ErrStorage, walDir, err)
	}
	if last == 0 {
		return nil
	}
	var e raft.Log
	for i := first; i <= last; i++ {
		if err := safeGetLog(logs, i, &e); err != nil {
			return fmt.Errorf("%w: raft wal entry %d (in %s) is unreadable: %v; this replica's log on disk is corrupt; %s",
				ErrStorage, i, segmentFor(walDir, i), err, recoverHint(filepath.Dir(walDir)))
		}
	}
	return nil
}

func safeGetLog(logs raft.LogStore, i uint64, e *raft.Log) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return logs.GetLog(i, e)
}

// segmentFor names the WAL segment file holding index i: raft-wal names
// segments "<base index, 20 digits>-<id, 16 hex>.wal", so it is the one with
// the greatest base index not above i.
func segmentFor(walDir string, i uint64) string {
	files, _ := filepath.Glob(filepath.Join(walDir, "*.wal"))
	sort.Strings(files)
	best := ""
	for _, f := range files {
		base, _, ok := strings.Cut(filepath.Base(f), "-")
		if !ok {
			continue
		}
		b, err := strconv.ParseUint(base, 10, 64)
		if err != nil || b > i {
			continue
		}
		best = f
	}
	if best == "" {
		return "segment file unknown, directory " + walDir
	}
	return "segment file " + best
}

// guard runs f, turning a panic into an ErrStorage error with the stack
// logged by the caller: storage code (raft-wal, raft.NewRaft) panics on
// some corrupt input, and a replica must say what to do rather than crash.
func guard(what, dataDir string, f func() error) (stack []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s panicked: %v; %s", ErrStorage, what, r, recoverHint(dataDir))
			stack = debug.Stack()
		}
	}()
	return nil, f()
}
