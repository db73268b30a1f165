//go:build !linux && !windows

package embedded

import "syscall"

// dieWithParent has no kernel support here; the lifeline and Stop still end
// the server on every orderly exit.
func dieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
