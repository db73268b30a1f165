package workercmd

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// ExitRestart is Run's exit code when the worker stopped itself to restart:
// more calls it abandoned at their time limit (or of cancelled batches)
// still ran than -max-runaways allows, and Go cannot stop them. The worker
// shut down cleanly first: running jobs finished or went back to their
// queues, and it unregistered. Main then re-executes the binary in place;
// when that fails, the process exits with this code, for a supervisor to
// start it again.
const ExitRestart = 3

// reexec replaces the process with a new run of its own binary, with the
// same arguments and environment. The pid stays, and so do the open standard
// input, output and error (Go opens every other file close-on-exec), so a
// parent that watches the pid or holds the -lifeline pipe sees the same
// process. It returns only when the exec failed, with the exit code to use.
func reexec(stderr io.Writer) int {
	exe, err := os.Executable()
	if err == nil {
		fmt.Fprintf(stderr, "%s: restarting in place (pid %d) to free the CPU of abandoned calls\n", exe, os.Getpid())
		err = syscall.Exec(exe, os.Args, os.Environ())
	}
	fmt.Fprintf(stderr, "cannot restart in place (%v): exiting with status %d for a supervisor to restart it\n", err, ExitRestart)
	return ExitRestart
}
