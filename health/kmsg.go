package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// kernelPattern recognises one kind of kernel-log problem.
type kernelPattern struct {
	condition string
	state     State
	reason    string
	match     func(msg string) bool
}

func contains(subs ...string) func(string) bool {
	return func(m string) bool {
		for _, s := range subs {
			if strings.Contains(m, s) {
				return true
			}
		}
		return false
	}
}

var xidRE = regexp.MustCompile(`NVRM: Xid \([^)]*\): (\d+)`)

// fatalXids are NVIDIA Xid codes after which the GPU needs a reset or
// replacement (double-bit ECC, fell off the bus, row-remap failure, NVLink,
// GSP errors, ...); other Xids are usually an application's fault.
var fatalXids = map[int]bool{48: true, 63: true, 64: true, 74: true, 79: true, 92: true, 94: true, 95: true, 119: true, 120: true, 140: true}

var kernelPatterns = []kernelPattern{
	{KernelReady, StateDegraded, "OOMKilling", contains("Out of memory: Killed process", "Memory cgroup out of memory", "oom-kill:")},
	{KernelReady, StateDegraded, "HungTask", func(m string) bool {
		return strings.Contains(m, "blocked for more than") && strings.Contains(m, "task ")
	}},
	{KernelReady, StateFailed, "SoftLockup", contains("soft lockup", "hard LOCKUP")},
	{KernelReady, StateFailed, "KernelBug", contains("kernel BUG at", "BUG: unable to handle", "Oops: ", "general protection fault")},
	{StorageReady, StateFailed, "FilesystemError", func(m string) bool {
		return strings.Contains(m, "EXT4-fs error") || strings.Contains(m, "Remounting filesystem read-only") ||
			(strings.Contains(m, "XFS (") && (strings.Contains(strings.ToLower(m), "corruption") || strings.Contains(m, "I/O error") ||
				strings.Contains(m, "Filesystem has been shut down")))
	}},
	{StorageReady, StateFailed, "IOError", contains("I/O error, dev ", "Buffer I/O error on dev", "blk_update_request: I/O error")},
}

// finding is a problem seen in the kernel log.
type finding struct {
	Condition string    `json:"condition"`
	State     State     `json:"state"`
	Reason    string    `json:"reason"`
	Message   string    `json:"message"`
	LastSeen  time.Time `json:"lastSeen"`
	Count     int       `json:"count"`
}

// kernelLog reads the kernel ring buffer incrementally and remembers
// problems for a window, shared by the views that report on them.
type kernelLog struct {
	env *Env

	mu       sync.Mutex
	fd       int // raw descriptor: os.File would park a non-blocking read in the poller
	open     bool
	partial  []byte
	findings map[string]*finding // by reason (+ xid code)
	openErr  error
	kmsgErr  error // of the last poll
	// seen: problem messages already counted, by kernel timestamp and
	// text, so one read from both /dev/kmsg and the journal counts once.
	seen    map[string]time.Time
	journal kernelJournal
}

func newKernelLog(e *Env) *kernelLog {
	return &kernelLog{env: e, findings: map[string]*finding{}, seen: map[string]time.Time{}}
}

// poll reads whatever the kernel logged since the last poll, and makes
// sure the journal is being followed. It fails only when neither source
// can be read.
func (k *kernelLog) poll() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ensureJournal()
	err := k.pollKmsg()
	k.kmsgErr = err
	if err != nil && k.journal.running {
		return nil // the journal has the kernel's messages
	}
	if err != nil && k.journal.err != nil {
		return errors.Join(err, fmt.Errorf("kernel journal: %w", k.journal.err))
	}
	return err
}

func (k *kernelLog) pollKmsg() error {
	if !k.open {
		// Non-blocking: /dev/kmsg blocks at the end of the buffer otherwise.
		// Raw syscalls, because Go's os.File turns EAGAIN into a wait.
		fd, err := syscall.Open(k.env.path(k.env.Kmsg), syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			k.openErr = err
			return fmt.Errorf("open %s: %w", k.env.Kmsg, err)
		}
		k.fd, k.open, k.openErr = fd, true, nil
	}
	boot := k.bootTime()
	buf := make([]byte, 16<<10)
	for range 100000 { // bounded: a flood must not pin the check forever
		n, err := syscall.Read(k.fd, buf)
		if n > 0 {
			k.consume(buf[:n], boot)
		}
		switch {
		case err == nil && n > 0:
			continue
		case err == nil: // n == 0: end of a regular file
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EPIPE):
			// The ring buffer overwrote records we had not read: carry on.
			continue
		case errors.Is(err, syscall.EAGAIN):
			return nil
		default:
			_ = syscall.Close(k.fd)
			k.open = false
			return fmt.Errorf("read %s: %w", k.env.Kmsg, err)
		}
	}
	return nil
}

// bootTime is wall time at boot, from /proc/uptime; zero if unknown (then
// messages count as logged now).
func (k *kernelLog) bootTime() time.Time {
	b, err := os.ReadFile(k.env.path("/proc/uptime"))
	if err != nil {
		return time.Time{}
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return time.Time{}
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return time.Time{}
	}
	return k.env.Now().Add(-time.Duration(up * float64(time.Second)))
}

func (k *kernelLog) consume(chunk []byte, boot time.Time) {
	data := append(k.partial, chunk...)
	k.partial = nil
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			k.partial = append([]byte(nil), data...)
			if len(k.partial) > 64<<10 {
				k.partial = nil // not a log: drop rather than grow
			}
			return
		}
		k.line(string(data[:i]), boot)
		data = data[i+1:]
	}
}

