package embedded

import "syscall"

// dieWithParent has no kernel support on Windows (and no process groups in
// SysProcAttr); the lifeline and Stop still end the server on every orderly
// exit.
func dieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
