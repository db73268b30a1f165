package workercmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/embedded"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/rconn"
	"github.com/redis/go-redis/v9"
)

// Keeper mode (-redis-only). Python's LocalCluster runs its Redis in a
// keeper process and the workers in processes of their own, so it can swap
// worker binaries while Redis, and what is queued in it, stays up. When the
// parent goes, keeper and workers all see their lifelines close at once; the
// keeper holds Redis until the workers have put their jobs back and
// unregistered, so none of them is left retrying against a vanished server.

const (
	// unregisterGrace is what a worker needs after its running jobs, to put
	// the rest back and unregister: Worker.Run allows itself 10s for that.
	unregisterGrace = 10 * time.Second
	// pollWorkers is how often the keeper looks whether workers remain.
	pollWorkers = 50 * time.Millisecond
)

// keep writes the ready line and holds the private Redis r until ctx ends
// (signal or lifeline) or r exits; then it waits for the workers on r to
// unregister. The caller stops r.
func keep(ctx context.Context, cfg worker.Config, r *embedded.Redis, stdout io.Writer) error {
	line := map[string]any{"event": "ready", "uri": r.URI, "pid": os.Getpid(), "redis_pid": r.PID()}
	if err := writeReady(stdout, line); err != nil {
		return fmt.Errorf("writing the ready line: %w", err)
	}
	cfg.Logger.Info("keeping redis-server for workers started apart", "uri", r.URI, "redis_pid", r.PID())
	select {
	case <-ctx.Done():
	case <-r.Exited():
		return fmt.Errorf("redis-server exited on its own: %v", r.Err())
	}
	deadline := cfg.ShutdownTimeout + unregisterGrace
	cfg.Logger.Info("stopping: waiting for the workers to unregister", "at_most", deadline)
	rdb, err := dial(r.URI)
	if err != nil {
		return err
	}
	defer func() {
		if err := rdb.Close(); err != nil {
			cfg.Logger.Warn("closing the redis client", "err", err)
		}
	}()
	n := awaitUnregistered(rdb, protocol.NewKeys(cfg.Namespace), deadline, r.Exited(), cfg.Logger)
	if n != 0 { // -1: Redis did not answer
		cfg.Logger.Warn("stopping redis-server while workers may still be registered", "workers", n, "waited", deadline)
	}
	return nil
}

func dial(uri string) (*redis.Client, error) {
	opt, err := rconn.Parse(rconn.Options{URI: uri, Connections: 1})
	if err != nil {
		return nil, err
	}
	opt.MaxRetries = -1 // the poll is the retry
	return redis.NewClient(opt), nil
}

// awaitUnregistered polls until no live worker is registered in the
// namespace of keys, the deadline passes or gone closes, and returns how
// many live workers remain (-1 if Redis never answered).
func awaitUnregistered(rdb *redis.Client, keys protocol.Keys, deadline time.Duration, gone <-chan struct{}, log *slog.Logger) int {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	tick := time.NewTicker(pollWorkers)
	defer tick.Stop()
	last := -1
	for {
		n, err := liveWorkers(ctx, rdb, keys)
		switch {
		case err == nil && n == 0:
			return 0
		case err == nil:
			last = n
		case ctx.Err() == nil:
			log.Debug("counting registered workers", "err", err)
		}
		select {
		case <-ctx.Done():
			return last
		case <-gone:
			return 0 // nothing left to keep
		case <-tick.C:
		}
	}
}

// liveWorkers counts the worker records in gomap:workers whose alive key
// exists. A record without one belongs to a process that died without
// unregistering: waiting for it would only wait out the deadline, since no
// worker is left to reap it.
func liveWorkers(ctx context.Context, rdb *redis.Client, keys protocol.Keys) (int, error) {
	procs, err := rdb.HKeys(ctx, keys.Processes()).Result()
	if err != nil || len(procs) == 0 {
		return 0, err
	}
	alive := make([]string, len(procs))
	for i, p := range procs {
		alive[i] = keys.Alive(p)
	}
	// One EXISTS of all: the keeper's Redis is a single server, never a cluster.
	n, err := rdb.Exists(ctx, alive...).Result()
	return int(n), err
}
