// Package embedded runs the private Redis server of gomap's embedded default
// (the LocalCluster of the Python package): redis-server on a unix socket in
// a directory of its own, tied to the life of this process.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a running private redis-server.
type Redis struct {
	URI  string // unix:///…/redis.sock
	cmd  *exec.Cmd
	done chan struct{} // closed once the server has exited
	err  error         // how it exited; read only after done is closed
}

// StartRedis starts the redis-server binary at path with its socket, data and
// log in dir, and returns once it answers PING (or fails, or ctx ends). The
// server dies with this process, even on SIGKILL (Linux parent-death signal).
func StartRedis(ctx context.Context, path, dir string) (*Redis, error) {
	sock := filepath.Join(dir, "redis.sock")
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	cmd := exec.Command(path,
		"--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"), "--daemonize", "no")
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	r := &Redis{URI: "unix://" + sock, cmd: cmd, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	if err := r.waitReady(ctx, sock); err != nil {
		return nil, errors.Join(err, r.Stop())
	}
	return r, nil
}

// waitReady pings the socket until the server answers, exits, or 10s pass.
func (r *Redis) waitReady(ctx context.Context, sock string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, MaxRetries: -1})
	return errors.Join(r.ping(ctx, c, sock), c.Close())
}

func (r *Redis) ping(ctx context.Context, c *redis.Client, sock string) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("redis-server exited at start (%v); see %s", r.err, filepath.Join(filepath.Dir(sock), "redis.log"))
		case <-ctx.Done():
			return fmt.Errorf("redis-server did not answer on %s: %w", sock, err)
		case <-tick.C:
		}
	}
}

// PID is the server's process id.
func (r *Redis) PID() int { return r.cmd.Process.Pid }

// Exited is closed once the server has exited, on Stop or on its own.
func (r *Redis) Exited() <-chan struct{} { return r.done }

// Err says how the server exited; it is nil until Exited is closed.
func (r *Redis) Err() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Stop terminates the server and waits for it (killing it after 5s).
func (r *Redis) Stop() error {
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-t.C:
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-r.done
	return nil
}
