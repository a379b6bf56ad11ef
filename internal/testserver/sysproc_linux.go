package testserver

import "syscall"

// sysProcAttr puts the server in its own process group (a terminal Ctrl-C
// does not reach it) and has the kernel SIGKILL it if our process dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