// line parses "pri,seq,usec,flags;message" (continuation lines start with
// a space and are skipped).
func (k *kernelLog) line(l string, boot time.Time) {
	if l == "" || l[0] == ' ' {
		return
	}
	hdr, msg, found := strings.Cut(l, ";")
	if !found {
		return
	}
	at := k.env.Now()
	key := ""
	if parts := strings.Split(hdr, ","); len(parts) >= 3 {
		if us, err := strconv.ParseInt(parts[2], 10, 64); err == nil {
			key = "mono:" + parts[2]
			if !boot.IsZero() {
				at = boot.Add(time.Duration(us) * time.Microsecond)
			}
		}
	}
	k.match(msg, at, key)
}

// match records msg if it is a known problem. key identifies the message
// across sources ("" if unknown: always counted). Called with k.mu held.
func (k *kernelLog) match(msg string, at time.Time, key string) {
	if key != "" {
		key += "|" + msg
	}
	record := func(rkey string, f finding) {
		if key != "" {
			if _, dup := k.seen[key]; dup {
				return
			}
			k.seen[key] = at
		}
		k.record(rkey, f, at)
	}
	if m := xidRE.FindStringSubmatch(msg); m != nil {
		code, _ := strconv.Atoi(m[1])
		st := StateDegraded
		if fatalXids[code] {
			st = StateFailed
		}
		record("NvidiaXid"+m[1], finding{Condition: AcceleratedHardwareReady, State: st, Reason: "NvidiaXidError", Message: msg})
		return
	}
	for _, p := range kernelPatterns {
		if p.match(msg) {
			record(p.reason, finding{Condition: p.condition, State: p.state, Reason: p.reason, Message: msg})
			return
		}
	}
}

func (k *kernelLog) record(key string, f finding, at time.Time) {
	if cur, ok := k.findings[key]; ok {
		cur.Count++
		if at.After(cur.LastSeen) {
			cur.LastSeen, cur.Message = at, f.Message
		}
		return
	}
	f.LastSeen, f.Count = at, 1
	k.findings[key] = &f
}

// verdict is the worst recent finding for condition.
func (k *kernelLog) verdict(condition string) (Result, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cutoff := k.env.Now().Add(-k.env.KernelLogWindow)
	for key, at := range k.seen {
		if at.Before(cutoff) {
			delete(k.seen, key)
		}
	}
	var worst *finding
	keys := make([]string, 0, len(k.findings))
	for key := range k.findings {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		f := k.findings[key]
		if f.LastSeen.Before(cutoff) {
			delete(k.findings, key) // aged out: the problem has cleared
			continue
		}
		if f.Condition == condition && (worst == nil || f.State.Worse(worst.State)) {
			worst = f
		}
	}
	if worst == nil {
		return Result{}, false
	}
	msg := fmt.Sprintf("%s (%d× in the last %s, last at %s)", strings.TrimSpace(worst.Message), worst.Count,
		k.env.KernelLogWindow, worst.LastSeen.UTC().Format(time.RFC3339))
	return Result{State: worst.State, Reason: worst.Reason, Message: msg}, true
}

// SaveState / LoadState keep findings across restarts, so a soft lockup
// logged just before the agent restarted still counts.
func (k *kernelLog) SaveState() (json.RawMessage, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return json.Marshal(k.findings)
}

func (k *kernelLog) LoadState(b json.RawMessage) error {
	m := map[string]*finding{}
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, f := range m {
		if cur, ok := k.findings[key]; !ok || f.LastSeen.After(cur.LastSeen) {
			k.findings[key] = f
		}
	}
	return nil
}

// kernelLogView is a Check reporting kernel-log findings for one condition.
type kernelLogView struct {
	k         *kernelLog
	name      string
	condition string
}

func (k *kernelLog) view(name, condition string) *kernelLogView {
	return &kernelLogView{k: k, name: name, condition: condition}
}

func (v *kernelLogView) Name() string      { return v.name }
func (v *kernelLogView) Condition() string { return v.condition }
func (v *kernelLogView) Run(ctx context.Context) Result {
	err := v.k.poll()
	if r, found := v.k.verdict(v.condition); found {
		return r
	}
	if err != nil {
		return unknown("KernelLogUnreadable", err.Error())
	}
	return ok("NoKernelProblems", v.k.sources())
}

// sources says what the verdict rests on, e.g. "read /dev/kmsg and the
// journal (_TRANSPORT=kernel)" or "read the journal (...); /dev/kmsg: open
// /dev/kmsg: permission denied".
func (k *kernelLog) sources() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	journal := fmt.Sprintf("the journal (%s)", k.env.KernelJournalMatch)
	switch {
	case k.kmsgErr == nil && k.journal.running:
		return "read " + k.env.Kmsg + " and " + journal
	case k.kmsgErr == nil:
		return "read " + k.env.Kmsg
	default:
		return "read " + journal + "; " + k.env.Kmsg + ": " + k.kmsgErr.Error()
	}
}

// Only the first view persists: they share one kernelLog.
func (v *kernelLogView) SaveState() (json.RawMessage, error) { return v.k.SaveState() }
func (v *kernelLogView) LoadState(b json.RawMessage) error   { return v.k.LoadState(b) }
