package worker

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Sharded queues (docs/protocol.md, "Sharded queues"): a worker serves each
// of its queues as the queue's shards, whose keys fall in different parts of
// a Redis Cluster's slot space, so that one hot function's traffic is shared
// by the masters. Shard 0 is always the queue itself, so Resque tools and
// workers of other implementations still see and serve it.

// setShards makes the worker serve n shards of each base queue.
func (w *Worker) setShards(n int) {
	w.shards = n
	w.queues = w.queues[:0]
	w.baseOf = map[string]string{}
	w.shardsOf = map[string][]string{}
	for _, q := range w.bases {
		w.shardsOf[q] = w.keys.Shards(q, n)
		for _, s := range w.shardsOf[q] {
			w.queues = append(w.queues, s)
			w.baseOf[s] = q
		}
	}
	w.waitResults = make(chan waitResult, len(w.queues))
}

// base is the queue shard q belongs to (q itself when it is no shard). A
// job's failed entry, its worker:<id> record and its handler see the base.
func (w *Worker) base(q string) string {
	if b, ok := w.baseOf[q]; ok {
		return b
	}
	return q
}

// shardCount is Config.Shards, or, when 0, the number of masters of a
// cluster (1 on a single Redis).
func (w *Worker) shardCount(ctx context.Context) (int, error) {
	if w.cfg.Shards > 0 {
		return w.cfg.Shards, nil
	}
	c, ok := w.rdb.(*redis.ClusterClient)
	if !ok {
		return 1, nil
	}
	var mu sync.Mutex
	masters := map[string]bool{}
	err := c.ForEachMaster(ctx, func(_ context.Context, node *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		masters[node.Options().Addr] = true
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("counting the cluster's masters for -shards: %w", err)
	}
	return max(1, len(masters)), nil
}

// expandShards is the shard queues of queues, n shards each (a dead
// process's record says its bases and shards).
func (w *Worker) expandShards(queues []string, n int) []string {
	var out []string
	for _, q := range queues {
		out = append(out, w.keys.Shards(q, n)...)
	}
	return out
}
