package health

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// kernelJournal follows kernel messages in the systemd journal, beside
// /dev/kmsg: where /dev/kmsg is not readable (a container, a tighter unit)
// or the ring buffer has already wrapped, journald still has them. It runs
// `journalctl --follow --output=json` (the journal's files are read by
// journalctl itself: no cgo, no libsystemd in the agent) and feeds each
// message through the same patterns as /dev/kmsg.
type kernelJournal struct {
	running bool
	started time.Time
	err     error
}

// journalRetry: a journalctl that exited is started again at most this often.
const journalRetry = 10 * time.Second

// journalArgs: this boot's entries from the start (so problems logged
// before the agent started count, like the whole ring buffer read from
// /dev/kmsg), then follow.
func journalArgs(match string) []string {
	return []string{"--follow", "--boot", "--lines=all", "--output=json", "--no-pager", "--quiet", match}
}

// ensureJournal starts journalctl if it is not running. Called with k.mu held.
func (k *kernelLog) ensureJournal() {
	e := k.env
	if e.KernelJournalMatch == "" || e.KernelJournalMatch == "off" {
		return
	}
	j := &k.journal
	now := time.Now()
	if j.running || (!j.started.IsZero() && now.Sub(j.started) < journalRetry) {
		return
	}
	j.started = now
	cmd := exec.Command(e.Journalctl, journalArgs(e.KernelJournalMatch)...)
	cmd.SysProcAttr = journalProcAttr()
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		j.err = fmt.Errorf("start %s: %w", e.Journalctl, err)
		return
	}
	j.running, j.err = true, nil
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			k.journalEntry(sc.Bytes())
		}
		werr := cmd.Wait()
		k.mu.Lock()
		defer k.mu.Unlock()
		k.journal.running = false
		k.journal.err = errors.Join(fmt.Errorf("%s exited", e.Journalctl), sc.Err(), werr)
	}()
}

// journalEntry is one line of `journalctl -o json`.
func (k *kernelLog) journalEntry(line []byte) {
	var ent struct {
		Message   json.RawMessage `json:"MESSAGE"`
		Realtime  string          `json:"__REALTIME_TIMESTAMP"`
		Monotonic string          `json:"_SOURCE_MONOTONIC_TIMESTAMP"`
	}
	if err := json.Unmarshal(line, &ent); err != nil {
		return // not an entry: skip rather than stop following
	}
	msg, ok := journalMessage(ent.Message)
	if !ok {
		return
	}
	at := k.env.Now()
	if us, err := strconv.ParseInt(ent.Realtime, 10, 64); err == nil {
		at = time.UnixMicro(us)
	}
	// The kernel's own timestamp (µs since boot) is what /dev/kmsg shows
	// too: the same message read from both counts once.
	key := "rt:" + ent.Realtime
	if ent.Monotonic != "" {
		key = "mono:" + ent.Monotonic
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.match(msg, at, key)
}

// journalMessage decodes MESSAGE, which journalctl writes as a string, or
// as an array of bytes when it is not valid UTF-8.
func journalMessage(raw json.RawMessage) (string, bool) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true
	}
	var b []byte
	var ints []int
	if err := json.Unmarshal(raw, &ints); err != nil {
		return "", false
	}
	for _, i := range ints {
		b = append(b, byte(i))
	}
	return string(b), true
}
