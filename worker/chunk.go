package worker

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/redis/go-redis/v9"
)

// runChunk runs a chunk of a gomap batch and stores the outcome of every item
// in the batch's result hash, then signals the client. A chunk of a batch
// that is gone (cancelled, finished or expired) is dropped unrun.
func (w *Worker) runChunk(ctx context.Context, slot int, j reserved, p protocol.Payload) {
	c, id := p.Chunk, w.slots[slot]
	meta := w.keys.BatchMeta(c.Batch)
	var alive *redis.IntCmd
	_, err := w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		alive = pipe.Exists(ctx, meta)
		pipe.Set(ctx, w.keys.Worker(id), workingOn(j.queue, chunkSummary(p)), 0)
		return nil
	})
	if err != nil {
		// Run it anyway: the result script drops the outcome if the batch is gone.
		w.log.Warn("could not check the batch, running the chunk", "batch", c.Batch, "err", err)
	} else if alive.Val() == 0 {
		w.log.Debug("skipping a chunk of a cancelled batch", "batch", c.Batch, "start", c.Start)
		w.ack(ctx, j, func(pipe redis.Pipeliner) { pipe.Del(ctx, w.keys.Worker(id)) })
		return
	}
	chunkCtx, cancelled := w.watchBatch(ctx, meta)
	outcome := w.chunkOutcome(chunkCtx, j.queue, p)
	if cancelled() {
		w.log.Debug("batch cancelled while its chunk ran", "batch", c.Batch, "start", c.Start)
		w.ack(ctx, j, func(pipe redis.Pipeliner) { pipe.Del(ctx, w.keys.Worker(id)) })
		return
	}
	keys := []string{meta, w.keys.BatchResults(c.Batch), w.keys.BatchDone(c.Batch)}
	start := strconv.FormatInt(c.Start, 10)
	w.ack(ctx, j, func(pipe redis.Pipeliner) {
		pipe.Eval(ctx, protocol.WriteResultScript, keys, start, outcome)
		pipe.Del(ctx, w.keys.Worker(id))
		w.countProcessed(ctx, pipe, id)
	})
}

