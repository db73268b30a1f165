package client_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gomap/gomap/worker/client"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
)

// On a 3-master cluster a worker serves three shards of each queue, one per
// master, and Map spreads a batch's chunks over them (docs/protocol.md,
// "Sharded queues"). The queue is paused while the chunks are counted.
func TestMapSpreadsChunksOverTheShards(t *testing.T) {
	uri := redistest.StartCluster(t)
	startWorker(t, uri)
	c := dial(t, uri)
	rdb := redistest.ClusterClient(t, uri)
	ctx := context.Background()
	ins := c.Inspect()
	procs, err := c.Workers(ctx, "sampleadd")
	if err != nil || len(procs) != 1 || procs[0].Shards != 3 {
		t.Fatalf("workers %+v, %v: want one that serves 3 shards", procs, err)
	}
	pauseQueue(t, ins, "sampleadd")
	mapCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res := mapAsync(mapCtx, c, "sampleadd", pairs(90), &client.MapOptions{ChunkSize: 10})
	keys := protocol.NewKeys("")
	shards := keys.Shards("sampleadd", 3)
	masters := map[string]bool{}
	redistest.Eventually(t, 10*time.Second, "the 9 chunks wait on the 3 shards, 3 each", func() bool {
		for _, q := range shards {
			if n, err := rdb.LLen(ctx, keys.Queue(q)).Result(); err != nil || n != 3 {
				return false
			}
		}
		return true
	})
	for _, q := range shards {
		m, err := rdb.MasterForKey(ctx, keys.Queue(q))
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Options().Addr] = true
	}
	if len(masters) != 3 {
		t.Errorf("the shards %v live on %d masters, want 3", shards, len(masters))
	}
	if err := ins.Resume(ctx, "sampleadd"); err != nil {
		t.Fatal(err)
	}
	checkSums(t, await(t, res, 30*time.Second))

	// Plain jobs, opted in, go round the shards too; the worker runs them all.
	pauseQueue(t, ins, "sampleupper")
	before, err := ins.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		if err := c.EnqueueSpread(ctx, "sampleupper", "sampleupper", "x"); err != nil {
			t.Fatal(err)
		}
	}
	total := int64(0)
	for _, q := range keys.Shards("sampleupper", 3) {
		n := rdb.LLen(ctx, keys.Queue(q)).Val()
		if n == 0 {
			t.Errorf("shard %s got none of the 30 spread jobs", q)
		}
		total += n
	}
	if total != 30 {
		t.Fatalf("%d jobs on the shards, want 30", total)
	}
	if err := ins.Resume(ctx, "sampleupper"); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 10*time.Second, "the 30 spread jobs ran", func() bool {
		s, err := ins.Stats(ctx)
		return err == nil && s.Processed >= before.Processed+30
	})
}

// pauseQueue pauses queue and waits until the one live worker took note.
func pauseQueue(t *testing.T, ins *client.Inspector, queue string) {
	t.Helper()
	ctx := context.Background()
	if err := ins.Pause(ctx, queue); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 10*time.Second, "the worker took note of the pause", func() bool {
		ps, err := ins.Processes(ctx)
		return err == nil && len(ps) == 1 && slices.Equal(ps[0].Paused, []string{queue})
	})
}

// checkSums checks a Map of sampleadd over pairs(n): item i is 3i.
func checkSums(t *testing.T, r mapResult) {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	for i, v := range r.out {
		if string(v) != strconv.Itoa(3*i) {
			t.Fatalf("result %d = %s, want %d", i, v, 3*i)
		}
	}
}
