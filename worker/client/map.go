package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/redis/go-redis/v9"
)

// MapOptions tune Map. The zero value is ready to use.
type MapOptions struct {
	// Queue to send the chunks to. default: the function's name
	Queue string
	// ChunkSize is the number of items per chunk.
	// default: len(items)/(4·slots of the live workers on the queue), between 1 and 10,000
	ChunkSize int
	// TTL bounds how long a batch's keys outlive a client that died without
	// cleaning up; a waiting client keeps renewing it. default: 1h
	TTL time.Duration
	// NoWorkersAfter is how long Map waits without progress before it checks
	// that a live worker takes the queue. A batch that has never seen a live
	// worker then fails with ErrNoWorkers. default: 3s
	NoWorkersAfter time.Duration
	// WaitForWorkers is how long a batch that has seen a live worker on its
	// queue (or a completed chunk) waits for one to come back (a rolling
	// restart) before it fails with ErrNoWorkers, counted from the first
	// check that finds none. default: 60s
	WaitForWorkers time.Duration
	// StallTolerance is, when ctx has no deadline, how long Map keeps
	// retrying while Redis fails or does not answer (a restart, a stall, a
	// failover) before it returns the last error. With a deadline, Map
	// retries until the deadline. default: 60s
	StallTolerance time.Duration
	// ItemTimeout, when > 0, is sent with every chunk as the time limit of
	// each of its items (millisecond precision, rounded up): an item that
	// runs longer fails with a TaskError of kind "timeout".
	ItemTimeout time.Duration
	// MaxPayload is the largest chunk payload, in bytes, that Map sends; a
	// bigger chunk fails with ErrChunkTooLarge before anything is submitted.
	// default: the smallest limit the live workers on the queue advertise,
	// or, without them, the workers' default of 16 MiB
	MaxPayload int
	// Progress, when set, is called as the batch advances, with the items
	// done so far: those of completed chunks plus those done inside chunks
	// still running (workers report them while a chunk runs). It may be
	// called with the same count again; a chunk that runs twice may make
	// the count step back.
	Progress func(done, total int)
}

// ErrNoWorkers is returned by Map when no live worker takes the batch's queue.
var ErrNoWorkers = errors.New("no worker")

// ErrUnknownFunction is returned by Map, before it submits anything, when no
// live worker offers the function: none of those on the batch's queue, or,
// when no live worker takes that queue, none at all.
var ErrUnknownFunction = errors.New("unknown function")

// ErrBatchLost is returned by Map when the batch's keys vanished from Redis
// while Map waited for it.
var ErrBatchLost = errors.New("batch lost")

// ErrChunkTooLarge is returned by Map, before it submits anything, when a
// chunk's payload is larger than MapOptions.MaxPayload, or its ChunkSize
// more than a live worker on the queue takes (its -max-chunk-items).
var ErrChunkTooLarge = errors.New("chunk too large")

// TaskError is the failure of one item of a batch.
type TaskError struct {
	Index    int64  // the item's index
	Function string // the function's name
	Kind     string // error, panic, arguments, unknown_function, result, timeout, requeue_limit or chunk_too_large
	Message  string // the Go error text
	Stack    string // the Go stack, for a panic
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("%s: item %d: %s (%s)", e.Function, e.Index, e.Message, e.Kind)
}

// Map runs function over items as one gomap batch and returns the items'
// results in order, as JSON. An item that is a []any is the function's
// positional arguments; any other item is its only argument. The first item
// that fails ends Map with a *TaskError, after the rest of the batch is
// cancelled; so does ctx ending, with ctx's error.
//
// Map retries transient Redis failures (a dropped connection, a restart, a
// stall, a failover) until ctx's deadline or, without one, for
// MapOptions.StallTolerance. Every round trip may be sent again: an outcome
// whose reply was lost is asked for again, so each arrives exactly once, and
// chunks are queued once. On a client from Dial, ctx's deadline bounds Map
// even while Redis does not answer. A batch whose keys vanish from Redis
// ends Map with ErrBatchLost within about a second. Workers that go away
// after the batch has seen one are waited for, up to
// MapOptions.WaitForWorkers.
func (c *Client) Map(ctx context.Context, function string, items []any, o *MapOptions) ([]jsontext.Value, error) {
	if o == nil {
		o = &MapOptions{}
	}
	b, err := c.newBatch(ctx, function, len(items), *o)
	if err != nil {
		return nil, err
	}
	payloads, err := b.encode(items)
	if err != nil {
		return nil, err
	}
	if err := b.submit(ctx, payloads); err != nil {
		return nil, errors.Join(err, b.cancel(ctx))
	}
	b.backups = newBackups(slices.Collect(maps.Keys(b.pending)), time.Now())
	out, err := b.collect(ctx)
	if err != nil {
		return nil, errors.Join(err, b.cancel(ctx))
	}
	return out, b.finish(ctx)
}

