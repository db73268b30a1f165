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
//
// A chunk of a Concurrent function frees its slot once every one of its
// items is running: the rest (waiting for them, writing the outcome,
// acknowledging) goes on in a goroutine of its own, and the slot takes
// another job meanwhile.
func (w *Worker) runChunk(ctx context.Context, slot int, j reserved, p protocol.Payload) {
	c, id := p.Chunk, w.slots[slot]
	meta := w.keys.BatchMeta(c.Batch)
	var alive *redis.IntCmd
	_, err := w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		alive = pipe.Exists(ctx, meta)
		pipe.Set(ctx, w.keys.Worker(id), workingOn(w.base(j.queue), chunkSummary(p)), 0)
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
	var prog chunkProgress
	if e, ok := w.reg.lookup(p.Class); !ok || e.inFlight == nil || len(c.Items) == 0 || c.TooMany > 0 {
		w.finishChunk(ctx, slot, j, p, &prog)
		return
	}
	prog.running = make(chan struct{})
	done := make(chan struct{})
	w.detached.Go(func() {
		defer close(done)
		w.finishChunk(ctx, slot, j, p, &prog)
	})
	select {
	case <-done:
		return
	case <-prog.running:
	}
	if !prog.lend() {
		<-done // it finished first: the slot's bookkeeping is its own
		return
	}
	// The slot is free in Resque's view too; the chunk stays in flight.
	if err := w.rdb.Del(ctx, w.keys.Worker(id)).Err(); err != nil && ctx.Err() == nil {
		w.log.Warn("could not clear the slot of a chunk whose items all run", "slot", id, "err", err)
	}
}

// finishChunk runs the chunk's items (runChunk checked its batch) and writes
// its outcome.
func (w *Worker) finishChunk(ctx context.Context, slot int, j reserved, p protocol.Payload, prog *chunkProgress) {
	c, id := p.Chunk, w.slots[slot]
	meta := w.keys.BatchMeta(c.Batch)
	if o := w.cfg.Observer; o != nil {
		t0 := time.Now()
		o.ChunkStarted(p.Class)
		defer func() {
			o.ChunkDone(p.Class)
			o.JobDone(p.Class, time.Since(t0), "")
		}()
	}
	chunkCtx, cancelled := w.watchBatch(ctx, meta, c.Start, prog)
	outcome, items, failed := w.chunkOutcome(chunkCtx, w.base(j.queue), p, prog)
	// A lent slot may run another job by now: its worker:<id> is not this chunk's to delete.
	mine := prog.finish()
	if cancelled() {
		w.log.Debug("batch cancelled while its chunk ran", "batch", c.Batch, "start", c.Start)
		w.ack(ctx, j, func(pipe redis.Pipeliner) {
			if mine {
				pipe.Del(ctx, w.keys.Worker(id))
			}
		})
		return
	}
	keys := []string{meta, w.keys.BatchResults(c.Batch), w.keys.BatchDone(c.Batch)}
	start := strconv.FormatInt(c.Start, 10)
	w.ack(ctx, j, func(pipe redis.Pipeliner) {
		pipe.Eval(ctx, protocol.WriteResultScript, keys, start, outcome, items, failed)
		if mine {
			pipe.Del(ctx, w.keys.Worker(id))
		}
		w.countProcessed(ctx, pipe, id)
	})
}

// chunkProgress lets a chunk's watcher read how many of its items are done,
// and, for a Concurrent function, tells runChunk when all of them run.
type chunkProgress struct {
	run     atomic.Pointer[itemRun]
	running chan struct{} // closed once every item has started; nil: not watched
	once    sync.Once

	mu       sync.Mutex
	lent     bool // runChunk freed the slot: the chunk goes on without it
	finished bool // the chunk's items are done, with the slot still its own
}

// allRunning says that every item has started.
func (p *chunkProgress) allRunning() {
	if p.running != nil {
		p.once.Do(func() { close(p.running) })
	}
}

// lend frees the slot, unless the chunk finished first.
func (p *chunkProgress) lend() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lent = !p.finished
	return p.lent
}

// finish reports whether the slot is still the chunk's own; from then on
// runChunk no longer lends it.
func (p *chunkProgress) finish() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished = true
	return !p.lent
}

func (p *chunkProgress) done() int64 {
	if r := p.run.Load(); r != nil {
		return r.itemsDone()
	}
	return 0
}

