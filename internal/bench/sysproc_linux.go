package bench

import "syscall"

// sysProcAttr puts a worker in its own process group (a terminal Ctrl-C
// reaches the bench, which stops its workers in order) and has the kernel
// SIGKILL it if the bench dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
