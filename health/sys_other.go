//go:build !linux

package health

import (
	"errors"
	"syscall"
)

var errNotLinux = errors.New("only supported on Linux")

func statfs(string) (DiskUsage, error) { return DiskUsage{}, errNotLinux }
func adjtimex() (ClockStatus, error)   { return ClockStatus{}, errNotLinux }

func journalProcAttr() *syscall.SysProcAttr { return nil }
