package e2e

import "syscall"

// childProcAttr makes the kernel SIGKILL a node when the test binary dies
// (a panic, a -timeout), so no chordkv process outlives its test.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
