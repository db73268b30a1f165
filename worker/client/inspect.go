package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/redis/go-redis/v9"
)

// The inspector is the Go counterpart of gomap/_inspect.py: the same queries
// and actions on the same keys (docs/protocol.md), so that Go tools see and
// steer a pool as `gomap status` and `gomap failed …` do. It reads what any
// Resque worker writes (workers, worker:<id>, workers:heartbeat, failed,
// stat:*), so Ruby or Node workers sharing the Redis show up beside gomap's
// worker processes.

const (
	// InspectTimeout bounds one query or action of an Inspector, retries
	// of transient Redis errors included (a shorter deadline of its ctx wins).
	InspectTimeout = 5 * time.Second
	// FailedScan is the most failed entries a filter reads (in pages).
	FailedScan = 100_000
	// StaleAfter is how long a Resque worker may go without a heartbeat
	// before it counts as dead (Resque's PRUNE_INTERVAL).
	StaleAfter = 300 * time.Second
	// failedPage is how many failed entries a filtered read takes per round trip.
	failedPage = 1000
)

// ErrNoFailedJob is returned for a failed-job index with no entry.
var ErrNoFailedJob = errors.New("no failed job")

// ErrNotRetryable is returned for a failed entry without a JSON payload
// object, queue and class to push again.
var ErrNotRetryable = errors.New("failed job cannot be retried")

// ErrNoBatch is returned by CancelBatch for a batch that is not in Redis.
var ErrNoBatch = errors.New("no batch")

// ChangedError is returned by Remove when the failed entry at Index is no
// longer the one read (the list moved meanwhile): nothing was removed.
type ChangedError struct {
	Index int64
}

func (e *ChangedError) Error() string {
	return fmt.Sprintf("client: failed job %d changed while it was being removed: list the failed jobs again and remove it by its new index", e.Index)
}

// Inspector queries and steers the pool a Client talks to. Get one with
// Client.Inspect.
type Inspector struct {
	rdb         redis.UniversalClient
	keys        protocol.Keys
	timeout     time.Duration
	now         func() time.Time
	remove      *redis.Script
	markRetried *redis.Script
}

// Inspect returns the inspector of the pool c talks to.
func (c *Client) Inspect() *Inspector {
	return &Inspector{rdb: c.rdb, keys: c.keys, timeout: InspectTimeout, now: time.Now,
		remove: redis.NewScript(protocol.RemoveFailedScript), markRetried: redis.NewScript(protocol.MarkRetriedScript)}
}

// Queue is a Resque queue, how many jobs wait on it, and whether it is
// paused (gomap workers take no new job from a paused queue).
type Queue struct {
	Name   string
	Length int64
	Paused bool
}

// Process is a gomap worker process, from its record in gomap:workers.
type Process struct {
	ID        string
	Host      string
	PID       int
	Queues    []string
	Functions []string
	Slots     int      // jobs it runs at once (-concurrency)
	Cores     int      // GOMAXPROCS; 0 from older workers
	Alive     bool     // its alive key exists: it sent a heartbeat within dead_after
	Paused    []string // the paused queues it has stopped taking jobs from (its record's "paused")
}

// ResqueWorker is one Resque worker id (a gomap slot, or a Ruby/Node
// worker) as Resque's registry shows it.
type ResqueWorker struct {
	ID           string
	Host         string
	PID          string
	Queues       []string
	Heartbeat    string        // the last heartbeat as written; "" when none
	HeartbeatAt  time.Time     // zero when there is none or it cannot be read
	HeartbeatAge time.Duration // since HeartbeatAt, by this machine's clock; 0 when HeartbeatAt is zero
	Job          *WorkerJob    // what it works on; nil when idle
	Gomap        bool          // a slot of a live gomap worker process
}

// Stale says whether w went without a heartbeat for longer than StaleAfter:
// a dead worker that Resque would prune.
func (w ResqueWorker) Stale() bool { return !w.HeartbeatAt.IsZero() && w.HeartbeatAge > StaleAfter }

// WorkerJob is a worker:<id> record: the job a Resque worker works on.
type WorkerJob struct {
	Queue   string
	RunAt   string
	Payload jsontext.Value // the job's payload; nil when the record has none
}