// MapAs is Map with every result decoded into R.
func MapAs[R any](ctx context.Context, c *Client, function string, items []any, o *MapOptions) ([]R, error) {
	vals, err := c.Map(ctx, function, items, o)
	if err != nil {
		return nil, err
	}
	out := make([]R, len(vals))
	for i, v := range vals {
		if err := json.Unmarshal(v, &out[i]); err != nil {
			return nil, fmt.Errorf("result %d: %w", i, err)
		}
	}
	return out, nil
}

type batch struct {
	c           *Client
	id          string
	function    string
	queue       string
	o           MapOptions
	n           int
	pending     map[int64]string // start → payload of chunks not yet received
	sizes       map[int64]int
	acks        []any     // the starts the last collect reply brought, acknowledged by the next
	unsent      []any     // the arguments of the last SubmitScript call, sent with the first take
	completed   int       // items of the chunks received
	running     int64     // items done inside chunks still running, as of the last collect reply
	seen        bool      // a live worker took the queue at some point
	absent      time.Time // when a check first found no live worker, since the last that found one
	elsewhere   []string  // the other queues of live workers that offer the function
	limitFrom   string    // where o.MaxPayload came from, for messages
	shards      []string  // the queue's shards the chunks go round (one Redis: the queue alone)
	backups     *backups  // chunk times, for backup chunks (backup.go)
	unreachable bool      // Redis failed for StallTolerance: a cancel gets only cancelGrace
	meta        string
	results     string
	done        string
	taken       string
}

