//go:build !linux

package testserver

import "syscall"

// sysProcAttr puts the server in its own process group (a terminal Ctrl-C
// does not reach it). Without Pdeathsig a crashed test binary may leak it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