// Class is the class (function) of the job's payload; "" when unknown.
func (j WorkerJob) Class() string {
	ms, ok := objectMembers(j.Payload)
	if !ok {
		return ""
	}
	return memberText(ms, "class")
}

// Stats are the pool's counters: Resque's stat:processed and stat:failed,
// and gomap's requeued (jobs the reaper put back on their queues) and
// pruned (dead Resque worker ids the reaper removed from the registry).
type Stats struct {
	Processed int64
	Failed    int64
	Requeued  int64
	Pruned    int64
}

// Failed is one entry of Resque's failed list, at Index.
type Failed struct {
	Index     int64
	FailedAt  string
	Queue     string
	Class     string
	Args      []jsontext.Value
	Exception string
	Error     string
	Backtrace []string
	Worker    string
	RetriedAt string
	Payload   jsontext.Value // the payload object; nil when the entry holds none (it cannot be retried)
	Stored    string         // the entry as it is in the list
}

// Matches says whether f matches every field where gives.
func (f Failed) Matches(where FailedFilter) bool {
	return (where.Class == "" || f.Class == where.Class) &&
		(where.Queue == "" || f.Queue == where.Queue) &&
		(where.Exception == "" || f.Exception == where.Exception) &&
		(where.Grep == "" || strings.Contains(f.Error, where.Grep))
}

// FailedFilter says which failed entries: every non-empty field must match
// (Grep: a substring of the error). The zero filter matches every entry.
type FailedFilter struct {
	Class     string
	Queue     string
	Exception string
	Grep      string
}

func (f FailedFilter) empty() bool { return f == FailedFilter{} }

// --- queries ---------------------------------------------------------------

