//go:build !linux

package api

import "syscall"

// setUserTimeout does nothing off Linux: there the dial timeout, TCP
// keep-alive and the per-attempt bound of viaLeader cut dead connections.
func setUserTimeout(_, _ string, _ syscall.RawConn) error { return nil }
