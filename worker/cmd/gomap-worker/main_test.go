package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomap/gomap/worker/client"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/redis/go-redis/v9"
)

// The tests here run the built binary: signals, kill -9 and the parent-death
// signal need processes of their own. The command line itself is tested in
// package workercmd.

// build builds gomap-worker into the test's temporary directory (the go
// build cache makes every build after the first quick).
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gomap-worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building gomap-worker: %v\n%s", err, out)
	}
	return bin
}

// proc is a gomap-worker process started by a test.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *workertest.LockedBuffer
	exited chan error
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(build(t), args...)
	p := &proc{t: t, cmd: cmd, stderr: &workertest.LockedBuffer{}, exited: make(chan error, 1)}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = bufio.NewReader(out)
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("killing gomap-worker: %v", err)
		}
		<-p.exited
		p.exited <- nil
		if t.Failed() {
			t.Logf("gomap-worker %v log:\n%s", args, p.stderr.String())
		}
	})
	return p
}

// wait returns the process's exit code, failing if it runs past d.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			p.t.Fatal(err)
		}
		return 0
	case <-time.After(d):
		p.t.Fatalf("gomap-worker still runs after %v", d)
		return -1
	}
}

func (p *proc) signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

func workerArgs(uri, host string, extra ...string) []string {
	return append([]string{"-uri", uri, "-hostname", host, "-queues", "samplesleep,sampleadd",
		"-heartbeat", "100ms", "-dead-after", "500ms", "-log-level", "debug"}, extra...)
}

func registered(t *testing.T, rdb *redis.Client, proc string) bool {
	t.Helper()
	ok, err := rdb.HExists(context.Background(), protocol.NewKeys("").Processes(), proc).Result()
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// running says whether a slot of process proc records a running job
// (Resque's worker:<id> key).
func running(t *testing.T, rdb *redis.Client, proc string) bool {
	t.Helper()
	keys, err := rdb.Keys(context.Background(), protocol.NewKeys("").Worker(proc+"-*")).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasSuffix(k, ":started") {
			return true
		}
	}
	return false
}

func procID(host string, p *proc) string { return host + ":" + strconv.Itoa(p.cmd.Process.Pid) }

func TestKilledWorkersJobIsRecoveredByAnotherWorker(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	keys := protocol.NewKeys("")
	ctx := context.Background()
	a := start(t, workerArgs(srv.URI, "a")...)
	redistest.Eventually(t, 10*time.Second, "worker a registers", func() bool { return registered(t, rdb, procID("a", a)) })

	c := client.New(rdb, "")
	result := make(chan error, 1)
	var got []float64
	go func() {
		var err error
		got, err = client.MapAs[float64](ctx, c, "samplesleep", []any{0.5}, nil)
		result <- err
	}()
	inflight := keys.Inflight("samplesleep", procID("a", a))
	redistest.Eventually(t, 10*time.Second, "worker a holds the chunk", func() bool { return rdb.LLen(ctx, inflight).Val() == 1 })
	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)
	if n := rdb.LLen(ctx, inflight).Val(); n != 1 {
		t.Fatalf("after kill -9 the chunk must still be in a's in-flight list, found %d", n)
	}

	b := start(t, workerArgs(srv.URI, "b")...)
	select {
	case err := <-result:
		if err != nil || len(got) != 1 || got[0] != 0.5 {
			t.Fatalf("batch after recovery: %v, %v", got, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the killed worker's chunk was not recovered")
	}
	if registered(t, rdb, procID("a", a)) || rdb.LLen(ctx, inflight).Val() != 0 {
		t.Error("the dead worker must be unregistered and its in-flight list emptied")
	}
	b.signal(syscall.SIGTERM)
	if code := b.wait(10 * time.Second); code != 0 {
		t.Errorf("b exited %d", code)
	}
}

// sleepingWorker starts a worker process on a Redis of its own and gives it a
// job that sleeps a minute; it returns once the job runs.
func sleepingWorker(t *testing.T, host, shutdownTimeout string) (*redis.Client, *proc, string) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	w := start(t, workerArgs(srv.URI, host, "-shutdown-timeout", shutdownTimeout)...)
	redistest.Eventually(t, 10*time.Second, "the worker registers", func() bool { return registered(t, rdb, procID(host, w)) })
	job := `{"class":"samplesleep","args":[60]}`
	if err := rdb.RPush(context.Background(), protocol.NewKeys("").Queue("samplesleep"), job).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 10*time.Second, "the job runs", func() bool { return running(t, rdb, procID(host, w)) })
	return rdb, w, job
}