// Queues returns the queues in the Resque set of queues, sorted by name.
func (i *Inspector) Queues(ctx context.Context) ([]Queue, error) {
	var qs []Queue
	err := i.do(ctx, "reading the queues", true, func(ctx context.Context) error {
		names, err := i.rdb.SMembers(ctx, i.keys.Queues()).Result()
		if err != nil {
			return err
		}
		slices.Sort(names)
		lens := make([]*redis.IntCmd, len(names))
		paused := make([]*redis.IntCmd, len(names))
		if len(names) > 0 {
			_, err = i.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
				for n, q := range names {
					lens[n] = pipe.LLen(ctx, i.keys.Queue(q))
					paused[n] = pipe.Exists(ctx, i.keys.Paused(q))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		qs = make([]Queue, len(names))
		for n, q := range names {
			qs[n] = Queue{Name: q, Length: lens[n].Val(), Paused: paused[n].Val() > 0}
		}
		return nil
	})
	return qs, err
}

// Processes returns the gomap worker processes of gomap:workers, dead ones
// (alive key expired, not yet pruned by a reaper) included, sorted by host,
// pid and id. Records that cannot be read are left out.
func (i *Inspector) Processes(ctx context.Context) ([]Process, error) {
	var ps []Process
	err := i.do(ctx, "reading the worker processes", true, func(ctx context.Context) error {
		recs, err := i.rdb.HGetAll(ctx, i.keys.Processes()).Result()
		if err != nil {
			return err
		}
		var found []protocol.Process
		for _, rec := range recs {
			var p protocol.Process
			if json.Unmarshal([]byte(rec), &p) == nil && p.ID != "" {
				found = append(found, p)
			}
		}
		alive := make([]*redis.IntCmd, len(found))
		if len(found) > 0 {
			_, err = i.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
				for n, p := range found {
					alive[n] = pipe.Exists(ctx, i.keys.Alive(p.ID))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		ps = make([]Process, len(found))
		for n, p := range found {
			slots := p.Concurrency
			if slots == 0 {
				slots = len(p.Slots)
			}
			ps[n] = Process{ID: p.ID, Host: p.Host, PID: p.PID, Queues: p.Queues, Functions: p.Functions,
				Slots: slots, Cores: p.Cores, Alive: alive[n].Val() > 0, Paused: p.Paused}
		}
		slices.SortFunc(ps, func(a, b Process) int {
			if c := strings.Compare(a.Host, b.Host); c != 0 {
				return c
			}
			if c := cmp.Compare(a.PID, b.PID); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		return nil
	})
	return ps, err
}

// Workers returns every Resque worker id in the registry (the workers set):
// gomap's slots and any other Resque worker, sorted by id, each with its
// heartbeat and the job it works on.
func (i *Inspector) Workers(ctx context.Context) ([]ResqueWorker, error) {
	procs, err := i.Processes(ctx)
	if err != nil {
		return nil, err
	}
	live := map[[2]string]bool{}
	for _, p := range procs {
		if p.Alive {
			live[[2]string{p.Host, strconv.Itoa(p.PID)}] = true
		}
	}
	var (
		ids   []string
		jobs  []*redis.StringCmd
		beats map[string]string
	)
	err = i.do(ctx, "reading the Resque workers", true, func(ctx context.Context) error {
		var err error
		if ids, err = i.rdb.SMembers(ctx, i.keys.Workers()).Result(); err != nil {
			return err
		}
		slices.Sort(ids)
		jobs = make([]*redis.StringCmd, len(ids))
		if len(ids) > 0 {
			_, err = i.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
				for n, w := range ids {
					jobs[n] = pipe.Get(ctx, i.keys.Worker(w))
				}
				return nil
			})
			if err = firstError(err, jobs); err != nil {
				return err
			}
		}
		beats, err = i.rdb.HGetAll(ctx, i.keys.Heartbeat()).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	// Heartbeats carry the writer's clock; ages use this machine's, as in
	// Python (the least-privilege client user may not run TIME). A skew of
	// seconds is far below StaleAfter.
	now := i.now()
	ws := make([]ResqueWorker, len(ids))
	for n, id := range ids {
		parts := append(strings.SplitN(id, ":", 3), "", "")
		host, pid, queues := parts[0], parts[1], parts[2]
		w := ResqueWorker{ID: id, Host: host, PID: pid, Heartbeat: beats[id]}
		for q := range strings.SplitSeq(queues, ",") {
			if q != "" {
				w.Queues = append(w.Queues, q)
			}
		}
		if at, err := time.Parse(time.RFC3339, w.Heartbeat); err == nil && w.Heartbeat != "" {
			w.HeartbeatAt = at
			w.HeartbeatAge = max(0, now.Sub(at))
		}
		if ms, ok := objectMembers([]byte(jobs[n].Val())); ok {
			w.Job = &WorkerJob{Queue: memberText(ms, "queue"), RunAt: memberText(ms, "run_at")}
			if p, ok := member(ms, "payload"); ok && p.Kind() == '{' {
				w.Job.Payload = p
			}
		}
		procPID, _, _ := strings.Cut(pid, "-")
		w.Gomap = live[[2]string{host, procPID}]
		ws[n] = w
	}
	return ws, nil
}

// Stats reads the pool's counters (0 for a counter not yet written).
func (i *Inspector) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	// GETs, not MGET: the least-privilege client user (docs/security.md) has
	// GET, and on a Redis Cluster the keys live in different slots.
	keys := []string{i.keys.Stat("processed"), i.keys.Stat("failed"), i.keys.Counter("requeued"), i.keys.Counter("pruned")}
	err := i.do(ctx, "reading the counters", true, func(ctx context.Context) error {
		cmds := make([]*redis.StringCmd, len(keys))
		_, err := i.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for n, k := range keys {
				cmds[n] = pipe.Get(ctx, k)
			}
			return nil
		})
		if err = firstError(err, cmds); err != nil {
			return err
		}
		vals := [4]int64{}
		for n, cmd := range cmds {
			if cmd.Err() != nil { // redis.Nil: not written yet
				continue
			}
			v, err := strconv.ParseInt(cmd.Val(), 10, 64)
			if err != nil {
				return fmt.Errorf("%s holds %q, not a count: only Resque and gomap should write it", keys[n], cmd.Val())
			}
			vals[n] = v
		}
		s = Stats{Processed: vals[0], Failed: vals[1], Requeued: vals[2], Pruned: vals[3]}
		return nil
	})
	return s, err
}

// --- failed jobs -----------------------------------------------------------

// FailedCount is the number of entries in the failed list.
func (i *Inspector) FailedCount(ctx context.Context) (int64, error) {
	var n int64
	err := i.do(ctx, "counting the failed jobs", true, func(ctx context.Context) error {
		var err error
		n, err = i.rdb.LLen(ctx, i.keys.Failed()).Result()
		return err
	})
	return n, err
}

// Failed returns failed entries from list index offset, at most limit of
// them; with a non-empty where, only those that match, read in pages of the
// list up to FailedScan entries past offset.
func (i *Inspector) Failed(ctx context.Context, offset, limit int, where FailedFilter) ([]Failed, error) {
	if offset < 0 || limit < 0 {
		return nil, fmt.Errorf("client: failed jobs from %d, at most %d: offset and limit must be 0 or more", offset, limit)
	}
	var found []Failed
	start := int64(offset)
	page := int64(failedPage)
	if where.empty() {
		page = int64(max(1, min(limit, failedPage)))
	}
	for len(found) < limit && start-int64(offset) < FailedScan {
		entries, err := i.page(ctx, start, page)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Matches(where) {
				found = append(found, e)
			}
		}
		if int64(len(entries)) < page {
			break
		}
		start += page
	}
	if len(found) > limit {
		found = found[:limit]
	}
	return found, nil
}

// FailedOne returns the failed entry at index; an error wrapping
// ErrNoFailedJob when there is none.
func (i *Inspector) FailedOne(ctx context.Context, index int) (Failed, error) {
	if index >= 0 {
		got, err := i.page(ctx, int64(index), 1)
		if err != nil {
			return Failed{}, err
		}
		if len(got) > 0 {
			return got[0], nil
		}
	}
	return Failed{}, fmt.Errorf("client: %w at index %d: `gomap failed ls` lists them with their indexes", ErrNoFailedJob, index)
}

func (i *Inspector) page(ctx context.Context, start, n int64) ([]Failed, error) {
	var raws []string
	err := i.do(ctx, "reading the failed jobs", true, func(ctx context.Context) error {
		var err error
		raws, err = i.rdb.LRange(ctx, i.keys.Failed(), start, start+n-1).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	entries := make([]Failed, len(raws))
	for n, raw := range raws {
		entries[n] = parseFailed(start+int64(n), raw)
	}
	return entries, nil
}

// Retry pushes failed entry index back on its queue, as resque-web does, and
// sets the entry's retried_at (the entry stays in the list). It returns the
// entry as it was read.
func (i *Inspector) Retry(ctx context.Context, index int) (Failed, error) {
	entry, err := i.FailedOne(ctx, index)
	if err != nil {
		return Failed{}, err
	}
	return entry, i.retry(ctx, entry)
}

// RetryWhere pushes back every failed entry that matches where (every one
// with the zero filter) and returns how many. It stops at the first entry
// that cannot be retried, with the count of those pushed before it.
func (i *Inspector) RetryWhere(ctx context.Context, where FailedFilter) (int, error) {
	entries, err := i.Failed(ctx, 0, FailedScan, where)
	if err != nil {
		return 0, err
	}
	for n, e := range entries {
		if err := i.retry(ctx, e); err != nil {
			return n, err
		}
	}
	return len(entries), nil
}

func (i *Inspector) retry(ctx context.Context, e Failed) error {
	ms, ok := objectMembers([]byte(e.Stored))
	if !ok || e.Payload == nil || e.Queue == "" || e.Class == "" {
		return fmt.Errorf("client: %w: failed job %d has no payload, queue and class to push again; remove it with `gomap failed rm %d`", ErrNotRetryable, e.Index, e.Index)
	}
	if err := protocol.CheckQueueName(e.Queue); err != nil {
		return fmt.Errorf("client: %w: failed job %d: %w", ErrNotRetryable, e.Index, err)
	}
	at, err := jsontext.AppendQuote(nil, protocol.FailedAt(i.now().UTC()))
	if err != nil {
		return fmt.Errorf("client: failed job %d: %w", e.Index, err)
	}
	updated := encodeObject(setMember(ms, "retried_at", at))
	// Not retried on a transient error: the push would be sent twice.
	return i.do(ctx, fmt.Sprintf("retrying failed job %d", e.Index), false, func(ctx context.Context) error {
		_, err := i.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			i.markRetried.Eval(ctx, pipe, []string{i.keys.Failed()}, e.Index, e.Stored, updated)
			pipe.SAdd(ctx, i.keys.Queues(), e.Queue)
			pipe.RPush(ctx, i.keys.Queue(e.Queue), []byte(e.Payload))
			return nil
		})
		return err
	})
}

// Remove removes failed entry index, as Resque does (LSET to a sentinel,
// then LREM it), in one script that first checks the entry is still the one
// read; when it is not, it removes nothing and returns a *ChangedError. It
// returns the entry removed.
func (i *Inspector) Remove(ctx context.Context, index int) (Failed, error) {
	entry, err := i.FailedOne(ctx, index)
	if err != nil {
		return Failed{}, err
	}
	return entry, i.removeEntry(ctx, entry)
}

func (i *Inspector) removeEntry(ctx context.Context, entry Failed) error {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("client: removing failed job %d: %w", entry.Index, err)
	}
	sentinel := "gomap-removing-" + hex.EncodeToString(b[:])
	var removed int64
	// Not retried on a transient error: had the script run, a second one
	// would find the entry gone and report it changed.
	err := i.do(ctx, fmt.Sprintf("removing failed job %d", entry.Index), false, func(ctx context.Context) error {
		var err error
		removed, err = i.remove.Run(ctx, i.rdb, []string{i.keys.Failed()}, entry.Index, entry.Stored, sentinel).Int64()
		return err
	})
	if err != nil {
		return err
	}
	if removed == 0 {
		return &ChangedError{Index: entry.Index}
	}
	return nil
}

// Clear deletes every failed entry and returns how many there were.
func (i *Inspector) Clear(ctx context.Context) (int64, error) {
	var n int64
	err := i.do(ctx, "clearing the failed jobs", true, func(ctx context.Context) error {
		var llen *redis.IntCmd
		_, err := i.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			llen = pipe.LLen(ctx, i.keys.Failed())
			pipe.Del(ctx, i.keys.Failed())
			return nil
		})
		n = llen.Val()
		return err
	})
	return n, err
}

