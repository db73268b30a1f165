package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/gomap/gomap/worker/client"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
)

// A chunk that a worker took and will never finish (it froze, or a
// failover lost it from the queue) is pushed again by Map: the batch
// completes, right, instead of waiting for the worker to be declared dead.
func TestMapPushesAChunkThatNeverCameBackAgain(t *testing.T) {
	srv := redistest.Start(t)
	startWorker(t, srv.URI)
	c := dial(t, srv.URI)
	ctx := context.Background()
	rdb := srv.Client()
	ins := c.Inspect()
	pauseQueue(t, ins, "sampleadd")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res := mapAsync(ctx, c, "sampleadd", pairs(40), &client.MapOptions{ChunkSize: 10})
	queue := protocol.NewKeys("").Queue("sampleadd")
	redistest.Eventually(t, 10*time.Second, "the 4 chunks wait on the queue", func() bool {
		return rdb.LLen(ctx, queue).Val() == 4
	})
	// A "frozen worker" takes the last chunk and never gives it back.
	if err := rdb.RPop(ctx, queue).Err(); err != nil {
		t.Fatal(err)
	}
	if err := ins.Resume(ctx, "sampleadd"); err != nil {
		t.Fatal(err)
	}
	checkSums(t, await(t, res, 20*time.Second)) // longer: Map waited for the chunk that never came back
	assertNoBatchKeys(t, srv)
}