// newBatch fills in o's defaults and checks, before anything is submitted,
// that the workers on the queue offer the function.
func (c *Client) newBatch(ctx context.Context, function string, n int, o MapOptions) (*batch, error) {
	if o.Queue == "" {
		o.Queue = function
	}
	if err := protocol.CheckQueueName(o.Queue); err != nil {
		return nil, err
	}
	if o.TTL <= 0 {
		o.TTL = time.Hour
	}
	if o.NoWorkersAfter <= 0 {
		o.NoWorkersAfter = 3 * time.Second
	}
	if o.WaitForWorkers <= 0 {
		o.WaitForWorkers = time.Minute
	}
	if o.StallTolerance <= 0 {
		o.StallTolerance = time.Minute
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(raw[:])
	b := &batch{
		c: c, id: id, function: function, queue: o.Queue, o: o, n: n,
		pending: map[int64]string{}, sizes: map[int64]int{},
		meta: c.keys.BatchMeta(id), results: c.keys.BatchResults(id), done: c.keys.BatchDone(id),
		taken: c.keys.BatchTaken(id),
	}
	var all []protocol.Process
	err := b.retry(ctx, "reading the workers", func(ctx context.Context) error {
		var err error
		all, err = c.Workers(ctx, "")
		return err
	})
	if err != nil {
		return nil, err
	}
	offers := func(p protocol.Process) bool { return slices.Contains(p.Functions, function) }
	onQueue := slices.DeleteFunc(slices.Clone(all), func(p protocol.Process) bool { return !slices.Contains(p.Queues, o.Queue) })
	switch {
	case len(onQueue) > 0 && !slices.ContainsFunc(onQueue, offers):
		return nil, b.unknownFunction(onQueue, fmt.Sprintf("none of the %d live workers on queue %q", len(onQueue), o.Queue))
	case len(all) > 0 && !slices.ContainsFunc(all, offers):
		return nil, b.unknownFunction(all, fmt.Sprintf("no live worker takes queue %q, and none of the %d live workers on other queues", o.Queue, len(all)))
	case len(onQueue) > 0:
		b.seen = true
	}
	for _, p := range all {
		if offers(p) {
			b.elsewhere = append(b.elsewhere, p.Queues...)
		}
	}
	slices.Sort(b.elsewhere)
	b.elsewhere = slices.Compact(b.elsewhere)
	if b.o.ChunkSize <= 0 {
		slots := 0
		for _, p := range onQueue {
			slots += max(p.Concurrency, 1)
		}
		b.o.ChunkSize = AutoChunkSize(n, slots)
	}
	for _, p := range onQueue {
		if p.MaxItems > 0 && b.o.ChunkSize > p.MaxItems && n > p.MaxItems {
			return nil, fmt.Errorf("%w: ChunkSize %d is more items than worker %s takes in a chunk (-max-chunk-items %d); use a smaller ChunkSize",
				ErrChunkTooLarge, b.o.ChunkSize, p.ID, p.MaxItems)
		}
	}
	// On a Redis Cluster, chunks go round the shards every live worker on
	// the queue serves (docs/protocol.md, "Sharded queues").
	b.shards = []string{o.Queue}
	if _, cluster := c.rdb.(*redis.ClusterClient); cluster && len(onQueue) > 0 {
		n := protocol.MaxShards
		for _, p := range onQueue {
			n = min(n, max(p.Shards, 1))
		}
		b.shards = c.keys.Shards(o.Queue, n)
	}
	b.limitFrom = "MapOptions.MaxPayload"
	if b.o.MaxPayload <= 0 {
		b.o.MaxPayload, b.limitFrom = protocol.DefaultMaxPayload, "the workers' default max payload"
		if limits := maxPayloads(onQueue); len(limits) > 0 {
			b.o.MaxPayload, b.limitFrom = slices.Min(limits), "the max payload of the workers on the queue"
		}
	}
	return b, nil
}

// maxPayloads are the payload limits procs advertise (older workers do not).
func maxPayloads(procs []protocol.Process) []int {
	var limits []int
	for _, p := range procs {
		if p.MaxPayload > 0 {
			limits = append(limits, p.MaxPayload)
		}
	}
	return limits
}

func (b *batch) unknownFunction(procs []protocol.Process, who string) error {
	var offered []string
	for _, p := range procs {
		offered = append(offered, p.Functions...)
	}
	slices.Sort(offered)
	return fmt.Errorf("%w %q: %s in namespace %q offers it; they offer: %s (register it with the workers and restart them)",
		ErrUnknownFunction, b.function, who, b.c.keys.NS, strings.Join(slices.Compact(offered), ", "))
}

// AutoChunkSize is the chunk size for n items and the given number of slots
// (jobs the live worker processes run at once, added up): about four chunks
// per slot, at most 10,000 items each.
func AutoChunkSize(n, slots int) int {
	return min(max(1, (n+4*max(slots, 1)-1)/(4*max(slots, 1))), 10_000)
}

// encode cuts items into chunk payloads, refusing any larger than MaxPayload.
func (b *batch) encode(items []any) ([]any, error) {
	var limitMS int64
	if b.o.ItemTimeout > 0 {
		limitMS = int64((b.o.ItemTimeout + time.Millisecond - 1) / time.Millisecond)
	}
	var payloads []any
	for lo := 0; lo < len(items); lo += b.o.ChunkSize {
		hi := min(lo+b.o.ChunkSize, len(items))
		enc, err := protocol.Marshal(items[lo:hi])
		if err != nil {
			return nil, fmt.Errorf("items %d–%d: %w", lo, hi-1, err)
		}
		p, err := protocol.AppendChunk(nil, b.function, b.id, int64(lo), enc, limitMS)
		if err != nil {
			return nil, err
		}
		if len(p) > b.o.MaxPayload {
			return nil, fmt.Errorf("%w: the chunk of items %d–%d is %d bytes, over the limit of %d (%s): use a smaller MapOptions.ChunkSize (now %d)",
				ErrChunkTooLarge, lo, hi-1, len(p), b.o.MaxPayload, b.limitFrom, b.o.ChunkSize)
		}
		b.pending[int64(lo)] = string(p)
		b.sizes[int64(lo)] = hi - lo
		payloads = append(payloads, p)
	}
	return payloads, nil
}

// submitGroup bounds the payloads and bytes of one SubmitScript call, so a
// big batch neither blocks Redis long nor needs much of its memory at once.
const (
	submitGroupChunks = 1000
	submitGroupBytes  = 8 << 20
)

// submit creates the batch's meta key and pushes its chunks. On one Redis
// it does so with protocol.SubmitScript, in groups, each safe to send again;
// the last group goes in the first take's round trip, in front of the wait
// (so a small batch's submit, wait and collect are one round trip). A worker
// skips a chunk whose batch has no meta key, so meta must exist before the
// first chunk does; a Redis Cluster keeps meta and the queue on different
// nodes, so there meta is written first, on its own, and the chunks after
// (sent again after a lost reply, a chunk may then be queued twice and run
// twice, which its outcome's start index makes harmless).
func (b *batch) submit(ctx context.Context, payloads []any) error {
	if len(payloads) == 0 {
		return nil // nothing to wait for: Map returns at once
	}
	if _, cluster := b.c.rdb.(*redis.ClusterClient); cluster {
		return b.submitCluster(ctx, payloads)
	}
	keys := []string{b.meta, b.c.keys.Queues(), b.c.keys.Queue(b.queue)}
	created := time.Now().Unix()
	for offset := 0; offset < len(payloads); {
		end, size := offset, 0
		for end < len(payloads) && end-offset < submitGroupChunks {
			if size += len(payloads[end].([]byte)); end > offset && size > submitGroupBytes {
				break
			}
			end++
		}
		args := []any{b.o.TTL.Milliseconds(), b.function, b.queue, b.n, created, offset, "go"}
		args = append(args, payloads[offset:end]...)
		if end == len(payloads) {
			b.unsent = args
			return nil
		}
		err := b.retry(ctx, "submitting", func(ctx context.Context) error {
			r, err := b.c.rdb.Eval(ctx, protocol.SubmitScript, keys, args...).Result()
			if err != nil {
				return err
			}
			if r == "lost" {
				return b.lostError()
			}
			return nil
		})
		if err != nil {
			return err
		}
		offset = end
	}
	return nil
}

func (b *batch) submitCluster(ctx context.Context, payloads []any) error {
	err := b.retry(ctx, "submitting", func(ctx context.Context) error {
		_, err := b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.HSet(ctx, b.meta, "function", b.function, "queue", b.queue, "items", b.n,
				"created", time.Now().Unix(), "client", "go", "shards", len(b.shards))
			pipe.PExpire(ctx, b.meta, b.o.TTL)
			return nil
		})
		return err
	})
	if err != nil {
		return err
	}
	return b.retry(ctx, "submitting", func(ctx context.Context) error {
		_, err := b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			names := make([]any, len(b.shards))
			for i, q := range b.shards {
				names[i] = q
			}
			pipe.SAdd(ctx, b.c.keys.Queues(), names...)
			for s, q := range b.shards {
				var mine []any
				for i := s; i < len(payloads); i += len(b.shards) {
					mine = append(mine, payloads[i])
				}
				if len(mine) > 0 {
					pipe.RPush(ctx, b.c.keys.Queue(q), mine...)
				}
			}
			return nil
		})
		return err
	})
}