// --- queues and batches ----------------------------------------------------

// Pause pauses queue: gomap workers take no new job from it until Resume
// (jobs already taken finish; the queue keeps its jobs and takes new ones).
// Each worker process takes note at its next heartbeat (Process.Paused).
// Its key holds when it was paused (RFC 3339, UTC); the queue joins the
// set of queues, so Queues shows it paused even while it is empty.
func (i *Inspector) Pause(ctx context.Context, queue string) error {
	if err := protocol.CheckQueueName(queue); err != nil {
		return fmt.Errorf("client: pausing: %w", err)
	}
	at := i.now().UTC().Format(time.RFC3339)
	return i.do(ctx, "pausing queue "+queue, true, func(ctx context.Context) error {
		_, err := i.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, i.keys.Paused(queue), at, 0)
			pipe.SAdd(ctx, i.keys.Queues(), queue)
			return nil
		})
		return err
	})
}

// Resume lets gomap workers take jobs from queue again.
func (i *Inspector) Resume(ctx context.Context, queue string) error {
	if err := protocol.CheckQueueName(queue); err != nil {
		return fmt.Errorf("client: resuming: %w", err)
	}
	return i.do(ctx, "resuming queue "+queue, true, func(ctx context.Context) error {
		return i.rdb.Del(ctx, i.keys.Paused(queue)).Err()
	})
}

