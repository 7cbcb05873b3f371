package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one control plane component running as a child process, with its
// output in a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File

	done    chan struct{} // closed when the process has exited
	mu      sync.Mutex
	waitErr error
	stopped bool // Stop was asked for: an exit is expected, not a failure
}

// startProcess starts bin with args in its own process group, so Stop can kill
// it with everything it spawned, and (on Linux) with a parent-death signal, so
// it dies with us even when we are killed without running Stop.
func startProcess(name, bin string, args, env []string, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = childProcAttr()
	fmt.Fprintf(logFile, "# %s %s\n", bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, logFile: logFile, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.waitErr == nil {
			return true, errors.New("exited with status 0")
		}
		return true, p.waitErr
	default:
		return false, nil
	}
}

// failure describes an unexpected exit with the end of the component's log,
// which is where the reason is.
func (p *process) failure(cause error) error {
	return fmt.Errorf("%s: %w\n--- last lines of %s ---\n%s", p.name, cause, p.logPath, tailFile(p.logPath, 25))
}

// stop asks the process group to terminate, and kills it after grace.
func (p *process) stop(grace time.Duration) {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	select {
	case <-p.done:
		return
	default:
	}
	pid := p.cmd.Process.Pid
	// A negative pid signals the whole group.
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
	// Children of the component (none expected) go with the group too.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

func (p *process) stopRequested() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

// tailFile returns the last n lines of a file, or a note saying why it could not.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const maxTail = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxTail {
		_, _ = f.Seek(st.Size()-maxTail, io.SeekStart)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// Process is a child process run the way the control plane runs its
// components: own process group, killed with its parent (Linux), output in
// a log file. The dev cluster runs coordinator replicas with it.
type Process struct{ p *process }

// StartProcess starts bin with args; env entries are added to ours.
func StartProcess(name, bin string, args, env []string, logPath string) (*Process, error) {
	p, err := startProcess(name, bin, args, env, logPath)
	if err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.p.done }

// Err is nil while the process runs; after it exited, how, with the end of
// its log.
func (p *Process) Err() error {
	if done, err := p.p.exited(); done {
		return p.p.failure(err)
	}
	return nil
}

// Stop sends SIGTERM to the process group and SIGKILL after grace.
func (p *Process) Stop(grace time.Duration) { p.p.stop(grace) }

// Stopping reports whether Stop was called (an exit is then expected).
func (p *Process) Stopping() bool { return p.p.stopRequested() }

// Pid is the process id.
func (p *Process) Pid() int { return p.p.cmd.Process.Pid }