// collect waits for every chunk, blocking on the batch's done list.
func (b *batch) collect(ctx context.Context) ([]jsontext.Value, error) {
	out := make([]jsontext.Value, b.n)
	lastProgress := time.Now()
	for len(b.pending) > 0 {
		got := 0
		block := true
		err := b.retry(ctx, "waiting for its chunks", func(ctx context.Context) error {
			var err error
			got, err = b.take(ctx, out, block)
			// Sent again, the same acknowledgements bring back the starts a
			// lost reply held at once: no need to block for more.
			block = false
			return err
		})
		if err != nil {
			return nil, err
		}
		if b.o.Progress != nil {
			b.o.Progress(b.completed+int(b.running), b.n)
		}
		if len(b.pending) > 0 && b.backups != nil {
			err := b.retry(ctx, "pushing late chunks again", b.pushBackups)
			var refused redis.Error
			switch {
			case errors.As(err, &refused) && !errors.Is(err, redis.Nil):
				b.backups = nil // Redis refused them (a user without +lpos): no backup chunks for this batch
			case err != nil:
				return nil, err
			}
		}
		if got > 0 {
			lastProgress = time.Now()
			b.seen, b.absent = true, time.Time{}
		} else if time.Since(lastProgress) > b.o.NoWorkersAfter {
			live, err := b.checkWorkers(ctx)
			if err != nil {
				return nil, err
			}
			if live {
				lastProgress = time.Now() // check again after NoWorkersAfter; else after the next take
			}
		}
	}
	return out, nil
}

// noRetry marks a command that go-redis must not send again by itself.
type noRetry struct{ *redis.Cmd }

func (noRetry) NoRetry() bool { return true }

// submitWait bounds the block of a take that carries a submit: should Redis
// refuse the submit (a missing permission), Map fails within it, not after a
// whole second. A batch whose chunks take longer pays one more round trip.
const submitWait = 100 * time.Millisecond