// CancelBatch cancels batch id: its keys go (workers skip its chunks and
// stop running ones) and its chunks still queued are removed. It returns how
// many queued chunks were removed; an error wrapping ErrNoBatch when the
// batch is not in Redis.
func (i *Inspector) CancelBatch(ctx context.Context, id string) (int, error) {
	var meta map[string]string
	err := i.do(ctx, "reading batch "+id, true, func(ctx context.Context) error {
		var err error
		meta, err = i.rdb.HGetAll(ctx, i.keys.BatchMeta(id)).Result()
		return err
	})
	if err != nil {
		return 0, err
	}
	if len(meta) == 0 {
		return 0, fmt.Errorf("client: %w %q in Redis (finished, cancelled or expired): `gomap batches` lists the running ones", ErrNoBatch, id)
	}
	queue, ok := meta["queue"]
	if !ok {
		queue = meta["function"]
	}
	shards, err := strconv.Atoi(meta["shards"])
	if err != nil {
		shards = 1 // written by a client that does not shard
	}
	removed := 0
	err = i.do(ctx, "cancelling batch "+id, true, func(ctx context.Context) error {
		removed = 0
		// The four keys share the hash tag {id}: one DEL on a Redis Cluster too.
		if err := i.rdb.Del(ctx, i.keys.BatchMeta(id), i.keys.BatchResults(id), i.keys.BatchDone(id), i.keys.BatchTaken(id)).Err(); err != nil {
			return err
		}
		for _, q := range i.keys.Shards(queue, shards) {
			n, err := i.removeChunks(ctx, i.keys.Queue(q), id)
			removed += n
			if err != nil {
				return err
			}
		}
		return nil
	})
	return removed, err
}

