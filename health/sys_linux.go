package health

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func statfs(path string) (DiskUsage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return DiskUsage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return DiskUsage{Bytes: st.Blocks * bs, BytesFree: st.Bavail * bs, Inodes: st.Files, InodesFree: st.Ffree}, nil
}

func adjtimex() (ClockStatus, error) {
	var tx unix.Timex // Modes 0: read only
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return ClockStatus{}, fmt.Errorf("adjtimex: %w", err)
	}
	synced := state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
	return ClockStatus{Synchronised: synced, MaxError: time.Duration(tx.Maxerror) * time.Microsecond}, nil
}

// journalProcAttr: journalctl dies with the agent (SIGKILL when its parent
// goes), so a crashed agent does not leave followers behind.
func journalProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
