package worker_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
)

// gated is a Concurrent function whose calls wait for a token each, and that
// counts the calls running now and the most that ever ran at once.
type gated struct {
	tokens      chan struct{}
	now, most   atomic.Int64
	concurrency int
}

func newGated(n int) *gated { return &gated{tokens: make(chan struct{}, 1024), concurrency: n} }

func (g *gated) register(reg *worker.Registry) {
	reg.Handle("gate", worker.Func1(func(x int) (int, error) {
		n := g.now.Add(1)
		for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
		}
		<-g.tokens
		g.now.Add(-1)
		return x, nil
	}), worker.Concurrent(g.concurrency))
}

func (g *gated) release(n int) {
	for range n {
		g.tokens <- struct{}{}
	}
}

// A Concurrent function's items run on goroutines of their own, across the
// chunks the worker holds: a chunk whose items all run frees its slot, so one
// slot holds three chunks at once, and the function's bound holds across them.
func TestConcurrentFunctionRunsItemsOfManyChunksOnOneSlot(t *testing.T) {
	e := newEnv(t)
	g := newGated(10)
	reg := worker.NewRegistry()
	g.register(reg)
	cfg := e.config("hostconc")
	cfg.Concurrency = 1
	e.run(cfg, reg)
	e.startBatch("conc")
	for k := range 4 {
		e.pushChunk("gate", "gate", "conc", int64(3*k), fmt.Sprintf("[%d,%d,%d]", 3*k, 3*k+1, 3*k+2))
	}
	// Three chunks of 3 items run at once on the one slot; the fourth gets the one place left of 10.
	e.eventually("10 items running", func() bool { return g.now.Load() == 10 })
	if e.llen(e.keys.Queue("gate")) != 0 {
		t.Fatal("a chunk is still queued: the slot was not freed")
	}
	g.release(12)
	got := map[int64]bool{}
	for range 4 {
		start, res := e.waitChunk("conc")
		if len(res.Values) != 3 || len(res.Errors) != 0 || string(res.Values[0]) != fmt.Sprint(start) {
			t.Fatalf("chunk %d: %+v", start, res)
		}
		got[start] = true
	}
	if len(got) != 4 || g.most.Load() != 10 {
		t.Fatalf("chunks %v, at most %d items at once (want 10)", got, g.most.Load())
	}
	inflight := e.keys.Inflight("gate", fmt.Sprintf("hostconc:%d", os.Getpid()))
	e.eventually("nothing left in flight", func() bool { return e.llen(inflight) == 0 })
}

// A worker that stops waits for the chunks whose items still run after they
// freed their slot, as for any running job.
func TestStopWaitsForChunksThatFreedTheirSlot(t *testing.T) {
	e := newEnv(t)
	g := newGated(8)
	reg := worker.NewRegistry()
	g.register(reg)
	cfg := e.config("hoststop")
	cfg.Concurrency = 1
	_, stop := e.run(cfg, reg)
	e.startBatch("stop")
	e.pushChunk("gate", "gate", "stop", 0, "[1,2]")
	e.pushChunk("gate", "gate", "stop", 2, "[3,4]")
	e.eventually("both chunks running", func() bool { return g.now.Load() == 4 })
	stopped := make(chan struct{})
	go func() { defer close(stopped); stop() }()
	select { // a bounded look: a worker that did not wait would be gone well within it
	case <-stopped:
		t.Fatal("the worker stopped while its chunks' items still ran")
	case <-time.After(200 * time.Millisecond):
	}
	g.release(4)
	<-stopped
	if n := e.llen(e.keys.BatchDone("stop")); n != 2 {
		t.Fatalf("%d outcomes written before the worker stopped, want 2", n)
	}
}