// take blocks until a chunk completes (or a second passes) and stores what
// completed, in one round trip: the SubmitScript call not sent yet, if any,
// then a BLMOVE off the done list with the collect script pipelined behind
// it, acknowledging what the last reply brought. With block false it runs
// the collect script without the BLMOVE.
func (b *batch) take(ctx context.Context, out []jsontext.Value, block bool) (int, error) {
	args := append([]any{1000, b.o.TTL.Milliseconds()}, b.acks...)
	var res, sub *redis.Cmd
	_, err := b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		if b.unsent != nil {
			keys := []any{"eval", protocol.SubmitScript, 3, b.meta, b.c.keys.Queues(), b.c.keys.Queue(b.queue)}
			sub = redis.NewCmd(ctx, append(keys, b.unsent...)...)
			sub.SetFirstKeyPos(3)
			// Not sent again by go-redis: once its reply came, it ran, and sent again after
			// Redis restarted without persistence it would bring a lost batch back.
			if err := pipe.Process(ctx, noRetry{sub}); err != nil {
				return err
			}
		}
		switch {
		case block && sub != nil: // go-redis rounds BLMove's timeout up to whole seconds
			pipe.Do(ctx, "BLMOVE", b.done, b.taken, "LEFT", "RIGHT", submitWait.Seconds())
		case block:
			pipe.BLMove(ctx, b.done, b.taken, "LEFT", "RIGHT", time.Second)
		}
		res = pipe.Eval(ctx, protocol.CollectScript, []string{b.done, b.results, b.meta, b.taken}, args...)
		return nil
	})
	if sub != nil {
		// A reply that was read ran, whatever became of the rest of the round trip (go-redis
		// then sets the round trip's error on every command, so its value is what tells).
		switch v := sub.Val(); {
		case v == "lost":
			return 0, b.lostError()
		case v != nil:
			b.unsent = nil
		}
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	flat, err := res.Slice()
	if err != nil {
		return 0, err
	}
	if len(flat) == 1 && flat[0] == "lost" {
		return 0, b.lostError()
	}
	running, isInt := flat[0].(int64)
	if len(flat)%2 == 0 || !isInt {
		return 0, fmt.Errorf("batch %s: the collect script returned %d values, not a count then start and outcome pairs", b.id, len(flat))
	}
	b.running = running
	acks := make([]any, 0, len(flat)/2)
	got := 0
	for i := 1; i+1 < len(flat); i += 2 {
		startStr, isStr := flat[i].(string)
		start, err := strconv.ParseInt(startStr, 10, 64)
		if !isStr || err != nil {
			return got, fmt.Errorf("batch %s: bad chunk start %v", b.id, flat[i])
		}
		acks = append(acks, startStr)
		outcome, ok := flat[i+1].(string)
		if _, waiting := b.pending[start]; !waiting || !ok {
			continue // a chunk that ran twice
		}
		if err := b.store(start, outcome, out); err != nil {
			return got, err
		}
		delete(b.pending, start)
		b.completed += b.sizes[start]
		if b.backups != nil {
			b.backups.completed(start, time.Now())
		}
		got++
	}
	b.acks = acks
	return got, nil
}

func (b *batch) store(start int64, outcome string, out []jsontext.Value) error {
	r, err := protocol.DecodeChunkResult([]byte(outcome))
	if err != nil {
		return fmt.Errorf("batch %s: chunk %d: %w", b.id, start, err)
	}
	if r.Values == nil && len(r.Errors) > 0 { // every item failed, in the compact form: the first error is enough
		e := r.Errors[0]
		return &TaskError{Index: e.Index, Function: b.function, Kind: e.Kind, Message: e.Error, Stack: e.Stack}
	}
	if len(r.Values) != b.sizes[start] {
		return fmt.Errorf("batch %s: chunk %d has %d results for %d items", b.id, start, len(r.Values), b.sizes[start])
	}
	if len(r.Errors) > 0 {
		e := r.Errors[0]
		return &TaskError{Index: e.Index, Function: b.function, Kind: e.Kind, Message: e.Error, Stack: e.Stack}
	}
	copy(out[start:], r.Values)
	return nil
}

func (b *batch) lostError() error {
	return fmt.Errorf("%w: Redis lost the keys of batch %s of %s (it restarted without persistence, was flushed, failed over to a replica without them, or the batch's TTL of %v passed while this client was away); run the batch again",
		ErrBatchLost, b.id, b.function, b.o.TTL)
}