// watchBatch returns the context a chunk runs in: it ends when the batch is
// cancelled (its meta key is gone, checked every second), so the chunk's
// remaining items are skipped and context-aware functions stop. While the
// chunk runs, it records every ProgressInterval how many of its items are
// done (ProgressScript), when that changed; the script checks meta too. The
// second result says, once the chunk is done, whether the batch went away;
// it also stops the watch, so no progress is written after the outcome.
func (w *Worker) watchBatch(ctx context.Context, meta string, start int64, prog *chunkProgress) (context.Context, func() bool) {
	ctx, cancel := context.WithCancel(ctx)
	var gone atomic.Bool
	stop := make(chan struct{})
	done := make(chan struct{})
	every := w.cfg.ProgressInterval
	if every <= 0 || every > time.Second {
		every = time.Second // the cancel check's own pace
	}
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		var reported int64
		checked := time.Now()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				alive := true
				if n := prog.done(); w.cfg.ProgressInterval > 0 && n != reported {
					ok, err := w.rdb.Eval(ctx, protocol.ProgressScript, []string{meta}, start, n).Int()
					if err != nil {
						continue
					}
					reported, checked, alive = n, now, ok == 1
				} else if now.Sub(checked) >= time.Second {
					n, err := w.rdb.Exists(ctx, meta).Result()
					if err != nil {
						continue
					}
					checked, alive = now, n == 1
				}
				if !alive {
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
		cls, p.Chunk.Version, batch, p.Chunk.Start, len(p.Chunk.Items))
}

// chunkOutcome runs chunk p and returns its outcome, its number of items and
// how many of them failed.
func (w *Worker) chunkOutcome(ctx context.Context, queue string, p protocol.Payload, prog *chunkProgress) ([]byte, int, int) {
	c := p.Chunk
	var values []byte
	var errs []protocol.ItemError
	n := max(c.TooMany, len(c.Items))
	if n > w.cfg.MaxChunkItems {
		w.log.Warn("chunk has too many items; not run", "batch", c.Batch, "items", n, "max", w.cfg.MaxChunkItems)
		values, errs = []byte("null"), []protocol.ItemError{{Index: c.Start, Count: int64(n), Kind: protocol.KindTooMany,
			Error: fmt.Sprintf("the chunk has %d items, more than this worker's -max-chunk-items %d: use a smaller chunksize",
				n, w.cfg.MaxChunkItems)}}
	} else if e, ok := w.reg.lookup(p.Class); ok {
		ctx = withJob(ctx, Job{Queue: queue, Class: p.Class, Batch: c.Batch})
		values, errs = w.runItems(ctx, e.h, p.Class, c, w.itemLimit(e, c.LimitMS), e.inFlight, prog)
	} else {
		values, errs = failAll(c, protocol.KindUnknown, w.unknownClass(p.Class, queue))
		if o := w.cfg.Observer; o != nil {
			for range c.Items {
				o.ItemDone(p.Class, 0, protocol.KindUnknown)
			}
		}
	}
	out, err := protocol.AppendChunkResult(nil, values, errs)
	if err != nil {
		w.log.Error("chunk outcome not encodable", "batch", c.Batch, "err", err)
		values, errs = failAll(c, protocol.KindResult, "outcome not encodable: "+err.Error())
		if out, err = protocol.AppendChunkResult(nil, values, errs); err != nil {
			w.log.Error("chunk outcome not encodable", "batch", c.Batch, "err", err)
		}
	}
	return out, n, failedItems(errs)
}