// removeChunks removes batch id's chunks from the queue at qkey and returns
// how many it removed.
func (i *Inspector) removeChunks(ctx context.Context, qkey, id string) (int, error) {
	jobs, err := i.rdb.LRange(ctx, qkey, 0, -1).Result()
	if err != nil {
		return 0, err
	}
	var mine []string
	for _, job := range jobs {
		if chunkBatch(job) == id && !slices.Contains(mine, job) {
			mine = append(mine, job)
		}
	}
	if len(mine) == 0 {
		return 0, nil
	}
	rems := make([]*redis.IntCmd, len(mine))
	_, err = i.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for n, job := range mine {
			rems[n] = pipe.LRem(ctx, qkey, 0, job)
		}
		return nil
	})
	removed := 0
	for _, r := range rems {
		removed += int(r.Val())
	}
	return removed, err
}

// chunkBatch is the batch id of a chunk payload; "" for any other job.
func chunkBatch(job string) string {
	ms, ok := objectMembers([]byte(job))
	if !ok {
		return ""
	}
	g, ok := member(ms, "gomap")
	if !ok {
		return ""
	}
	gs, ok := objectMembers(g)
	if !ok {
		return ""
	}
	if b, ok := member(gs, "batch"); ok && b.Kind() == '"' {
		return unquote(b)
	}
	return ""
}

// --- Redis round trips -----------------------------------------------------

