//go:build !linux

package bench

import "syscall"

// sysProcAttr puts a worker in its own process group, so a terminal
// Ctrl-C reaches the bench, which stops its workers in order.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
