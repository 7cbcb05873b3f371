package health

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"time"
)

// Env is the machine as the checks see it. Zero fields take the real
// machine's defaults; tests point Root at a fake tree.
type Env struct {
	// Root prefixes every file path (/proc, /sys, /etc, /run, /dev/kmsg).
	Root string
	// KubeletHealthz is kubelet's healthz URL. Default http://127.0.0.1:10248/healthz.
	KubeletHealthz string
	// NodeReady, when set, reports the node's Ready condition from the API
	// (the agent has a client; the CLI may not).
	NodeReady func(ctx context.Context) (ready bool, reason string, err error)
	// ContainerdSocket, relative to Root. Default /run/containerd/containerd.sock.
	ContainerdSocket string
	// DiskPaths are the filesystems to check. Default /, /var/lib/kubelet,
	// /var/lib/containerd (those that exist).
	DiskPaths []string
	// Statfs reads filesystem usage; default the statfs syscall on Root+path.
	Statfs func(path string) (DiskUsage, error)
	// Kmsg is the kernel log device, relative to Root. Default /dev/kmsg.
	Kmsg string
	// KernelJournalMatch selects the kernel's messages in the systemd
	// journal (a journalctl match), read beside Kmsg. Default
	// "_TRANSPORT=kernel" when Root is "/" (a fake Root has no journal);
	// "off" disables.
	KernelJournalMatch string
	// Journalctl is the journalctl binary. Default "journalctl" from PATH.
	Journalctl string
	// KernelLogWindow: a kernel-log problem keeps its check degraded or
	// failed this long after it was last seen. Default 10 min.
	KernelLogWindow time.Duration
	// DNSName, when set, must resolve. Default: only require a nameserver
	// in /etc/resolv.conf.
	DNSName  string
	Resolver *net.Resolver
	// Adjtimex reads the kernel clock discipline; default the syscall.
	Adjtimex func() (ClockStatus, error)
	// ExpectedGPUs, when positive, is how many NVIDIA devices must be present.
	ExpectedGPUs int
	HTTPClient   *http.Client
	Now          func() time.Time
}

// DiskUsage is a filesystem's fill level.
type DiskUsage struct {
	Bytes, BytesFree   uint64
	Inodes, InodesFree uint64
}

// ClockStatus is what adjtimex says about time synchronisation.
type ClockStatus struct {
	Synchronised bool
	MaxError     time.Duration // estimated maximum error
}

func (e *Env) defaults() {
	if e.Root == "" {
		e.Root = "/"
	}
	if e.KubeletHealthz == "" {
		e.KubeletHealthz = "http://127.0.0.1:10248/healthz"
	}
	if e.ContainerdSocket == "" {
		e.ContainerdSocket = "/run/containerd/containerd.sock"
	}
	if len(e.DiskPaths) == 0 {
		e.DiskPaths = []string{"/", "/var/lib/kubelet", "/var/lib/containerd"}
	}
	if e.Statfs == nil {
		root := e.Root
		e.Statfs = func(p string) (DiskUsage, error) { return statfs(filepath.Join(root, p)) }
	}
	if e.Kmsg == "" {
		e.Kmsg = "/dev/kmsg"
	}
	if e.KernelJournalMatch == "" && filepath.Clean(e.Root) == "/" {
		e.KernelJournalMatch = "_TRANSPORT=kernel"
	}
	if e.Journalctl == "" {
		e.Journalctl = "journalctl"
	}
	if e.KernelLogWindow <= 0 {
		e.KernelLogWindow = 10 * time.Minute
	}
	if e.Resolver == nil {
		e.Resolver = net.DefaultResolver
	}
	if e.Adjtimex == nil {
		e.Adjtimex = adjtimex
	}
	if e.HTTPClient == nil {
		e.HTTPClient = &http.Client{Timeout: 2 * time.Second}
	}
	if e.Now == nil {
		e.Now = time.Now
	}
}

func (e *Env) path(p string) string { return filepath.Join(e.Root, p) }

// DefaultChecks returns every check, configured from env. The kernel-log
// check is shared by KernelReady, StorageReady and AcceleratedHardwareReady
// findings, so it is returned as three views over one reader.
func DefaultChecks(env Env) []Check {
	env.defaults()
	e := &env
	kl := newKernelLog(e)
	return []Check{
		&kubeletCheck{e},
		&containerdCheck{e},
		&diskCheck{e},
		&memoryCheck{e},
		&pidCheck{e},
		kl.view("kernel-log", KernelReady),
		kl.view("storage-log", StorageReady),
		&networkCheck{e},
		&clockCheck{e},
		&gpuCheck{e, kl},
	}
}