// firstError is the first error of a pipeline of GETs other than redis.Nil
// (a key that does not exist); err, the pipeline's own, when none has one.
func firstError(err error, cmds []*redis.StringCmd) error {
	if err == nil {
		return nil
	}
	for _, c := range cmds {
		if c.Err() != nil && !errors.Is(c.Err(), redis.Nil) {
			return c.Err()
		}
	}
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// do runs op within the inspector's timeout. An idempotent op is retried on
// transient errors (a lost connection, a failover) with backoff until then.
func (i *Inspector) do(ctx context.Context, what string, idempotent bool, op func(ctx context.Context) error) error {
	ctx, stop := context.WithTimeout(ctx, i.timeout)
	defer stop()
	wait := retryFirst
	for {
		err := op(ctx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("client: %s: no answer from Redis in time (%w): %v; check that Redis runs at the address the client was given", what, ctx.Err(), err)
		case !idempotent || !transient(err):
			return fmt.Errorf("client: %s: %w", what, err)
		}
		t := time.NewTimer(wait/2 + mathrand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("client: %s: no answer from Redis in time (%w): %v; check that Redis runs at the address the client was given", what, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, retryMost)
	}
}

// --- JSON entries ----------------------------------------------------------

// jsonMember is one name and value of a JSON object, in the order written.
type jsonMember struct {
	name  string
	value jsontext.Value
}

// objectMembers splits a JSON object into its members; ok is false when raw
// is not one JSON object. Duplicate names and invalid UTF-8 are kept as
// written (failed entries may hold both, see docs/protocol.md).
func objectMembers(raw []byte) (ms []jsonMember, ok bool) {
	d := jsontext.NewDecoder(bytes.NewReader(raw), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if tok, err := d.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, false
	}
	for d.PeekKind() != '}' {
		tok, err := d.ReadToken()
		if err != nil {
			return nil, false
		}
		name := tok.String() // before the next read voids tok
		v, err := d.ReadValue()
		if err != nil {
			return nil, false
		}
		ms = append(ms, jsonMember{name: name, value: v.Clone()})
	}
	if _, err := d.ReadToken(); err != nil {
		return nil, false
	}
	if _, err := d.ReadToken(); !errors.Is(err, io.EOF) {
		return nil, false // something after the object
	}
	return ms, true
}

// member is the value of the last member called name (the one a JSON
// reader that keeps the last duplicate, like Python's, sees).
func member(ms []jsonMember, name string) (jsontext.Value, bool) {
	for n := len(ms) - 1; n >= 0; n-- {
		if ms[n].name == name {
			return ms[n].value, true
		}
	}
	return nil, false
}

// memberText is the member called name as text: a string's contents, any
// other value as written; "" when absent or null.
func memberText(ms []jsonMember, name string) string {
	v, ok := member(ms, name)
	if !ok || v.Kind() == 'n' {
		return ""
	}
	if v.Kind() == '"' {
		return unquote(v)
	}
	return string(v)
}

// unquote is the contents of a JSON string (invalid UTF-8 as U+FFFD).
func unquote(v jsontext.Value) string {
	tok, err := jsontext.NewDecoder(bytes.NewReader(v), jsontext.AllowInvalidUTF8(true)).ReadToken()
	if err != nil || tok.Kind() != '"' {
		return ""
	}
	return strings.ToValidUTF8(tok.String(), "\uFFFD")
}

// setMember sets member name to value: the last one of that name when
// there is one, else a new last member.
func setMember(ms []jsonMember, name string, value jsontext.Value) []jsonMember {
	out := slices.Clone(ms)
	for n := len(out) - 1; n >= 0; n-- {
		if out[n].name == name {
			out[n].value = value
			return out
		}
	}
	return append(out, jsonMember{name: name, value: value})
}

// encodeObject writes members back as one JSON object.
func encodeObject(ms []jsonMember) string {
	var b strings.Builder
	b.WriteByte('{')
	for n, m := range ms {
		if n > 0 {
			b.WriteByte(',')
		}
		name, err := jsontext.AppendQuote(nil, m.name)
		if err != nil { // invalid UTF-8 in a name: AppendQuote wrote it with U+FFFD
			name = bytes.ToValidUTF8(name, []byte("\uFFFD"))
		}
		b.Write(name)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.String()
}

// arrayElements splits a JSON array into its elements; nil for any other value.
func arrayElements(v jsontext.Value) []jsontext.Value {
	if v.Kind() != '[' {
		return nil
	}
	d := jsontext.NewDecoder(bytes.NewReader(v), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if _, err := d.ReadToken(); err != nil {
		return nil
	}
	out := []jsontext.Value{}
	for d.PeekKind() != ']' {
		e, err := d.ReadValue()
		if err != nil {
			return nil
		}
		out = append(out, e.Clone())
	}
	return out
}

// parseFailed reads one failed entry as gomap/_inspect.py's _failed does: an
// entry that is not a JSON object becomes one whose error is its text.
func parseFailed(index int64, raw string) Failed {
	f := Failed{Index: index, Stored: raw, Args: []jsontext.Value{}, Backtrace: []string{}}
	ms, ok := objectMembers([]byte(raw))
	if !ok {
		f.Error = strings.ToValidUTF8(raw, "\uFFFD")
		return f
	}
	f.FailedAt = memberText(ms, "failed_at")
	f.Queue = memberText(ms, "queue")
	f.Exception = memberText(ms, "exception")
	f.Error = memberText(ms, "error")
	f.Worker = memberText(ms, "worker")
	f.RetriedAt = memberText(ms, "retried_at")
	if bt, ok := member(ms, "backtrace"); ok {
		for _, line := range arrayElements(bt) {
			if line.Kind() == '"' {
				line = jsontext.Value(unquote(line))
			}
			f.Backtrace = append(f.Backtrace, string(line))
		}
	}
	if p, ok := member(ms, "payload"); ok && p.Kind() == '{' {
		f.Payload = p
		if ps, ok := objectMembers(p); ok {
			f.Class = memberText(ps, "class")
			if args, ok := member(ps, "args"); ok {
				if a := arrayElements(args); a != nil {
					f.Args = a
				}
			}
		}
	}
	return f
}
