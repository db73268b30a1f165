package embedded

import "syscall"

// dieWithParent makes the kernel kill the child when this process dies. The
// signal follows the forking thread, and Go only retires a thread that a
// goroutine left locked, which the caller of StartRedis does not do.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
