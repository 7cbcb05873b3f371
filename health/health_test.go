package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeNode is a healthy machine under a temp root.
type fakeNode struct {
	t             *testing.T
	root          string
	usage         map[string]DiskUsage
	clock         ClockStatus
	env           Env
	now           time.Time
	kubelet       *httptest.Server
	kubeletStatus int
}

func newFakeNode(t *testing.T) *fakeNode {
	// Unix socket paths are limited to 108 bytes: keep the root short.
	root, err := os.MkdirTemp("", "hc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	f := &fakeNode{t: t, root: root, usage: map[string]DiskUsage{}, clock: ClockStatus{Synchronised: true, MaxError: 5 * time.Millisecond},
		now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC), kubeletStatus: 200}
	f.write("/proc/uptime", "1000.00 900.00\n")
	f.write("/proc/meminfo", "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n")
	f.write("/proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	f.write("/proc/sys/kernel/pid_max", "4194304\n")
	f.write("/proc/loadavg", "0.10 0.20 0.30 2/512 12345\n")
	f.write("/proc/1/mounts", "/dev/nvme0n1p1 / xfs rw,noatime 0 0\nproc /proc proc rw 0 0\n/dev/nvme1n1 /var/lib/containerd xfs rw 0 0\n")
	f.write("/proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\nens5\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")
	f.write("/etc/resolv.conf", "nameserver 169.254.169.253\n")
	f.write("/sys/class/net/ens5/operstate", "up\n")
	f.mkdir("/sys/class/net/ens5/device")
	f.write("/sys/class/net/lo/operstate", "unknown\n")
	f.write("/dev/kmsg", "6,1,100,-;Linux version 6.1.0\n")
	f.mkdir("/var/lib/containerd")
	f.mkdir("/run/containerd")
	l, err := net.Listen("unix", filepath.Join(root, "run/containerd/containerd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	f.kubelet = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(f.kubeletStatus)
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(f.kubelet.Close)
	for _, p := range []string{"/", "/var/lib/containerd"} {
		f.usage[p] = DiskUsage{Bytes: 100 << 30, BytesFree: 60 << 30, Inodes: 1000000, InodesFree: 900000}
	}
	f.env = Env{
		Root:           root,
		KubeletHealthz: f.kubelet.URL + "/healthz",
		Statfs: func(p string) (DiskUsage, error) {
			u, ok := f.usage[p]
			if !ok {
				return DiskUsage{}, errors.New("no such fs")
			}
			return u, nil
		},
		Adjtimex: func() (ClockStatus, error) { return f.clock, nil },
		Now:      func() time.Time { return f.now },
	}
	return f
}

func (f *fakeNode) write(p, content string) {
	f.t.Helper()
	full := filepath.Join(f.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeNode) appendKmsg(usec int64, msg string) {
	fh, err := os.OpenFile(filepath.Join(f.root, "dev/kmsg"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	fmt.Fprintf(fh, "3,%d,%d,-;%s\n", usec, usec, msg)
}

func (f *fakeNode) mkdir(p string) {
	if err := os.MkdirAll(filepath.Join(f.root, p), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

func byName(rs []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range rs {
		m[r.Name] = r
	}
	return m
}

func TestHealthyNode(t *testing.T) {
	f := newFakeNode(t)
	r := NewRunner(DefaultChecks(f.env), "")
	r.Now = f.env.Now
	res := r.Run(t.Context())
	for _, x := range res {
		if x.State != StateOK {
			t.Errorf("%s: %s %s %s", x.Name, x.State, x.Reason, x.Message)
		}
	}
	if g := byName(res)["gpu"]; !g.NotApplicable {
		t.Errorf("gpu on a machine without one: %+v", g)
	}
	vs := Summarize(res)
	if len(vs) != 4 { // no AcceleratedHardwareReady without a GPU
		t.Fatalf("verdicts %+v", vs)
	}
	for _, v := range vs {
		if v.State != StateOK || !strings.HasSuffix(v.Reason, "IsReady") {
			t.Errorf("%+v", v)
		}
	}
}

func TestFailuresAreDetected(t *testing.T) {
	cases := []struct {
		name      string
		breakIt   func(f *fakeNode)
		check     string
		state     State
		reason    string
		condition string
	}{
		{"kubelet down", func(f *fakeNode) { f.kubelet.Close() }, "kubelet", StateFailed, "KubeletNotRunning", ContainerRuntimeReady},
		{"kubelet 500", func(f *fakeNode) { f.kubeletStatus = 500 }, "kubelet", StateFailed, "KubeletUnhealthy", ContainerRuntimeReady},
		{"node not ready", func(f *fakeNode) {
			f.env.NodeReady = func(context.Context) (bool, string, error) { return false, "KubeletNotReady", nil }
		}, "kubelet", StateFailed, "NodeNotReady", ContainerRuntimeReady},
		{"containerd gone", func(f *fakeNode) { _ = os.Remove(filepath.Join(f.root, "run/containerd/containerd.sock")) }, "containerd", StateFailed, "ContainerRuntimeNotRunning", ContainerRuntimeReady},
		{"disk full", func(f *fakeNode) { f.usage["/"] = DiskUsage{Bytes: 100, BytesFree: 3, Inodes: 10, InodesFree: 9} }, "disk", StateFailed, "DiskFull", StorageReady},
		{"disk pressure", func(f *fakeNode) { f.usage["/"] = DiskUsage{Bytes: 100, BytesFree: 8, Inodes: 10, InodesFree: 9} }, "disk", StateDegraded, "DiskPressure", StorageReady},
		{"inodes", func(f *fakeNode) {
			f.usage["/var/lib/containerd"] = DiskUsage{Bytes: 100, BytesFree: 50, Inodes: 1000, InodesFree: 10}
		}, "disk", StateFailed, "InodesExhausted", StorageReady},
		{"read-only", func(f *fakeNode) {
			f.write("/proc/1/mounts", "/dev/nvme0n1p1 / xfs rw 0 0\n/dev/nvme1n1 /var/lib/containerd xfs ro,noatime 0 0\n")
		}, "disk", StateFailed, "ReadOnlyFilesystem", StorageReady},
		{"memory", func(f *fakeNode) {
			f.write("/proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 30 kB\n")
		}, "memory", StateFailed, "MemoryPressure", KernelReady},
		{"thrashing", func(f *fakeNode) {
			f.write("/proc/pressure/memory", "some avg10=50.00 avg60=0 avg300=0 total=0\nfull avg10=35.50 avg60=0 avg300=0 total=0\n")
		}, "memory", StateDegraded, "MemoryThrashing", KernelReady},
		{"pids", func(f *fakeNode) { f.write("/proc/loadavg", "1 1 1 3/3900000 1\n") }, "pids", StateFailed, "ApproachingKernelPidMax", KernelReady},
		{"oom", func(f *fakeNode) {
			f.appendKmsg(999_000_000, "Out of memory: Killed process 4242 (java) total-vm:1234kB")
		}, "kernel-log", StateDegraded, "OOMKilling", KernelReady},
		{"hung task", func(f *fakeNode) {
			f.appendKmsg(999_000_000, "INFO: task jbd2/nvme0n1p1-8:312 blocked for more than 120 seconds.")
		}, "kernel-log", StateDegraded, "HungTask", KernelReady},
		{"soft lockup", func(f *fakeNode) {
			f.appendKmsg(999_000_000, "watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [kworker/3:1:1234]")
		}, "kernel-log", StateFailed, "SoftLockup", KernelReady},
		{"ext4", func(f *fakeNode) {
			f.appendKmsg(999_000_000, "EXT4-fs error (device nvme1n1): ext4_find_entry:1455: inode #2: comm ls: reading directory lblock 0")
		}, "storage-log", StateFailed, "FilesystemError", StorageReady},
		{"xfs", func(f *fakeNode) {
			f.appendKmsg(999_000_000, "XFS (nvme1n1): Metadata corruption detected at xfs_dinode_verify+0x1a/0x60")
		}, "storage-log", StateFailed, "FilesystemError", StorageReady},
		{"io error", func(f *fakeNode) {
			f.appendKmsg(999_000_000, "blk_update_request: I/O error, dev nvme1n1, sector 123456 op 0x0:(READ)")
		}, "storage-log", StateFailed, "IOError", StorageReady},
		{"no interface", func(f *fakeNode) { f.write("/sys/class/net/ens5/operstate", "down\n") }, "network", StateFailed, "InterfaceDown", NetworkingReady},
		{"no route", func(f *fakeNode) { f.write("/proc/net/route", "Iface\tDestination\n") }, "network", StateFailed, "NoDefaultRoute", NetworkingReady},
		{"no dns", func(f *fakeNode) { f.write("/etc/resolv.conf", "# empty\n") }, "network", StateFailed, "NoNameserver", NetworkingReady},
		{"clock", func(f *fakeNode) { f.clock = ClockStatus{Synchronised: false, MaxError: 16 * time.Second} }, "clock", StateDegraded, "ClockNotSynchronised", NetworkingReady},
		{"gpu missing", func(f *fakeNode) {
			f.env.ExpectedGPUs = 2
			f.write("/sys/bus/pci/devices/0000:00:1e.0/vendor", "0x10de\n")
			f.write("/sys/bus/pci/devices/0000:00:1e.0/class", "0x030200\n")
		}, "gpu", StateFailed, "GPUMissing", AcceleratedHardwareReady},
		{"gpu xid 79", func(f *fakeNode) {
			f.write("/sys/bus/pci/devices/0000:00:1e.0/vendor", "0x10de\n")
			f.write("/sys/bus/pci/devices/0000:00:1e.0/class", "0x030200\n")
			f.appendKmsg(999_000_000, "NVRM: Xid (PCI:0000:00:1e): 79, pid=1234, GPU has fallen off the bus.")
		}, "gpu", StateFailed, "NvidiaXidError", AcceleratedHardwareReady},
		{"gpu xid 13", func(f *fakeNode) {
			f.write("/sys/bus/pci/devices/0000:00:1e.0/vendor", "0x10de\n")
			f.write("/sys/bus/pci/devices/0000:00:1e.0/class", "0x030200\n")
			f.appendKmsg(999_000_000, "NVRM: Xid (PCI:0000:00:1e): 13, Graphics Exception")
		}, "gpu", StateDegraded, "NvidiaXidError", AcceleratedHardwareReady},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeNode(t)
			c.breakIt(f)
			r := NewRunner(DefaultChecks(f.env), "")
			r.Now = f.env.Now
			res := byName(r.Run(t.Context()))[c.check]
			if res.State != c.state || res.Reason != c.reason || res.Condition != c.condition {
				t.Fatalf("%s = %s/%s (%s) %q, want %s/%s (%s)", c.check, res.State, res.Reason, res.Condition, res.Message, c.state, c.reason, c.condition)
			}
		})
	}
}

func TestKernelLogWindowAndRestart(t *testing.T) {
	f := newFakeNode(t)
	state := filepath.Join(t.TempDir(), "state", "health.json")
	// A soft lockup 30 s ago (uptime 1000 s, logged at 970 s).
	f.appendKmsg(970_000_000, "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [x:1]")
	r := NewRunner(DefaultChecks(f.env), state)
	r.Now = f.env.Now
	first := byName(r.Run(t.Context()))["kernel-log"]
	if first.State != StateFailed || !first.Since.Equal(f.now) {
		t.Fatalf("%+v", first)
	}

	// The agent restarts; the kmsg ring has since been overwritten (fresh
	// file). The problem is remembered from the state file.
	f.write("/dev/kmsg", "")
	f.now = f.now.Add(2 * time.Minute)
	r2 := NewRunner(DefaultChecks(f.env), state)
	r2.Now = f.env.Now
	if err := r2.Load(); err != nil {
		t.Fatal(err)
	}
	if prev := byName(r2.Previous())["kernel-log"]; prev.State != StateFailed {
		t.Fatalf("previous state lost: %+v", prev)
	}
	again := byName(r2.Run(t.Context()))["kernel-log"]
	if again.State != StateFailed || !again.Since.Equal(first.Since) {
		t.Fatalf("after restart %+v (since must stay %v)", again, first.Since)
	}

	// Past the window it recovers.
	f.now = f.now.Add(11 * time.Minute)
	rec := byName(r2.Run(t.Context()))["kernel-log"]
	if rec.State != StateOK || !rec.Since.Equal(f.now) {
		t.Fatalf("did not recover: %+v", rec)
	}
}

func TestCorruptStateFileIsReportedNotFatal(t *testing.T) {
	f := newFakeNode(t)
	state := filepath.Join(t.TempDir(), "health.json")
	if err := os.WriteFile(state, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := NewRunner(DefaultChecks(f.env), state)
	if err := r.Load(); err == nil {
		t.Fatal("corrupt state accepted silently")
	}
	if res := r.Run(t.Context()); Overall(res) != StateOK {
		t.Fatalf("%+v", res)
	}
}

func TestSummarizeWorstWins(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	vs := Summarize([]Result{
		{Name: "kubelet", Condition: ContainerRuntimeReady, State: StateOK, Since: t0},
		{Name: "containerd", Condition: ContainerRuntimeReady, State: StateFailed, Reason: "ContainerRuntimeNotRunning", Message: "gone", Since: t0.Add(time.Minute)},
		{Name: "clock", Condition: NetworkingReady, State: StateUnknown},
	})
	if len(vs) != 1 || vs[0].State != StateFailed || vs[0].Reason != "ContainerRuntimeNotRunning" ||
		vs[0].Message != "containerd: gone" || !vs[0].Since.Equal(t0.Add(time.Minute)) {
		t.Fatalf("%+v", vs)
	}
}

type panicky struct{}

func (panicky) Name() string               { return "panicky" }
func (panicky) Condition() string          { return KernelReady }
func (panicky) Run(context.Context) Result { panic("bad input") }

func TestPanickingCheckIsContained(t *testing.T) {
	res := NewRunner([]Check{panicky{}}, "").Run(t.Context())
	if res[0].State != StateUnknown || res[0].Reason != "CheckPanicked" {
		t.Fatalf("%+v", res)
	}
}

// The journal source: entries as `journalctl -o json` writes them (MESSAGE
// as a string or, when not UTF-8, as bytes), and one message seen in both
// /dev/kmsg and the journal counted once.
func TestKernelJournalEntries(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	e := &Env{Root: t.TempDir(), Now: func() time.Time { return now }}
	e.defaults()
	k := newKernelLog(e)
	rt := now.Add(-time.Minute).UnixMicro()
	k.journalEntry([]byte(fmt.Sprintf(`{"MESSAGE":"EXT4-fs error (device nvme1n1): bad","__REALTIME_TIMESTAMP":"%d","_SOURCE_MONOTONIC_TIMESTAMP":"5000000"}`, rt)))
	// The same record from /dev/kmsg (same µs since boot and text).
	k.mu.Lock()
	k.line("3,7,5000000,-;EXT4-fs error (device nvme1n1): bad", now.Add(-time.Hour))
	k.mu.Unlock()
	// Not UTF-8: bytes. "soft lockup" then 0xff.
	b := append([]byte("watchdog: BUG: soft lockup - CPU#1 stuck"), 0xff)
	ints := make([]string, len(b))
	for i, c := range b {
		ints[i] = strconv.Itoa(int(c))
	}
	k.journalEntry([]byte(fmt.Sprintf(`{"MESSAGE":[%s],"__REALTIME_TIMESTAMP":"%d"}`, strings.Join(ints, ","), rt)))
	k.journalEntry([]byte(`not json`))

	r, ok := k.verdict(StorageReady)
	if !ok || r.Reason != "FilesystemError" || !strings.Contains(r.Message, "1× in the last") {
		t.Fatalf("storage verdict %+v (found %v), want FilesystemError counted once", r, ok)
	}
	if r, ok := k.verdict(KernelReady); !ok || r.Reason != "SoftLockup" || r.State != StateFailed {
		t.Fatalf("kernel verdict %+v (found %v)", r, ok)
	}
}

// journalctl that cannot be started leaves /dev/kmsg as the source; with
// neither, the check says why.
func TestKernelJournalUnavailable(t *testing.T) {
	e := &Env{Root: t.TempDir(), KernelJournalMatch: "_TRANSPORT=kernel", Journalctl: filepath.Join(t.TempDir(), "no-journalctl")}
	e.defaults()
	k := newKernelLog(e)
	err := k.poll()
	if err == nil || !strings.Contains(err.Error(), "kernel journal") || !strings.Contains(err.Error(), "kmsg") {
		t.Fatalf("poll with neither source: %v", err)
	}
}
