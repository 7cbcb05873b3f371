package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// kubeletCheck: kubelet's healthz answers ok and (with an API) the node is Ready.
type kubeletCheck struct{ e *Env }

func (c *kubeletCheck) Name() string      { return "kubelet" }
func (c *kubeletCheck) Condition() string { return ContainerRuntimeReady }
func (c *kubeletCheck) Run(ctx context.Context) Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.e.KubeletHealthz, nil)
	if err != nil {
		return unknown("BadKubeletURL", err.Error())
	}
	resp, err := c.e.HTTPClient.Do(req)
	if err != nil {
		return failed("KubeletNotRunning", fmt.Sprintf("kubelet healthz %s: %v", c.e.KubeletHealthz, err))
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return failed("KubeletUnhealthy", fmt.Sprintf("kubelet healthz: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body))))
	}
	if c.e.NodeReady != nil {
		ready, reason, err := c.e.NodeReady(ctx)
		switch {
		case err != nil:
			return degraded("NodeReadyUnknown", fmt.Sprintf("kubelet healthy; node Ready unknown: %v", err))
		case !ready:
			return failed("NodeNotReady", fmt.Sprintf("kubelet healthy but the node is not Ready: %s", reason))
		}
	}
	return ok("KubeletHealthy", "")
}

// containerdCheck: the runtime's socket exists and accepts connections.
type containerdCheck struct{ e *Env }

func (c *containerdCheck) Name() string      { return "containerd" }
func (c *containerdCheck) Condition() string { return ContainerRuntimeReady }
func (c *containerdCheck) Run(ctx context.Context) Result {
	p := c.e.path(c.e.ContainerdSocket)
	if _, err := os.Stat(p); err != nil {
		return failed("ContainerRuntimeNotRunning", fmt.Sprintf("socket %s: %v", c.e.ContainerdSocket, err))
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "unix", p)
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			return unknown("NotPermitted", fmt.Sprintf("socket %s: %v (run as root)", c.e.ContainerdSocket, err))
		}
		return failed("ContainerRuntimeUnresponsive", fmt.Sprintf("connect %s: %v", c.e.ContainerdSocket, err))
	}
	_ = conn.Close()
	return ok("ContainerRuntimeHealthy", "")
}

// diskCheck: space, inodes and read-only mounts of the node's filesystems.
type diskCheck struct{ e *Env }

func (c *diskCheck) Name() string      { return "disk" }
func (c *diskCheck) Condition() string { return StorageReady }
func (c *diskCheck) Run(ctx context.Context) Result {
	// PID 1's mounts, not the agent's own: the agent's unit runs in a mount
	// namespace of its own where ProtectSystem=strict remounts / and the
	// node's data directories read-only, so /proc/self/mounts would report
	// every node's disks as read-only (and get every node replaced).
	mounts, mountsErr := readMounts(c.e.path("/proc/1/mounts"))
	worst := ok("DiskHealthy", "")
	var notes []string
	checked := 0
	for _, p := range c.e.DiskPaths {
		if _, err := os.Stat(c.e.path(p)); err != nil {
			continue // e.g. no /var/lib/containerd on this machine
		}
		checked++
		u, err := c.e.Statfs(p)
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: statfs: %v", p, err))
			worst = worse(worst, degraded("DiskUnreadable", ""))
			continue
		}
		if mountsErr == nil {
			if m, found := mountFor(mounts, p); found && m.readOnly {
				notes = append(notes, fmt.Sprintf("%s is on a read-only mount (%s)", p, m.point))
				worst = worse(worst, failed("ReadOnlyFilesystem", ""))
			}
		}
		if u.Bytes > 0 {
			free := float64(u.BytesFree) / float64(u.Bytes)
			switch {
			case free < 0.05:
				notes = append(notes, fmt.Sprintf("%s has %.1f%% space free", p, free*100))
				worst = worse(worst, failed("DiskFull", ""))
			case free < 0.10:
				notes = append(notes, fmt.Sprintf("%s has %.1f%% space free", p, free*100))
				worst = worse(worst, degraded("DiskPressure", ""))
			}
		}
		if u.Inodes > 0 {
			free := float64(u.InodesFree) / float64(u.Inodes)
			switch {
			case free < 0.05:
				notes = append(notes, fmt.Sprintf("%s has %.1f%% inodes free", p, free*100))
				worst = worse(worst, failed("InodesExhausted", ""))
			case free < 0.10:
				notes = append(notes, fmt.Sprintf("%s has %.1f%% inodes free", p, free*100))
				worst = worse(worst, degraded("InodePressure", ""))
			}
		}
	}
	if checked == 0 {
		return unknown("NoFilesystems", "none of the disk paths exist")
	}
	worst.Message = strings.Join(notes, "; ")
	return worst
}