// failedItems counts the items errs covers (one error may stand for many).
func failedItems(errs []protocol.ItemError) int {
	n := 0
	for _, e := range errs {
		n += max(1, int(e.Count))
	}
	return n
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

// itemRun is one chunk's items being run. Runner goroutines take grains of
// consecutive items off a shared counter, so uneven items balance; the
// goroutine that called runItems watches them. When an item runs past its
// limit, the watcher abandons its runner and starts a new one that carries
// on with the rest of the grain. When the chunk's context ends (its batch was
// cancelled), it abandons every running item and returns at once.
type itemRun struct {
	w     *Worker
	ctx   context.Context
	h     Handler
	class string
	c     *protocol.Chunk
	lim   limit
	limit error         // lim.err()
	t0    time.Time     // tokens of limited calls are their deadlines, in ns since t0
	base  limitBase     // of the items' contexts
	tick  time.Duration // how often the watcher looks for items past their deadline
	until int64         // ctx's own deadline, in ns since t0; 0 for none
	grain int
	// inFlight, for a Concurrent function, counts its items running in this
	// process: an item takes a place before its call and gives it back after.
	inFlight chan struct{}
	obs      Observer     // the worker's, or nil
	started  atomic.Int64 // items started, counted only for prog.running
	prog     *chunkProgress
	outs     []itemsOut   // one per grain
	next     atomic.Int64 // the next grain to take
	live     atomic.Int64 // runners neither finished nor abandoned
	done     chan struct{}

	runners []*runner // the watcher's own

	mu  sync.Mutex
	all []*runner // every runner started, abandoned ones too: itemsDone adds up their counts
}

// runner runs items one at a time: the rest of its grain, then the next.
type runner struct {
	callState
	done  atomic.Int64 // items it gave an outcome, for progress; its own, so runners do not share a cache line
	token int64
	ctx   *limitCtx // of the running call, when it has a limit
	g     int       // its grain; -1 before the first
	lo    int       // the grain's first item
	i     int       // the next item to run
	hi    int       // the grain's end
	out   itemsOut
	buf   [8][]byte
}

// runItems runs h on every item of c and returns the JSON array of values
// (null for a failed item) and the errors. The items run in parallel on
// GOMAXPROCS goroutines; for a Concurrent function (inFlight not nil), on as
// many goroutines as it may run items at once, each item holding a place in
// inFlight while it runs. prog, if not nil, can tell how many items are done
// while it runs, and hears when all of them have started.
func (w *Worker) runItems(ctx context.Context, h Handler, class string, c *protocol.Chunk, lim limit, inFlight chan struct{}, prog *chunkProgress) ([]byte, []protocol.ItemError) {
	n := len(c.Items)
	if n == 0 {
		return []byte("[]"), nil
	}
	procs := min(runtime.GOMAXPROCS(0), n)
	if inFlight != nil {
		procs = min(cap(inFlight), n)
	}
	grain := max(1, n/(procs*8))
	r := &itemRun{
		w: w, ctx: ctx, h: h, class: class, c: c, lim: lim, t0: time.Now(), grain: grain, inFlight: inFlight,
		outs: make([]itemsOut, (n+grain-1)/grain), done: make(chan struct{}), obs: w.cfg.Observer,
	}
	if inFlight != nil && prog != nil && prog.running != nil {
		r.prog = prog
	}
	if lim.d > 0 {
		r.limit = lim.err()
		r.base = limitBase{parent: ctx, t0: r.t0, cause: r.limit}
		r.tick = min(max(lim.d/10, time.Millisecond), 100*time.Millisecond)
		if d, ok := ctx.Deadline(); ok {
			r.until = max(1, int64(d.Sub(r.t0)))
		}
	}
	r.live.Store(int64(procs))
	for range procs {
		r.start(&runner{g: -1})
	}
	if prog != nil {
		prog.run.Store(r)
	}
	if !r.wait() {
		return failAll(c, protocol.KindError, "not run: "+context.Cause(ctx).Error())
	}
	size := 2
	for _, o := range r.outs {
		size += len(o.values) + 1
	}
	values := make([]byte, 0, size)
	values = append(values, '[')
	var errs []protocol.ItemError
	for g, o := range r.outs {
		if g > 0 {
			values = append(values, ',')
		}
		values = append(values, o.values...)
		errs = append(errs, o.errs...)
	}
	return append(values, ']'), errs
}

func (r *itemRun) start(rn *runner) {
	r.runners = append(r.runners, rn)
	r.mu.Lock()
	r.all = append(r.all, rn)
	r.mu.Unlock()
	go r.run(rn)
}

// itemsDone is how many items have an outcome so far.
func (r *itemRun) itemsDone() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, rn := range r.all {
		n += rn.done.Load()
	}
	return n
}

// wait watches the runners until they are done, and reports true; or until
// the context ends, when it abandons the running items and reports false.
func (r *itemRun) wait() bool {
	var tick <-chan time.Time
	if r.lim.d > 0 {
		t := time.NewTicker(r.tick)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-r.done:
			return true
		case <-tick:
			r.timeouts()
		case <-r.ctx.Done():
			select {
			case <-r.done:
				return true
			default:
			}
			n := 0
			for _, rn := range r.runners {
				if tok := rn.state.Load(); tok > 0 && rn.abandon(tok) {
					r.w.runaways.add(&rn.rec, r.what(rn.i), r.lim)
					n++
				}
			}
			if n > 0 {
				r.w.log.Info("abandoned the running items of a cancelled chunk", "function", r.class, "batch", r.c.Batch,
					"items", n, "cause", context.Cause(r.ctx))
			}
			return false
		}
	}
}

// timeouts abandons the items past their deadline; a new runner goes on
// with the rest of each one's grain.
func (r *itemRun) timeouts() {
	now := int64(time.Since(r.t0))
	for k := 0; k < len(r.runners); k++ {
		rn := r.runners[k]
		tok := rn.state.Load()
		if tok <= 0 || now < tok || !rn.abandon(tok) {
			continue
		}
		// rn is stuck in its call, and its fields are ours now.
		rn.ctx.expire()
		index := r.c.Start + int64(rn.i)
		r.w.runaways.add(&rn.rec, r.what(rn.i), r.lim)
		r.w.log.Warn("item exceeded its time limit; abandoned it", "function", r.class, "batch", r.c.Batch, "index", index,
			"limit", r.lim.d, "set_by", r.lim.source)
		nr := &runner{g: rn.g, lo: rn.lo, i: rn.i + 1, hi: rn.hi}
		nr.done.Store(1) // the abandoned item has its outcome now
		// rn's call may still append to its buffer: copy what is done.
		nr.out.values = append(make([]byte, 0, len(rn.out.values)+8*(rn.hi-rn.i)), rn.out.values...)
		nr.out.values = append(nr.out.values, "null"...)
		nr.out.errs = append(rn.out.errs, protocol.ItemError{Index: index, Kind: protocol.KindTimeout, Error: r.limit.Error()})
		r.runners[k] = r.runners[len(r.runners)-1]
		r.runners = r.runners[:len(r.runners)-1]
		k--
		r.start(nr)
		if r.obs != nil {
			r.obs.ItemDone(r.class, r.lim.d, protocol.KindTimeout)
		}
	}
}