func TestSIGTERMPutsTheRunningJobBackAndUnregisters(t *testing.T) {
	rdb, w, job := sleepingWorker(t, "t", "300ms")
	keys := protocol.NewKeys("")
	ctx := context.Background()
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if q := rdb.LRange(ctx, keys.Queue("samplesleep"), 0, -1).Val(); len(q) != 1 || q[0] != job {
		t.Errorf("queue after SIGTERM %q, want the job back", q)
	}
	if rdb.Exists(ctx, keys.Workers(), keys.Processes(), keys.Heartbeat()).Val() != 0 || rdb.LLen(ctx, keys.Failed()).Val() != 0 {
		t.Error("after SIGTERM the worker must be unregistered, and the job not failed")
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	rdb, w, _ := sleepingWorker(t, "s", "60s")
	ctx := context.Background()
	inflight := protocol.NewKeys("").Inflight("samplesleep", procID("s", w))
	w.signal(syscall.SIGTERM)
	redistest.Eventually(t, 10*time.Second, "the worker starts shutting down", func() bool {
		return strings.Contains(w.stderrText(), "a second signal exits at once")
	})
	w.signal(syscall.SIGTERM)
	if code := w.wait(5 * time.Second); code != 1 {
		t.Errorf("exit code %d after a second signal, want 1", code)
	}
	if n := rdb.LLen(ctx, inflight).Val(); n != 1 {
		t.Errorf("the job must stay in flight for the reaper, found %d", n)
	}
}

func (p *proc) stderrText() string { return p.stderr.String() }

func TestEmbeddedRedisLivesAndDiesWithTheWorker(t *testing.T) {
	redisServer, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH")
	}
	for _, how := range []string{"lifeline", "kill"} {
		t.Run(how, func(t *testing.T) {
			dir := workertest.SocketDir(t)
			w := start(t, "-redis-server", redisServer, "-redis-dir", dir, "-lifeline", "-concurrency", "2")
			line, err := w.stdout.ReadString('\n')
			if err != nil {
				t.Fatalf("no ready line: %v", err)
			}
			var ready struct {
				Event, URI, ID string
				RedisPID       int `json:"redis_pid"`
			}
			if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.Event != "ready" || !strings.HasPrefix(ready.URI, "unix://") {
				t.Fatalf("ready line %q: %v", line, err)
			}
			c, err := client.Dial(context.Background(), client.Options{URI: ready.URI})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := c.Close(); err != nil {
					t.Error(err)
				}
			})
			sums, err := client.MapAs[int](context.Background(), c, "sampleadd", []any{[]int{1, 2}, []int{3, 4}}, nil)
			if err != nil || fmt.Sprint(sums) != "[3 7]" {
				t.Fatalf("map on the embedded redis: %v, %v", sums, err)
			}
			rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: strings.TrimPrefix(ready.URI, "unix://")})
			info, err := rdb.Info(context.Background(), "server").Result()
			if cerr := rdb.Close(); cerr != nil {
				t.Error(cerr)
			}
			if err != nil {
				t.Fatal(err)
			}
			redisPID := infoInt(t, info, "process_id")
			if ready.RedisPID != redisPID {
				t.Errorf("ready line says redis_pid %d, INFO says %d", ready.RedisPID, redisPID)
			}
			if how == "lifeline" {
				if err := w.stdin.Close(); err != nil {
					t.Fatal(err)
				}
				if code := w.wait(10 * time.Second); code != 0 {
					t.Errorf("exit %d after the lifeline closed", code)
				}
			} else {
				w.signal(syscall.SIGKILL)
				w.wait(5 * time.Second)
			}
			redistest.Eventually(t, 10*time.Second, "the private redis-server is gone", func() bool {
				return syscall.Kill(redisPID, 0) != nil
			})
		})
	}
}

func infoInt(t *testing.T, info, field string) int {
	t.Helper()
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in INFO", field)
	return 0
}

// readReady reads a process's ready line.
func (p *proc) readReady() (ready struct {
	Event, URI, ID string
	RedisPID       int `json:"redis_pid"`
}) {
	p.t.Helper()
	line, err := p.stdout.ReadString('\n')
	if err != nil {
		p.t.Fatalf("no ready line: %v", err)
	}
	if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.Event != "ready" {
		p.t.Fatalf("ready line %q: %v", line, err)
	}
	return ready
}

// The topology of Python's LocalCluster: a keeper (-redis-only) and a worker
// process on its socket, each with a lifeline from the same parent. When the
// parent dies both lifelines close at once; the worker must still put its
// running job back and unregister (exit 0) before the keeper stops Redis.
func TestKeeperOutlivesItsWorkersWhenTheParentGoes(t *testing.T) {
	keeper := start(t, "-redis-server", redistest.Binary(t), "-redis-dir", workertest.SocketDir(t), "-redis-only", "-lifeline",
		"-shutdown-timeout", "2s", "-log-level", "debug")
	kr := keeper.readReady()
	if kr.ID != "" || kr.RedisPID <= 0 || !strings.HasPrefix(kr.URI, "unix://") {
		t.Fatalf("keeper's ready line %+v: want a uri and a redis_pid, and no worker id", kr)
	}
	w := start(t, append(workerArgs(kr.URI, "lc", "-shutdown-timeout", "300ms"), "-lifeline")...)
	wr := w.readReady()
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: strings.TrimPrefix(kr.URI, "unix://"), MaxRetries: -1})
	t.Cleanup(func() {
		if err := rdb.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	job := `{"class":"samplesleep","args":[60]}`
	if err := rdb.RPush(ctx, protocol.NewKeys("").Queue("samplesleep"), job).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 10*time.Second, "the job runs", func() bool { return running(t, rdb, wr.ID) })

	if err := errors.Join(keeper.stdin.Close(), w.stdin.Close()); err != nil {
		t.Fatal(err)
	}
	if code := w.wait(10 * time.Second); code != 0 {
		t.Fatalf("the worker exited %d: it could not put its job back and unregister", code)
	}
	if code := keeper.wait(10 * time.Second); code != 0 {
		t.Errorf("the keeper exited %d, want 0", code)
	}
	redistest.Eventually(t, 10*time.Second, "the private redis-server is gone", func() bool {
		return syscall.Kill(kr.RedisPID, 0) != nil
	})
}

// A worker whose Redis is gone for good still exits soon after its lifeline
// closes: nothing in the shutdown waits on Redis for long.
func TestLifelineWorkerExitsWhenItsRedisIsGone(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	w := start(t, append(workerArgs(srv.URI, "g"), "-lifeline")...)
	w.readReady()
	if !registered(t, rdb, procID("g", w)) {
		t.Fatal("the worker is not registered after its ready line")
	}
	srv.Kill()
	if err := w.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code := w.wait(15 * time.Second)
	t.Logf("exited %d after %v", code, time.Since(start).Round(time.Millisecond))
}
