package worker

import (
	"context"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// Observer hears what a worker does, for metrics (package
// github.com/gomap/gomap/worker/metrics implements it for Prometheus). The
// worker calls it from many goroutines at once, on its hot paths: a method
// must be safe for concurrent use and return at once. A nil Config.Observer
// costs one nil check per call site.
type Observer interface {
	// ItemDone: one item of a chunk of function has its outcome, after d;
	// kind is "" when it succeeded, else the item error's kind ("error",
	// "panic", "timeout", …).
	ItemDone(function string, d time.Duration, kind string)
	// JobDone: one job (a plain job or a chunk) of function is done, after
	// d; exception is "" when it succeeded, else the exception of its
	// failed entry. A chunk whose items failed is done, not failed.
	JobDone(function string, d time.Duration, exception string)
	// ChunkStarted and ChunkDone bracket a chunk of function that runs.
	ChunkStarted(function string)
	ChunkDone(function string)
	// Reserved: n jobs were taken off their queues.
	Reserved(n int)
	// Requeued: the reaper put n jobs of a dead worker back on their queues.
	Requeued(n int)
}

// DialObserver is an Observer that also hears of every connection the
// worker opens to Redis after it started (package metrics implements it). A
// count that goes on rising means the worker keeps reconnecting.
type DialObserver interface {
	// Dialed: a connection was opened, or failed to open with err.
	Dialed(err error)
}

// dialHook tells a DialObserver of each dial of the client it is added to.
type dialHook struct{ o DialObserver }

func (h dialHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		h.o.Dialed(err)
		return c, err
	}
}

func (dialHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (dialHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// observeDials adds the hook to rdb (to each node of a cluster, as it appears).
func observeDials(rdb redis.UniversalClient, o DialObserver) {
	h := dialHook{o}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		c.OnNewNode(func(node *redis.Client) { node.AddHook(h) })
	default:
		rdb.AddHook(h)
	}
}
