package worker

import (
	"context"
	"errors"
	"runtime"
	"time"

	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/redis/go-redis/v9"
)

// A worker process is registered twice: as Resque workers (one per slot, in
// "workers", with ":started" and a "workers:heartbeat" entry, so Resque tools
// see it) and as a gomap process (a record in gomap:workers and an alive key
// whose TTL is DeadAfter, so other workers can tell it died and recover its
// in-flight jobs without trusting anybody's clock but Redis').

func (w *Worker) record() string {
	b, err := protocol.Marshal(protocol.Process{
		ID:          w.proc,
		Host:        w.cfg.Hostname,
		PID:         w.pid,
		Queues:      w.bases,
		Shards:      w.shards,
		Functions:   w.reg.Names(),
		Signatures:  w.reg.Signatures(),
		Slots:       w.slots,
		Concurrency: w.cfg.Concurrency,
		Cores:       runtime.GOMAXPROCS(0),
		MaxPayload:  w.cfg.MaxPayload,
		MaxItems:    w.cfg.MaxChunkItems,
		Started:     w.started.UTC().Format(time.RFC3339),
		Paused:      w.pause.pausedNow(),
		Version:     protocol.Version,
	})
	if err != nil { // strings from the config, checked valid UTF-8 by nothing else
		w.log.Error("encoding the worker record", "err", err)
		return "{}"
	}
	return string(b)
}

// register recovers the jobs of a dead predecessor with this very process id
// (a restarted container reuses host name and pid), then registers.
func (w *Worker) register(ctx context.Context) error {
	old, err := w.rdb.HGet(ctx, w.keys.Processes(), w.proc).Result()
	switch {
	case err == nil:
		if _, err := w.reapRecord(ctx, old); err != nil {
			return err
		}
	case !errors.Is(err, redis.Nil):
		return err
	}
	w.started = time.Now()
	now := protocol.RubyTimeString(w.started)
	_, err = w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, id := range w.slots {
			pipe.Set(ctx, w.keys.WorkerStarted(id), now, 0)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return w.beat(ctx)
}

// beat renews every registration; it also restores one a reaper removed
// while this process was stalled.
func (w *Worker) beat(ctx context.Context) error {
	now, err := w.rdb.Time(ctx).Result()
	if err != nil {
		return err
	}
	hb := protocol.HeartbeatTime(now.Local())
	fields := make([]any, 0, 2*len(w.slots))
	members := make([]any, 0, len(w.slots))
	for _, id := range w.slots {
		fields = append(fields, id, hb)
		members = append(members, id)
	}
	var pauses func()
	sent := time.Now()
	_, err = w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pauses = w.readPauses(ctx, pipe)
		pipe.Set(ctx, w.keys.Alive(w.proc), hb, w.cfg.DeadAfter)
		pipe.HSet(ctx, w.keys.Processes(), w.proc, w.record())
		pipe.SAdd(ctx, w.keys.Workers(), members...)
		pipe.HSet(ctx, w.keys.Heartbeat(), fields...)
		return nil
	})
	if err == nil {
		w.rtt.add(time.Since(sent))
	}
	pauses()
	return err
}

func (w *Worker) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := w.beat(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("heartbeat failed", "err", err)
			}
		}
	}
}

// unregister removes this process's registrations, as Ruby's
// unregister_worker does for each slot.
func (w *Worker) unregister(ctx context.Context) error {
	_, err := w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		unregisterSlots(ctx, pipe, w.keys, w.slots)
		pipe.Del(ctx, w.keys.Alive(w.proc))
		pipe.HDel(ctx, w.keys.Processes(), w.proc)
		return nil
	})
	return err
}

func unregisterSlots(ctx context.Context, pipe redis.Pipeliner, k protocol.Keys, ids []string) {
	if len(ids) == 0 {
		return
	}
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = id
		// One key per DEL: in a Redis Cluster these keys live in different slots.
		pipe.Del(ctx, k.Worker(id))
		pipe.Del(ctx, k.WorkerStarted(id))
		pipe.Del(ctx, k.Stat("processed:"+id))
		pipe.Del(ctx, k.Stat("failed:"+id))
	}
	pipe.SRem(ctx, k.Workers(), members...)
	pipe.HDel(ctx, k.Heartbeat(), ids...)
}
