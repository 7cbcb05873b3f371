package controlplane

import "syscall"

// childProcAttr puts the child in its own process group (Stop kills the group)
// and asks the kernel to SIGKILL it when its parent dies, so a test binary
// killed by a timeout leaves no etcd or apiserver behind. Linux ties
// Pdeathsig to the forking thread; the Go runtime only retires a thread when
// a goroutine exits while locked to it, which nothing here does.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
