package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/redis/go-redis/v9"
)

// The reaper runs in every worker. Each round, the one worker that takes the
// reaper lock looks for processes whose alive key has expired (no heartbeat
// for DeadAfter), puts their in-flight jobs back at the head of their queues
// and removes their registrations.

func (w *Worker) reaperLoop(ctx context.Context) {
	for {
		// Jitter spreads the workers' attempts over the round.
		d := w.cfg.Heartbeat/2 + rand.N(w.cfg.Heartbeat)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := w.reapRound(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("reaper failed", "err", err)
		}
	}
}

func (w *Worker) reapRound(ctx context.Context) error {
	ok, err := w.rdb.SetNX(ctx, w.keys.ReaperLock(), w.proc, w.cfg.Heartbeat).Result()
	if err != nil || !ok {
		return err
	}
	_, err = w.reapDead(ctx)
	_, perr := w.pruneStale(ctx)
	return errors.Join(err, perr, w.failLeftPoison(ctx))
}

// pruneStale removes from Resque's registry the worker ids whose heartbeat
// is older than PruneAfter, as Resque's prune_dead_workers does: a Ruby or
// Node worker that died without unregistering, or a gomap slot whose process
// record is gone. A job such a worker was running goes to the failed list as
// Resque::PruneDeadWorkerDirtyExit, as Resque fails it. gomap's own dead
// processes are recovered sooner, by reapDead, and their jobs requeued. It
// returns how many ids it pruned and counts them in gomap:stat:pruned.
func (w *Worker) pruneStale(ctx context.Context) (int, error) {
	if w.cfg.PruneAfter < 0 {
		return 0, nil
	}
	var beats *redis.MapStringStringCmd
	var now *redis.TimeCmd
	var live *redis.MapStringStringCmd
	_, err := w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		beats = pipe.HGetAll(ctx, w.keys.Heartbeat())
		now = pipe.Time(ctx)
		live = pipe.HGetAll(ctx, w.keys.Processes())
		return nil
	})
	if err != nil {
		return 0, err
	}
	// A slot of a recorded gomap process is left to reapDead, which also
	// requeues its jobs.
	recorded := map[string]bool{}
	for _, rec := range live.Val() {
		var p protocol.Process
		if json.Unmarshal([]byte(rec), &p) == nil {
			for _, id := range p.Slots {
				recorded[id] = true
			}
		}
	}
	var stale []string
	for id, hb := range beats.Val() {
		t, err := time.Parse(time.RFC3339, hb)
		if err != nil || recorded[id] || now.Val().Sub(t) <= w.cfg.PruneAfter {
			continue
		}
		stale = append(stale, id)
	}
	if len(stale) == 0 {
		return 0, nil
	}
	jobs := make([]*redis.StringCmd, len(stale))
	_, err = w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range stale {
			jobs[i] = pipe.Get(ctx, w.keys.Worker(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	_, err = w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range stale {
			if job := jobs[i].Val(); job != "" {
				pipe.RPush(ctx, w.keys.Failed(), w.dirtyExitEntry(id, job))
				pipe.IncrBy(ctx, w.keys.Stat("failed"), 1)
			}
		}
		unregisterSlots(ctx, pipe, w.keys, stale)
		pipe.IncrBy(ctx, w.keys.Counter("pruned"), int64(len(stale)))
		return nil
	})
	if err != nil {
		return 0, err
	}
	w.log.Info("pruned dead Resque workers (heartbeat stale)", "workers", stale, "prune_after", w.cfg.PruneAfter)
	return len(stale), nil
}

// dirtyExitEntry is the failed entry of the job a pruned worker id was
// running (its worker:<id> record), as Resque writes it.
func (w *Worker) dirtyExitEntry(id, record string) string {
	var rec struct {
		Queue   string         `json:"queue"`
		Payload jsontext.Value `json:"payload"`
	}
	j := reserved{payload: record} // unreadable: kept as text
	if json.Unmarshal([]byte(record), &rec) == nil && len(rec.Payload) > 0 {
		j = reserved{queue: rec.Queue, payload: string(rec.Payload)}
	}
	var p struct {
		Class string `json:"class"`
	}
	if json.Unmarshal([]byte(j.payload), &p) != nil || p.Class == "" {
		p.Class = "an unknown job"
	}
	return w.failedEntry(id, j, &failure{
		exception: "Resque::PruneDeadWorkerDirtyExit",
		message:   fmt.Sprintf("Worker %s did not gracefully exit while processing %s", id, p.Class),
	})
}