func worse(a, b Result) Result {
	if b.State.Worse(a.State) {
		return b
	}
	return a
}

type mount struct {
	point    string
	readOnly bool
}

func readMounts(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 {
			continue
		}
		ro := false
		for _, o := range strings.Split(fs[3], ",") {
			if o == "ro" {
				ro = true
			}
		}
		// /proc/mounts escapes spaces as \040.
		out = append(out, mount{point: strings.ReplaceAll(fs[1], `\040`, " "), readOnly: ro})
	}
	return out, sc.Err()
}

// mountFor is the mount with the longest mount point containing p; the
// last one wins among equals (it is on top).
func mountFor(ms []mount, p string) (mount, bool) {
	var best mount
	found := false
	for _, m := range ms {
		if p == m.point || m.point == "/" || strings.HasPrefix(p, strings.TrimSuffix(m.point, "/")+"/") {
			if !found || len(m.point) >= len(best.point) {
				best, found = m, true
			}
		}
	}
	return best, found
}

// memoryCheck: available memory and memory pressure stall.
type memoryCheck struct{ e *Env }

func (c *memoryCheck) Name() string      { return "memory" }
func (c *memoryCheck) Condition() string { return KernelReady }
func (c *memoryCheck) Run(ctx context.Context) Result {
	info, err := readKV(c.e.path("/proc/meminfo"))
	if err != nil {
		return unknown("MeminfoUnreadable", err.Error())
	}
	total, avail := info["MemTotal"], info["MemAvailable"]
	if total == 0 {
		return unknown("MeminfoUnreadable", "no MemTotal")
	}
	frac := float64(avail) / float64(total)
	msg := fmt.Sprintf("%.1f%% of memory available", frac*100)
	res := ok("MemoryHealthy", "")
	switch {
	case frac < 0.05:
		res = failed("MemoryPressure", msg)
	case frac < 0.10:
		res = degraded("MemoryPressure", msg)
	}
	// Pressure stall: share of time every task waited on memory (10 s avg).
	if b, err := os.ReadFile(c.e.path("/proc/pressure/memory")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "full ") {
				continue
			}
			for _, f := range strings.Fields(line) {
				if v, found := strings.CutPrefix(f, "avg10="); found {
					if pct, err := strconv.ParseFloat(v, 64); err == nil && pct > 20 && res.State == StateOK {
						res = degraded("MemoryThrashing", fmt.Sprintf("tasks stalled on memory %.0f%% of the last 10 s", pct))
					}
				}
			}
		}
	}
	return res
}

// readKV parses "Key:   123 kB" lines.
func readKV(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			out[strings.TrimSpace(k)] = n
		}
	}
	return out, nil
}

// pidCheck: the number of tasks against the kernel's pid_max.
type pidCheck struct{ e *Env }

func (c *pidCheck) Name() string      { return "pids" }
func (c *pidCheck) Condition() string { return KernelReady }
func (c *pidCheck) Run(ctx context.Context) Result {
	b, err := os.ReadFile(c.e.path("/proc/sys/kernel/pid_max"))
	if err != nil {
		return unknown("PidMaxUnreadable", err.Error())
	}
	max, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || max == 0 {
		return unknown("PidMaxUnreadable", fmt.Sprintf("pid_max %q", strings.TrimSpace(string(b))))
	}
	// /proc/loadavg: "0.00 0.01 0.05 2/345 6789": 345 tasks exist.
	lb, err := os.ReadFile(c.e.path("/proc/loadavg"))
	if err != nil {
		return unknown("LoadavgUnreadable", err.Error())
	}
	f := strings.Fields(string(lb))
	if len(f) < 4 {
		return unknown("LoadavgUnreadable", string(lb))
	}
	_, tasksStr, _ := strings.Cut(f[3], "/")
	tasks, err := strconv.ParseUint(tasksStr, 10, 64)
	if err != nil {
		return unknown("LoadavgUnreadable", string(lb))
	}
	frac := float64(tasks) / float64(max)
	msg := fmt.Sprintf("%d tasks of pid_max %d", tasks, max)
	switch {
	case frac >= 0.9:
		return failed("ApproachingKernelPidMax", msg)
	case frac >= 0.7:
		return degraded("ApproachingKernelPidMax", msg)
	}
	return ok("PidsHealthy", "")
}

// networkCheck: a physical interface is up, a default route exists and
// names resolve.
type networkCheck struct{ e *Env }

