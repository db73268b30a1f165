package workercmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/gomap/gomap/worker/samples"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sampleRegistry() *worker.Registry {
	reg := worker.NewRegistry()
	samples.Register(reg)
	return reg
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	var stderr bytes.Buffer
	if code := Run("gomap-worker", sampleRegistry(), []string{"-help"}, Env{Stderr: &stderr}); code != 0 {
		t.Fatalf("-help exited %d", code)
	}
	help := stderr.String()
	for _, want := range []string{
		"Usage: gomap-worker [flags]",
		"-queues", "high=2,low=1", "one queue per registered function", "-interval", "-concurrency", "(default 25)",
		"-connections", "(default 2)", "-uri", "$REDIS_PROVIDER", "$REDIS_URL", "redis://localhost:6379/", "unix://",
		"rediss://", "-namespace", `(default "goworker:")`, "-exit-on-complete", "-use-number", "-tls-cert",
		"-insecure-tls", "-heartbeat", "-dead-after", "-shutdown-timeout", "-redis-server", "-redis-only", "-lifeline",
		"sampleadd", "countprimes", "samplewords", "second signal exits at once", "-metrics-addr", "/metrics",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("-help does not mention %q", want)
		}
	}
}

func TestBadCommandLinesExitWithAReason(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-queues", "high=x"}, "the weight must be a whole number"},
		{[]string{"-queues", "a,a"}, "listed twice"},
		{[]string{"-queues", "a{b}"}, "braces are not allowed"},
		{[]string{"-uri", "redis://x", "-redis-server", "/bin/false"}, "exclude each other"},
		{[]string{"-uri", "http://localhost"}, "redis URI"},
		{[]string{"-uri", "redis://localhost:6379", "-tls-cert", "ca.pem"}, "need a rediss:// URI"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-concurrency", "0"}, "at least 1"},
		{[]string{"-redis-only"}, "-redis-only needs -redis-server"},
		{[]string{"-redis-only", "-uri", "redis://x"}, "-redis-only needs -redis-server"},
		{[]string{"-no-such-flag"}, "flag provided but not defined"},
		{[]string{"-redis-server", "/bin/false", "-redis-only", "-metrics-addr", "127.0.0.1:0"}, "-metrics-addr needs a worker"},
	} {
		var stderr bytes.Buffer
		code := Run("gomap-worker", sampleRegistry(), tc.args, Env{Stdout: io.Discard, Stderr: &stderr})
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and an error saying %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

type readyLine struct {
	Event    string
	URI      string
	PID      int
	RedisPID int `json:"redis_pid"`
}

func unixClient(t *testing.T, uri string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: strings.TrimPrefix(uri, "unix://"), MaxRetries: -1})
	t.Cleanup(func() {
		if err := rdb.Close(); err != nil {
			t.Error(err)
		}
	})
	return rdb
}

func TestKeeperHoldsRedisUntilTheWorkersUnregister(t *testing.T) {
	stdin, lifeline := io.Pipe()
	stdout, logs := &workertest.LockedBuffer{}, &workertest.LockedBuffer{}
	args := []string{"-redis-server", redistest.Binary(t), "-redis-dir", workertest.SocketDir(t), "-redis-only", "-lifeline",
		"-shutdown-timeout", "1s", "-log-level", "debug"}
	code := make(chan int, 1)
	go func() {
		code <- Run("gomap-worker", sampleRegistry(), args, Env{Stdin: stdin, Stdout: stdout, Stderr: logs})
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keeper log:\n%s", logs.String())
		}
	})
	redistest.Eventually(t, 10*time.Second, "the keeper writes its ready line", func() bool {
		return strings.HasSuffix(stdout.String(), "\n")
	})
	var ready readyLine
	if err := json.Unmarshal([]byte(stdout.String()), &ready); err != nil || ready.Event != "ready" ||
		!strings.HasPrefix(ready.URI, "unix://") || ready.PID != os.Getpid() || ready.RedisPID <= 0 {
		t.Fatalf("ready line %q: %v", stdout.String(), err)
	}

	_, stopWorker := workertest.Run(t, worker.Config{
		URI: ready.URI, Hostname: "w", Concurrency: 1, Heartbeat: 50 * time.Millisecond, DeadAfter: 250 * time.Millisecond,
	}, sampleRegistry())
	if err := lifeline.Close(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 10*time.Second, "the keeper waits for the worker", func() bool {
		return strings.Contains(logs.String(), "waiting for the workers to unregister")
	})
	rdb := unixClient(t, ready.URI)
	select {
	case c := <-code:
		t.Fatalf("the keeper exited (%d) while a worker was registered", c)
	default:
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis-server must stay up while a worker is registered: %v", err)
	}

	stopWorker() // it unregisters, so the keeper may go
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("keeper exited %d, want 0", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the keeper did not exit after the worker unregistered")
	}
	if err := syscall.Kill(ready.RedisPID, 0); err == nil {
		t.Errorf("redis-server (pid %d) still runs after the keeper exited", ready.RedisPID)
	}
}

func TestAwaitUnregisteredIgnoresDeadRecordsAndHonoursItsDeadline(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	keys := protocol.NewKeys("ns")
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	never := make(chan struct{})

	if n := awaitUnregistered(rdb, keys, time.Minute, never, log); n != 0 {
		t.Errorf("with no records: %d live workers", n)
	}
	// A record whose alive key has expired: its process died unregistered.
	if err := rdb.HSet(ctx, keys.Processes(), "dead:1", "{}").Err(); err != nil {
		t.Fatal(err)
	}
	if n := awaitUnregistered(rdb, keys, time.Minute, never, log); n != 0 {
		t.Errorf("with a dead record: %d live workers, want 0 at once", n)
	}
	// A live one that never unregisters: the deadline ends the wait.
	if err := rdb.HSet(ctx, keys.Processes(), "live:2", "{}").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, keys.Alive("live:2"), "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n := awaitUnregistered(rdb, keys, 300*time.Millisecond, never, log); n != 1 {
		t.Errorf("with a live worker: %d, want 1", n)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("waited %v for a 300ms deadline", d)
	}
	// Redis exiting ends the wait: there is nothing left to keep.
	gone := make(chan struct{})
	close(gone)
	if n := awaitUnregistered(rdb, keys, time.Minute, gone, log); n != 0 {
		t.Errorf("after redis-server exited: %d", n)
	}
}