// failLeftPoison fails the poison a requeue of this worker's queues left
// behind, when Redis failed it half way.
func (w *Worker) failLeftPoison(ctx context.Context) error {
	lens := make([]*redis.IntCmd, len(w.queues))
	_, err := w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, q := range w.queues {
			lens[i] = pipe.LLen(ctx, w.keys.Poison(q))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, q := range w.queues {
		if lens[i].Val() > 0 {
			err = errors.Join(err, w.failPoison(ctx, q, ""))
		}
	}
	return err
}

// reapDead recovers every dead process and returns how many jobs went back.
func (w *Worker) reapDead(ctx context.Context) (int, error) {
	recs, err := w.rdb.HGetAll(ctx, w.keys.Processes()).Result()
	if err != nil {
		return 0, err
	}
	alive := map[string]*redis.IntCmd{}
	_, err = w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for proc := range recs {
			if proc != w.proc {
				alive[proc] = pipe.Exists(ctx, w.keys.Alive(proc))
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	total := 0
	var errs []error
	for proc, cmd := range alive {
		if cmd.Val() > 0 {
			continue
		}
		n, err := w.reapRecord(ctx, recs[proc])
		total += n
		errs = append(errs, err)
	}
	return total, errors.Join(errs...)
}

// reapRecord recovers the process a gomap:workers record describes.
func (w *Worker) reapRecord(ctx context.Context, record string) (int, error) {
	var p protocol.Process
	if err := json.Unmarshal([]byte(record), &p); err != nil || p.ID == "" {
		return 0, fmt.Errorf("unreadable worker record %q: %v", record, err)
	}
	n, err := w.requeue(ctx, p.ID, w.expandShards(p.Queues, p.Shards), "after its worker "+p.ID+" died")
	if o := w.cfg.Observer; o != nil && n > 0 {
		o.Requeued(n)
	}
	if err != nil {
		return n, err
	}
	_, err = w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		if n > 0 {
			pipe.IncrBy(ctx, w.keys.Counter("requeued"), int64(n))
		}
		unregisterSlots(ctx, pipe, w.keys, p.Slots)
		pipe.HDel(ctx, w.keys.Processes(), p.ID)
		return nil
	})
	w.log.Info("recovered a dead worker", "worker", p.ID, "jobs_requeued", n)
	return n, err
}

// requeue moves the in-flight jobs of process proc back to the head of their
// queues, in their order, and returns how many it moved. A job that went
// back more than MaxRequeues times goes to the failed list instead (see
// failPoison); why says when this requeue happens, for its failed entry.
func (w *Worker) requeue(ctx context.Context, proc string, queues []string, why string) (int, error) {
	n := 0
	var errs []error
	for _, q := range queues {
		keys := []string{w.keys.Inflight(q, proc), w.keys.Queue(q), w.keys.Requeues(q), w.keys.Poison(q)}
		counts, err := w.rdb.Eval(ctx, protocol.RequeueScript, keys, w.cfg.MaxRequeues, requeuesTTL.Milliseconds()).Int64Slice()
		if err != nil {
			return n, errors.Join(append(errs, err)...)
		}
		n += int(counts[0])
		if counts[1] > 0 {
			errs = append(errs, w.failPoison(ctx, q, why))
		}
	}
	return n, errors.Join(errs...)
}

// requeuesTTL is how long a queue's requeue counts live after its last
// requeue. The count of a plain job is also dropped when the job finishes.
const requeuesTTL = 24 * time.Hour

// failPoison empties queue q's poison list (see RequeueScript): a plain job
// goes to the failed list with exception RequeueLimit; every item of a chunk
// fails with kind requeue_limit, in its batch's outcome.
// It reads one payload at a time, since payloads may be large.
func (w *Worker) failPoison(ctx context.Context, q, why string) error {
	for {
		job, err := w.rdb.LIndex(ctx, w.keys.Poison(q), 0).Result()
		switch {
		case errors.Is(err, redis.Nil):
			return nil
		case err != nil:
			return err
		}
		if err := w.failPoisoned(ctx, q, job, why); err != nil {
			return err
		}
	}
}

func (w *Worker) failPoisoned(ctx context.Context, q, job, why string) error {
	msg := fmt.Sprintf("went back to queue %q more than %d times without finishing", q, w.cfg.MaxRequeues)
	if why != "" {
		msg += ", the last time " + why
	}
	msg += ": each time, its worker stopped or died while it ran. It may crash or hang the worker " +
		"(set a time limit), or need more than the shutdown timeout; fix it, then retry it"
	p, err := protocol.DecodePayload([]byte(job))
	chunk := err == nil && p.Chunk != nil
	w.log.Warn("a job went back to its queue too often: failing it", "queue", q, "chunk", chunk, "requeues", w.cfg.MaxRequeues)
	_, err = w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		if chunk {
			c := p.Chunk
			values, errs := failAll(c, protocol.KindRequeueLimit, msg)
			out, err := protocol.AppendChunkResult(nil, values, errs)
			if err != nil {
				return err
			}
			keys := []string{w.keys.BatchMeta(c.Batch), w.keys.BatchResults(c.Batch), w.keys.BatchDone(c.Batch)}
			pipe.Eval(ctx, protocol.WriteResultScript, keys, strconv.FormatInt(c.Start, 10), out, len(c.Items), failedItems(errs))
		} else {
			pipe.RPush(ctx, w.keys.Failed(), w.failedEntry(w.proc, reserved{queue: q, payload: job},
				&failure{exception: excRequeueLimit, message: msg}))
			pipe.IncrBy(ctx, w.keys.Stat("failed"), 1)
		}
		pipe.LRem(ctx, w.keys.Poison(q), 1, job)
		return nil
	})
	return err
}