func (r *itemRun) what(i int) string {
	return fmt.Sprintf("%s item %d of batch %s", r.class, r.c.Start+int64(i), r.c.Batch)
}

// run runs items until no grain is left, or until its call is abandoned.
func (r *itemRun) run(rn *runner) {
	for {
		if rn.i == rn.hi {
			if rn.g >= 0 {
				r.outs[rn.g] = rn.out
			}
			g := int(r.next.Add(1) - 1)
			if g >= len(r.outs) {
				if r.live.Add(-1) == 0 {
					close(r.done)
				}
				return
			}
			rn.g, rn.lo, rn.i, rn.hi = g, g*r.grain, g*r.grain, min(len(r.c.Items), (g+1)*r.grain)
			rn.out = itemsOut{values: make([]byte, 0, 8*(rn.hi-rn.lo))}
		}
		if !r.item(rn) {
			return
		}
	}
}

// item runs item rn.i and reports false if it was abandoned meanwhile.
func (r *itemRun) item(rn *runner) bool {
	if r.inFlight != nil {
		if !r.take() {
			return r.runItem(rn) // the chunk's context ended: the item fails "not run"
		}
		defer func() { <-r.inFlight }()
	}
	return r.runItem(rn)
}

// take waits for a place in inFlight, and reports false, taking none, when
// the chunk's context ends first. Either way the item counts as started.
func (r *itemRun) take() bool {
	ok := true
	select {
	case r.inFlight <- struct{}{}:
	case <-r.ctx.Done():
		ok = false
	}
	if r.prog != nil && r.started.Add(1) == int64(len(r.c.Items)) {
		r.prog.allRunning()
	}
	return ok
}

// runItem runs item rn.i (see item).
func (r *itemRun) runItem(rn *runner) bool {
	if rn.i > rn.lo {
		rn.out.values = append(rn.out.values, ',')
	}
	var ierr *protocol.ItemError
	var t0 time.Time
	if r.obs != nil {
		t0 = time.Now()
	}
	args, err := chunkArgs(r.c, rn.i, rn.buf[:0], r.w.cfg.UseNumber)
	switch {
	case r.ctx.Err() != nil:
		ierr = &protocol.ItemError{Kind: protocol.KindError, Error: "not run: " + context.Cause(r.ctx).Error()}
	case err != nil:
		ierr = &protocol.ItemError{Kind: protocol.KindArguments, Error: err.Error()}
	default:
		var values []byte
		var cerr *protocol.ItemError
		if r.lim.d > 0 {
			dl := int64(time.Since(r.t0) + r.lim.d)
			if r.until > 0 {
				dl = min(dl, r.until)
			}
			rn.token = max(rn.token+1, dl) // tokens grow: one is never taken for the one before
			rn.ctx = &limitCtx{base: &r.base, dl: rn.token}
			rn.begin(rn.token)
			values, cerr = callItem(rn.ctx, r.h, args, rn.out.values)
			rn.ctx.release()
			if cerr != nil && int64(time.Since(r.t0)) >= rn.token {
				// It failed at its deadline, most likely because of it.
				cerr = &protocol.ItemError{Kind: protocol.KindTimeout, Error: r.limit.Error()}
			}
		} else {
			rn.token++
			rn.begin(rn.token)
			values, cerr = callItem(r.ctx, r.h, args, rn.out.values)
		}
		if !rn.end(rn.token, r.w.runaways) {
			return false
		}
		rn.out.values, ierr = values, cerr
	}
	if ierr != nil {
		ierr.Index = r.c.Start + int64(rn.i)
		rn.out.errs = append(rn.out.errs, *ierr)
		rn.out.values = append(rn.out.values, "null"...)
	}
	if r.obs != nil {
		kind := ""
		if ierr != nil {
			kind = ierr.Kind
		}
		r.obs.ItemDone(r.class, time.Since(t0), kind)
	}
	rn.i++
	rn.done.Add(1)
	return true
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
		return dst[:n], &protocol.ItemError{Kind: errorKind(err), Error: err.Error(), Arg: argPosition(err)}
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