func (c *networkCheck) Name() string      { return "network" }
func (c *networkCheck) Condition() string { return NetworkingReady }
func (c *networkCheck) Run(ctx context.Context) Result {
	ifaces, err := os.ReadDir(c.e.path("/sys/class/net"))
	if err != nil {
		return unknown("SysfsUnreadable", err.Error())
	}
	var up, down []string
	for _, ifc := range ifaces {
		name := ifc.Name()
		// Only devices backed by hardware (ENA, virtio): veths and bridges
		// come and go with pods.
		if _, err := os.Stat(c.e.path(filepath.Join("/sys/class/net", name, "device"))); err != nil {
			continue
		}
		st, _ := os.ReadFile(c.e.path(filepath.Join("/sys/class/net", name, "operstate")))
		if strings.TrimSpace(string(st)) == "up" {
			up = append(up, name)
		} else {
			down = append(down, name)
		}
	}
	if len(up) == 0 {
		if len(down) == 0 {
			return unknown("NoPhysicalInterfaces", "no hardware network interface found")
		}
		return failed("InterfaceDown", fmt.Sprintf("no network interface is up (down: %s)", strings.Join(down, ", ")))
	}
	if !hasDefaultRoute(c.e) {
		return failed("NoDefaultRoute", "no default route in /proc/net/route or /proc/net/ipv6_route")
	}
	rc, err := os.ReadFile(c.e.path("/etc/resolv.conf"))
	if err != nil || !strings.Contains(string(rc), "nameserver") {
		return failed("NoNameserver", "/etc/resolv.conf lists no nameserver")
	}
	if c.e.DNSName != "" {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := c.e.Resolver.LookupHost(dctx, c.e.DNSName); err != nil {
			return failed("DNSResolutionFailed", fmt.Sprintf("resolve %s: %v", c.e.DNSName, err))
		}
	}
	msg := ""
	if len(down) > 0 {
		msg = "down: " + strings.Join(down, ", ")
	}
	return ok("NetworkHealthy", msg)
}

func hasDefaultRoute(e *Env) bool {
	if b, err := os.ReadFile(e.path("/proc/net/route")); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// Iface Destination Gateway Flags ...; RTF_UP is 0x1.
			if len(f) >= 4 && f[1] == "00000000" {
				if flags, err := strconv.ParseUint(f[3], 16, 32); err == nil && flags&1 == 1 {
					return true
				}
			}
		}
	}
	if b, err := os.ReadFile(e.path("/proc/net/ipv6_route")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 10 && f[0] == strings.Repeat("0", 32) && f[1] == "00" && f[9] != "lo" {
				return true
			}
		}
	}
	return false
}

// clockCheck: the kernel clock is disciplined (chrony/NTP synchronised).
type clockCheck struct{ e *Env }

func (c *clockCheck) Name() string      { return "clock" }
func (c *clockCheck) Condition() string { return NetworkingReady }
func (c *clockCheck) Run(ctx context.Context) Result {
	st, err := c.e.Adjtimex()
	if err != nil {
		return unknown("ClockUnreadable", err.Error())
	}
	if !st.Synchronised {
		return degraded("ClockNotSynchronised", fmt.Sprintf("kernel clock not synchronised (max error %s); is chronyd running?", st.MaxError))
	}
	if st.MaxError > time.Second {
		return degraded("ClockDrift", fmt.Sprintf("clock max error %s", st.MaxError))
	}
	return ok("ClockSynchronised", "")
}

// gpuCheck: expected NVIDIA devices are present and no Xid errors logged.
type gpuCheck struct {
	e  *Env
	kl *kernelLog
}

func (c *gpuCheck) Name() string      { return "gpu" }
func (c *gpuCheck) Condition() string { return AcceleratedHardwareReady }
func (c *gpuCheck) Run(ctx context.Context) Result {
	n := countNvidia(c.e)
	if n == 0 && c.e.ExpectedGPUs == 0 {
		return Result{State: StateOK, Reason: "NoAccelerator", NotApplicable: true}
	}
	if c.e.ExpectedGPUs > 0 && n < c.e.ExpectedGPUs {
		return failed("GPUMissing", fmt.Sprintf("%d of %d NVIDIA GPUs present", n, c.e.ExpectedGPUs))
	}
	_ = c.kl.poll()
	if r, found := c.kl.verdict(AcceleratedHardwareReady); found {
		return r
	}
	return ok("AcceleratedHardwareHealthy", fmt.Sprintf("%d NVIDIA GPUs", n))
}

// countNvidia counts NVIDIA display/3D controllers on the PCI bus.
func countNvidia(e *Env) int {
	devs, err := os.ReadDir(e.path("/sys/bus/pci/devices"))
	if err != nil {
		return 0
	}
	n := 0
	for _, d := range devs {
		dir := filepath.Join("/sys/bus/pci/devices", d.Name())
		vendor, _ := os.ReadFile(e.path(filepath.Join(dir, "vendor")))
		class, _ := os.ReadFile(e.path(filepath.Join(dir, "class")))
		if strings.TrimSpace(string(vendor)) == "0x10de" && strings.HasPrefix(strings.TrimSpace(string(class)), "0x03") {
			n++
		}
	}
	return n
}
