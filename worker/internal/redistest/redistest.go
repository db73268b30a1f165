// Package redistest starts real redis-server processes for tests: on a unix
// socket in the test's temporary directory, or as a three-node cluster on
// loopback ports. Every process is stopped by its PID when the test ends.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	URI  string // unix:///…/redis.sock or redis://127.0.0.1:port/
	Addr string // the socket path or host:port
	Dir  string
	args []string
	cmd  *exec.Cmd
	t    testing.TB
}

// Binary returns the redis-server on PATH, skipping the test with a clear
// message if there is none (CI installs one; see .ci/run).
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH: install it (apt-get install redis-server) to run this test")
	}
	return p
}

// Start starts a redis-server on a unix socket.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "redis.sock")
	s := &Server{URI: "unix://" + sock, Addr: sock, Dir: dir, t: t,
		args: []string{"--port", "0", "--unixsocket", sock, "--unixsocketperm", "700"}}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// shortTempDir is a temporary directory with a path short enough for a unix
// socket (t.TempDir paths can pass the 108-byte limit).
func shortTempDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "rt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// Restart starts the server again (after Kill) with the same address.
func (s *Server) Restart() {
	s.t.Helper()
	args := append([]string{"--save", "", "--appendonly", "no", "--dir", s.Dir,
		"--logfile", filepath.Join(s.Dir, "redis.log")}, s.args...)
	s.cmd = exec.Command(Binary(s.t), args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.waitReady()
}

func (s *Server) waitReady() {
	s.t.Helper()
	c := redis.NewClient(s.options())
	defer func() {
		if err := c.Close(); err != nil {
			s.t.Errorf("closing probe client: %v", err)
		}
	}()
	Eventually(s.t, 10*time.Second, "redis-server answers PING", func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
}

func (s *Server) options() *redis.Options {
	if strings.HasPrefix(s.URI, "unix://") {
		return &redis.Options{Network: "unix", Addr: s.Addr, MaxRetries: -1}
	}
	return &redis.Options{Addr: s.Addr, MaxRetries: -1}
}

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(s.options())
	s.t.Cleanup(func() {
		if err := c.Close(); err != nil {
			s.t.Errorf("closing client: %v", err)
		}
	})
	return c
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Errorf("killing redis-server: %v", err)
	}
	if err := s.cmd.Wait(); err != nil && !isSignalExit(err) {
		s.t.Errorf("waiting for redis-server: %v", err)
	}
	s.cmd = nil
}

// Stop terminates the server by its PID.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Errorf("stopping redis-server: %v", err)
	}
	if err := s.cmd.Wait(); err != nil && !isSignalExit(err) {
		s.t.Errorf("waiting for redis-server: %v", err)
	}
	s.cmd = nil
}

func isSignalExit(err error) bool {
	ee, ok := err.(*exec.ExitError)
	return ok && !ee.Exited()
}

// Eventually waits up to d for cond, checking every 2ms, and fails the test
// with what it waited for if cond never holds.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting until %s", d, what)
		case <-tick.C:
		}
	}
}

// StartCluster starts a three-master Redis Cluster on loopback ports and
// returns the URI of its first node.
func StartCluster(t testing.TB) string {
	t.Helper()
	Binary(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not on PATH: it comes with redis-server (apt-get install redis-server)")
	}
	var addrs []string
	var nodes []*redis.Client
	for range 3 {
		port := clusterPort(t)
		dir := shortTempDir(t)
		s := &Server{URI: fmt.Sprintf("redis://127.0.0.1:%d/", port), Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, t: t,
			args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
				"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-node-timeout", "2000"}}
		s.Restart()
		t.Cleanup(s.Stop)
		addrs = append(addrs, s.Addr)
		nodes = append(nodes, s.Client())
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	Eventually(t, 30*time.Second, "the cluster is ok", func() bool {
		for _, n := range nodes {
			info, err := n.ClusterInfo(context.Background()).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		return true
	})
	return "redis://" + addrs[0] + "/"
}

// clusterPort finds a free port p whose cluster bus port p+10000 is free too
// (Redis 6.2 has no --cluster-port to choose the bus port).
func clusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port+10000 < 65536 {
			if bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000)); err == nil {
				if err := errors.Join(bus.Close(), l.Close()); err != nil {
					t.Fatal(err)
				}
				return port
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}

// ClusterClient is a client of the cluster StartCluster returned uri of,
// closed when the test ends.
func ClusterClient(t testing.TB, uri string) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{strings.TrimSuffix(strings.TrimPrefix(uri, "redis://"), "/")}})
	t.Cleanup(func() {
		if err := rdb.Close(); err != nil {
			t.Error(err)
		}
	})
	return rdb
}