// watchBatch returns the context a chunk runs in: it ends when the batch is
// cancelled (its meta key is gone, checked every second), so the chunk's
// remaining items are skipped and context-aware functions stop. The second
// result says, once the chunk is done, whether that happened; it also stops
// the watch.
func (w *Worker) watchBatch(ctx context.Context, meta string) (context.Context, func() bool) {
	ctx, cancel := context.WithCancel(ctx)
	var gone atomic.Bool
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if n, err := w.rdb.Exists(ctx, meta).Result(); err == nil && n == 0 {
					gone.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	return ctx, func() bool {
		close(stop)
		<-done
		cancel()
		return gone.Load()
	}
}

// chunkSummary is the chunk as worker:<id> shows it: without its items,
// which may be large, and with their count.
func chunkSummary(p protocol.Payload) string {
	cls, err := protocol.Marshal(p.Class)
	if err != nil {
		cls = []byte(`""`)
	}
	batch, err := protocol.Marshal(p.Chunk.Batch)
	if err != nil {
		batch = []byte(`""`)
	}
	return fmt.Sprintf(`{"class":%s,"args":[],"gomap":{"v":%d,"batch":%s,"start":%d,"count":%d}}`,
		cls, protocol.Version, batch, p.Chunk.Start, len(p.Chunk.Items))
}

func (w *Worker) chunkOutcome(ctx context.Context, queue string, p protocol.Payload) []byte {
	c := p.Chunk
	var values []byte
	var errs []protocol.ItemError
	if h, ok := w.reg.Lookup(p.Class); ok {
		ctx = withJob(ctx, Job{Queue: queue, Class: p.Class, Batch: c.Batch})
		values, errs = w.runItems(ctx, h, c.Items, c.Start)
	} else {
		values, errs = failAll(c, protocol.KindUnknown, w.unknownClass(p.Class, queue))
	}
	out, err := protocol.AppendChunkResult(nil, values, errs)
	if err != nil {
		w.log.Error("chunk outcome not encodable", "batch", c.Batch, "err", err)
		values, errs = failAll(c, protocol.KindResult, "outcome not encodable: "+err.Error())
		if out, err = protocol.AppendChunkResult(nil, values, errs); err != nil {
			w.log.Error("chunk outcome not encodable", "batch", c.Batch, "err", err)
		}
	}
	return out
}

// failAll gives every item of c the same error.
func failAll(c *protocol.Chunk, kind, msg string) ([]byte, []protocol.ItemError) {
	values := make([]byte, 0, 2+5*len(c.Items))
	values = append(values, '[')
	errs := make([]protocol.ItemError, len(c.Items))
	for i := range c.Items {
		if i > 0 {
			values = append(values, ',')
		}
		values = append(values, "null"...)
		errs[i] = protocol.ItemError{Index: c.Start + int64(i), Kind: kind, Error: msg}
	}
	return append(values, ']'), errs
}

// itemsOut is the outcome of a run of consecutive items: their values,
// comma-separated, and the errors of those that failed.
type itemsOut struct {
	values []byte
	errs   []protocol.ItemError
}

// runItems runs h on every item, in parallel on all CPUs: goroutines take
// grains of consecutive items off a shared counter, so uneven items balance,
// and the grains are joined in order. It returns the JSON array of values
// (null for a failed item) and the errors.
func (w *Worker) runItems(ctx context.Context, h Handler, items [][]byte, start int64) ([]byte, []protocol.ItemError) {
	n := len(items)
	procs := min(runtime.GOMAXPROCS(0), n)
	grain := max(1, n/(max(procs, 1)*8))
	outs := make([]itemsOut, (n+grain-1)/grain)
	var next atomic.Int64
	work := func() {
		for {
			g := int(next.Add(1) - 1)
			if g >= len(outs) {
				return
			}
			lo, hi := g*grain, min(n, (g+1)*grain)
			outs[g] = w.runRange(ctx, h, items[lo:hi], start+int64(lo))
		}
	}
	if procs <= 1 {
		work()
	} else {
		var wg sync.WaitGroup
		for range procs {
			wg.Go(work)
		}
		wg.Wait()
	}
	size := 2
	for _, o := range outs {
		size += len(o.values) + 1
	}
	values := make([]byte, 0, size)
	values = append(values, '[')
	var errs []protocol.ItemError
	for g, o := range outs {
		if g > 0 {
			values = append(values, ',')
		}
		values = append(values, o.values...)
		errs = append(errs, o.errs...)
	}
	return append(values, ']'), errs
}

func (w *Worker) runRange(ctx context.Context, h Handler, items [][]byte, start int64) itemsOut {
	o := itemsOut{values: make([]byte, 0, 8*len(items))}
	var argBuf [8][]byte
	for i, item := range items {
		if i > 0 {
			o.values = append(o.values, ',')
		}
		var ierr *protocol.ItemError
		args, err := itemArgs(item, argBuf[:0], w.cfg.UseNumber)
		switch {
		case ctx.Err() != nil:
			ierr = &protocol.ItemError{Kind: protocol.KindError, Error: "not run: " + context.Cause(ctx).Error()}
		case err != nil:
			ierr = &protocol.ItemError{Kind: protocol.KindArguments, Error: err.Error()}
		default:
			o.values, ierr = callItem(ctx, h, args, o.values)
		}
		if ierr != nil {
			ierr.Index = start + int64(i)
			o.errs = append(o.errs, *ierr)
			o.values = append(o.values, "null"...)
		}
	}
	return o
}

// callItem calls h, turning an error or a panic into an item error; on
// failure dst comes back as it was.
func callItem(ctx context.Context, h Handler, args Args, dst []byte) (out []byte, ierr *protocol.ItemError) {
	n := len(dst)
	defer func() {
		if r := recover(); r != nil {
			out = dst[:n]
			ierr = &protocol.ItemError{Kind: protocol.KindPanic, Error: fmt.Sprint(r), Stack: panicStack(debug.Stack())}
		}
	}()
	out, err := h.Call(ctx, args, dst)
	if err != nil {
		return dst[:n], &protocol.ItemError{Kind: errorKind(err), Error: err.Error()}
	}
	return out, nil
}

// panicStack trims a stack taken in a deferred recover to start at the frame
// that panicked: the goroutine header, then what follows the last panic(…)
// frame, so the first frame shown is the function's own file:line.
func panicStack(stack []byte) string {
	lines := strings.Split(strings.TrimSpace(string(stack)), "\n")
	for i := len(lines) - 1; i > 0; i-- {
		if strings.HasPrefix(lines[i], "panic(") && i+2 <= len(lines) {
			return strings.Join(append(lines[:1:1], lines[i+2:]...), "\n")
		}
	}
	return strings.Join(lines, "\n")
}
