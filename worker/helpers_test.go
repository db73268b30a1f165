package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one test's Redis server, a client of it, and the key names.
type env struct {
	t    *testing.T
	srv  *redistest.Server
	rdb  *redis.Client
	keys protocol.Keys
	ctx  context.Context
}

func newEnv(t *testing.T) *env {
	srv := redistest.Start(t)
	return &env{t: t, srv: srv, rdb: srv.Client(), keys: protocol.NewKeys(""), ctx: context.Background()}
}

// config is a test worker's config: fast heartbeats, a long poll interval
// (so a test that passes shows blocking pickup, not polling), one host name.
func (e *env) config(host string) worker.Config {
	return worker.Config{
		URI:             e.srv.URI,
		Hostname:        host,
		Concurrency:     4,
		Connections:     4,
		Interval:        10 * time.Second,
		Heartbeat:       50 * time.Millisecond,
		DeadAfter:       250 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second,
	}
}

// run starts a worker and returns it once it is registered; stop (also
// called at cleanup) ends it and checks Run returned nil.
func (e *env) run(cfg worker.Config, reg *worker.Registry) (w *worker.Worker, stop func()) {
	e.t.Helper()
	return workertest.Run(e.t, cfg, reg)
}

// push enqueues raw payloads as Ruby Resque does.
func (e *env) push(queue string, payloads ...string) {
	e.t.Helper()
	for _, p := range payloads {
		if err := e.rdb.SAdd(e.ctx, e.keys.Queues(), queue).Err(); err != nil {
			e.t.Fatal(err)
		}
		if err := e.rdb.RPush(e.ctx, e.keys.Queue(queue), p).Err(); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) get(key string) string {
	e.t.Helper()
	v, err := e.rdb.Get(e.ctx, key).Result()
	if err != nil && err != redis.Nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) exists(key string) int64 {
	e.t.Helper()
	n, err := e.rdb.Exists(e.ctx, key).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) llen(key string) int64 {
	e.t.Helper()
	n, err := e.rdb.LLen(e.ctx, key).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	redistest.Eventually(e.t, 10*time.Second, what, cond)
}

// recorder is a registry whose functions report each call on a channel.
type call struct {
	class string
	queue string
	args  []any
}

func recorder(classes ...string) (*worker.Registry, chan call) {
	calls := make(chan call, 1000)
	reg := worker.NewRegistry()
	for _, c := range classes {
		reg.Register(c, func(queue string, args ...interface{}) error {
			calls <- call{class: c, queue: queue, args: args}
			return nil
		})
	}
	return reg, calls
}

func receive(t *testing.T, calls <-chan call) call {
	t.Helper()
	select {
	case c := <-calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no call within 10s")
		return call{}
	}
}
