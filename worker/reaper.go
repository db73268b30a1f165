package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/go-json-experiment/json"
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
	n, err := w.requeue(ctx, p.ID, p.Queues)
	if err != nil {
		return n, err
	}
	_, err = w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		unregisterSlots(ctx, pipe, w.keys, p.Slots)
		pipe.HDel(ctx, w.keys.Processes(), p.ID)
		return nil
	})
	w.log.Info("recovered a dead worker", "worker", p.ID, "jobs_requeued", n)
	return n, err
}

// requeue moves the in-flight jobs of process proc back to the head of their
// queues, in their order, and returns how many it moved.
func (w *Worker) requeue(ctx context.Context, proc string, queues []string) (int, error) {
	n := 0
	for _, q := range queues {
		moved, err := w.rdb.Eval(ctx, protocol.RequeueScript, []string{w.keys.Inflight(q, proc), w.keys.Queue(q)}).Int()
		if err != nil {
			return n, err
		}
		n += moved
	}
	return n, nil
}
