package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
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
	// default: len(items)/(4·workers), between 1 and 10,000
	ChunkSize int
	// TTL bounds how long a batch's keys outlive a client that died without
	// cleaning up; a waiting client keeps renewing it. default: 1h
	TTL time.Duration
	// NoWorkersAfter is how long Map waits without progress before it checks
	// that a live worker takes the queue, failing with ErrNoWorkers if none
	// does. default: 3s
	NoWorkersAfter time.Duration
}

// ErrNoWorkers is returned by Map when no live worker takes the batch's queue.
var ErrNoWorkers = errors.New("no worker")

// TaskError is the failure of one item of a batch.
type TaskError struct {
	Index    int64  // the item's index
	Function string // the function's name
	Kind     string // error, panic, arguments, unknown_function or result
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
func (c *Client) Map(ctx context.Context, function string, items []any, o *MapOptions) ([]jsontext.Value, error) {
	if o == nil {
		o = &MapOptions{}
	}
	b, err := c.newBatch(ctx, function, len(items), *o)
	if err != nil {
		return nil, err
	}
	if err := b.submit(ctx, items); err != nil {
		return nil, errors.Join(err, b.cancel())
	}
	out, err := b.collect(ctx)
	if err != nil {
		return nil, errors.Join(err, b.cancel())
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
	c        *Client
	id       string
	function string
	queue    string
	o        MapOptions
	n        int
	pending  map[int64]string // start → payload of chunks not yet done
	sizes    map[int64]int
	meta     string
	results  string
	done     string
	taken    string
	keysGone bool // the collect script deleted the batch's keys with its last chunk
}

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
	if o.ChunkSize <= 0 {
		procs, err := c.Workers(ctx, o.Queue)
		if err != nil {
			return nil, err
		}
		o.ChunkSize = AutoChunkSize(n, len(procs))
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(raw[:])
	return &batch{
		c: c, id: id, function: function, queue: o.Queue, o: o, n: n,
		pending: map[int64]string{}, sizes: map[int64]int{},
		meta: c.keys.BatchMeta(id), results: c.keys.BatchResults(id), done: c.keys.BatchDone(id),
		taken: c.keys.BatchTaken(id),
	}, nil
}

// AutoChunkSize is the chunk size for n items and the given number of worker
// processes: about four chunks per process, at most 10,000 items each.
func AutoChunkSize(n, workers int) int {
	return min(max(1, (n+4*max(workers, 1)-1)/(4*max(workers, 1))), 10_000)
}

func (b *batch) submit(ctx context.Context, items []any) error {
	var payloads []any
	for lo := 0; lo < len(items); lo += b.o.ChunkSize {
		hi := min(lo+b.o.ChunkSize, len(items))
		enc, err := protocol.Marshal(items[lo:hi])
		if err != nil {
			return fmt.Errorf("items %d–%d: %w", lo, hi-1, err)
		}
		p, err := protocol.AppendChunk(nil, b.function, b.id, int64(lo), enc)
		if err != nil {
			return err
		}
		b.pending[int64(lo)] = string(p)
		b.sizes[int64(lo)] = hi - lo
		payloads = append(payloads, p)
	}
	meta := func(pipe redis.Pipeliner) {
		pipe.HSet(ctx, b.meta, "function", b.function, "queue", b.queue, "items", b.n,
			"created", time.Now().Unix(), "client", "go")
		pipe.PExpire(ctx, b.meta, b.o.TTL)
	}
	// A worker skips a chunk whose batch has no meta key, so meta must exist
	// before the first chunk does. One connection runs a pipeline in order;
	// a cluster pipeline runs on several nodes at once, so there meta goes first.
	_, cluster := b.c.rdb.(*redis.ClusterClient)
	if cluster {
		if _, err := b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error { meta(pipe); return nil }); err != nil {
			return err
		}
	}
	_, err := b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		if !cluster {
			meta(pipe)
		}
		if len(payloads) > 0 {
			pipe.SAdd(ctx, b.c.keys.Queues(), b.queue)
			pipe.RPush(ctx, b.c.keys.Queue(b.queue), payloads...)
		}
		return nil
	})
	return err
}

// collect waits for every chunk, blocking on the batch's done list.
func (b *batch) collect(ctx context.Context) ([]jsontext.Value, error) {
	out := make([]jsontext.Value, b.n)
	lastProgress := time.Now()
	for len(b.pending) > 0 {
		got, err := b.take(ctx, out)
		if err != nil {
			return nil, err
		}
		if got > 0 {
			lastProgress = time.Now()
		} else if time.Since(lastProgress) > b.o.NoWorkersAfter {
			if err := b.checkWorkers(ctx); err != nil {
				return nil, err
			}
			lastProgress = time.Now()
		}
	}
	return out, nil
}

// take blocks until a chunk completes (or a second passes) and stores what
// completed, in one round trip: a BLMOVE off the done list with the collect
// script pipelined behind it, told the starts still awaited (when few) so the
// round trip that brings the last chunk also deletes the batch's keys.
func (b *batch) take(ctx context.Context, out []jsontext.Value) (int, error) {
	args := []any{1000, b.o.TTL.Milliseconds()}
	if len(b.pending) <= 64 {
		for start := range b.pending {
			args = append(args, start)
		}
	}
	var res *redis.Cmd
	_, err := b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.BLMove(ctx, b.done, b.taken, "LEFT", "RIGHT", time.Second)
		res = pipe.Eval(ctx, protocol.CollectScript, []string{b.done, b.results, b.meta, b.taken}, args...)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, err
	}
	flat, err := res.Slice()
	if err != nil {
		return 0, err
	}
	if len(flat)%2 == 1 { // ends with "finished"
		flat, b.keysGone = flat[:len(flat)-1], true
	}
	got := 0
	for i := 0; i+1 < len(flat); i += 2 {
		startStr, isStr := flat[i].(string)
		outcome, ok := flat[i+1].(string)
		start, err := strconv.ParseInt(startStr, 10, 64)
		if !isStr || err != nil {
			return got, fmt.Errorf("batch %s: bad chunk start %v", b.id, flat[i])
		}
		if _, waiting := b.pending[start]; !waiting || !ok {
			continue // a chunk that ran twice
		}
		if err := b.store(start, outcome, out); err != nil {
			return got, err
		}
		delete(b.pending, start)
		got++
	}
	return got, nil
}

func (b *batch) store(start int64, outcome string, out []jsontext.Value) error {
	r, err := protocol.DecodeChunkResult([]byte(outcome))
	if err != nil {
		return fmt.Errorf("batch %s: chunk %d: %w", b.id, start, err)
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

func (b *batch) checkWorkers(ctx context.Context) error {
	procs, err := b.c.Workers(ctx, b.queue)
	if err != nil {
		return err
	}
	if len(procs) == 0 {
		return fmt.Errorf("%w takes queue %q in namespace %q: start one with: gomap-worker -queues %s",
			ErrNoWorkers, b.queue, b.c.keys.NS, b.queue)
	}
	return nil
}

// cancel removes the chunks still queued and the batch's keys; workers skip
// chunks they already took.
func (b *batch) cancel() error {
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_, err := b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Del(ctx, b.meta, b.results, b.done, b.taken)
		for _, p := range b.pending {
			pipe.LRem(ctx, b.c.keys.Queue(b.queue), 1, p)
		}
		return nil
	})
	return err
}

func (b *batch) finish(ctx context.Context) error {
	if b.keysGone {
		return nil
	}
	return b.c.rdb.Del(context.WithoutCancel(ctx), b.meta, b.results, b.done, b.taken).Err()
}