// checkWorkers says whether a live worker takes the queue. It fails with
// ErrNoWorkers when none does: at once for a batch that never saw one, after
// WaitForWorkers of absence for a batch that did (its workers may be
// restarting).
func (b *batch) checkWorkers(ctx context.Context) (bool, error) {
	var procs []protocol.Process
	err := b.retry(ctx, "reading the workers", func(ctx context.Context) error {
		var err error
		procs, err = b.c.Workers(ctx, b.queue)
		return err
	})
	if err != nil {
		return false, err
	}
	if len(procs) > 0 {
		b.seen, b.absent = true, time.Time{}
		return true, nil
	}
	if !b.seen {
		hint := ""
		if len(b.elsewhere) > 0 {
			hint = fmt.Sprintf(", or send the batch to a queue of the live workers that offer %s (MapOptions.Queue): %s",
				b.function, strings.Join(b.elsewhere, ", "))
		}
		return false, fmt.Errorf("%w takes queue %q in namespace %q: start one with: gomap-worker -queues %s%s",
			ErrNoWorkers, b.queue, b.c.keys.NS, b.queue, hint)
	}
	if b.absent.IsZero() {
		b.absent = time.Now()
	}
	if away := time.Since(b.absent); away >= b.o.WaitForWorkers {
		return false, fmt.Errorf("%w has taken queue %q in namespace %q for %v (MapOptions.WaitForWorkers), %d of %d chunks not done: start one with: gomap-worker -queues %s",
			ErrNoWorkers, b.queue, b.c.keys.NS, away.Round(time.Millisecond), len(b.pending), len(b.sizes), b.queue)
	}
	return false, nil
}

// cancelTimeout bounds a cancel while ctx is still live; cancelGrace is what
// a cancel gets after ctx ended, so Map returns soon after its deadline, or
// after Redis failed for StallTolerance.
const (
	cancelTimeout = 5 * time.Second
	cancelGrace   = 100 * time.Millisecond
)

// cancel removes the chunks still queued and the batch's keys; workers skip
// chunks they already took. When Redis does not answer in time, the cancel
// goes on in the background (see background) and cancel returns nil; should
// that fail too, workers skip the batch's chunks once its keys expire.
func (b *batch) cancel(ctx context.Context) error {
	d := cancelTimeout
	if ctx.Err() != nil || b.unreachable {
		d = cancelGrace
	}
	cctx, stop := context.WithTimeout(context.WithoutCancel(ctx), d)
	defer stop()
	err := b.retry(cctx, "cancelling", b.cancelOnce)
	if err != nil && cctx.Err() != nil {
		b.c.bg.cancel(b)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w (its keys expire within %v; workers skip its chunks then)", err, b.o.TTL)
	}
	return nil
}

func (b *batch) cancelOnce(ctx context.Context) error {
	_, err := b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Del(ctx, b.meta, b.results, b.done, b.taken)
		for start, p := range b.pending {
			pipe.LRem(ctx, b.shardKey(start), 0, p)
		}
		return nil
	})
	return err
}

// shardKey is the queue key the chunk that starts at start was pushed to:
// chunk k goes to shard k mod the number of shards.
func (b *batch) shardKey(start int64) string {
	k := int(start / int64(b.o.ChunkSize))
	return b.c.keys.Queue(b.shards[k%len(b.shards)])
}

// ownTimeout replaces err, when the context of a cleanup's own time limit
// ended, by an error that does not look like the end of the caller's ctx.
func ownTimeout(ctx context.Context, err error, d time.Duration) error {
	if ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("%w within %v: %s", errNoAnswer, d, err)
}

// finish deletes the keys of a batch whose every chunk was received.
func (b *batch) finish(ctx context.Context) error {
	own := ctx.Err() != nil
	if own {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(context.WithoutCancel(ctx), cancelGrace)
		defer stop()
	}
	err := b.retry(ctx, "deleting its keys", func(ctx context.Context) error {
		if b.backups == nil || len(b.backups.copies) == 0 {
			return b.c.rdb.Del(ctx, b.meta, b.results, b.done, b.taken).Err()
		}
		_, err := b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Del(ctx, b.meta, b.results, b.done, b.taken)
			for start, p := range b.backups.copies { // copies still queued: no worker needs to skip them
				pipe.LRem(ctx, b.shardKey(start), 0, p)
			}
			return nil
		})
		return err
	})
	if err != nil {
		if own {
			err = ownTimeout(ctx, err, cancelGrace)
		}
		return fmt.Errorf("batch %s: every result arrived, but its keys were left to expire after %v: %w", b.id, b.o.TTL, err)
	}
	return nil
}
