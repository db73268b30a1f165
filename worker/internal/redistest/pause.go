//go:build unix

package redistest

import "syscall"

// PID is the process id of the running redis-server (0 when it is not running).
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Pause freezes the server with SIGSTOP, as a stalled host would: it keeps
// its connections but answers nothing until Resume. The test's cleanup
// resumes it, so that it can be stopped.
func (s *Server) Pause() {
	s.t.Helper()
	s.signal(syscall.SIGSTOP)
	s.t.Cleanup(s.Resume)
}

// Resume continues a server frozen by Pause; on a running server, or one
// stopped since, it does nothing.
func (s *Server) Resume() {
	s.t.Helper()
	if s.PID() != 0 {
		s.signal(syscall.SIGCONT)
	}
}

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd == nil || s.cmd.Process == nil {
		s.t.Fatalf("redis-server is not running: cannot send it %v", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("sending %v to redis-server: %v", sig, err)
	}
}
