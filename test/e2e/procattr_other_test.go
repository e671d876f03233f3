//go:build !linux

package e2e

import "syscall"

// childProcAttr: only Linux can tie a child's life to its parent; elsewhere
// the cluster cleanup is the only thing that stops nodes.
func childProcAttr() *syscall.SysProcAttr { return nil }
