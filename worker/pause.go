package worker

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Pausing a queue (docs/protocol.md, "Pausing a queue"). A queue is paused
// while its key gomap:paused:{<queue key>} exists. Every heartbeat reads the
// pause keys of the worker's queues; when they changed, the fetch loop stops
// polling and waiting on the paused queues (or starts again), then writes the
// worker record with the queues it no longer takes from ("paused"), so whoever
// paused a queue can tell when every worker has heard. Jobs a worker had
// reserved before it heard still run; a paused queue keeps its jobs, and any
// client may still push to it.

// pauses is what the heartbeat read of the pause keys, and what the fetch
// loop has acted on.
type pauses struct {
	mu      sync.Mutex
	want    map[string]bool // paused in Redis, as the last heartbeat read them
	acked   []string        // the queues the fetch loop no longer takes from, sorted
	changed chan struct{}   // capacity 1: want changed since the fetch loop last looked
}

func newPauses() *pauses { return &pauses{want: map[string]bool{}, changed: make(chan struct{}, 1)} }

// readPauses queues the reads of the pause keys of w's queues on pipe; the
// function it returns, called once pipe ran, records what they said.
func (w *Worker) readPauses(ctx context.Context, pipe redis.Pipeliner) func() {
	cmds := make([]*redis.IntCmd, len(w.bases))
	for i, q := range w.bases {
		cmds[i] = pipe.Exists(ctx, w.keys.Paused(q))
	}
	return func() {
		now := map[string]bool{}
		for i, q := range w.bases {
			if cmds[i].Err() != nil {
				return // unknown: keep what was known
			}
			if cmds[i].Val() > 0 {
				now[q] = true
			}
		}
		p := w.pause
		p.mu.Lock()
		defer p.mu.Unlock()
		if maps.Equal(now, p.want) {
			return
		}
		p.want = now
		select {
		case p.changed <- struct{}{}:
		default:
		}
	}
}

// pausedNow returns the paused queues the fetch loop has acted on, for the
// worker record.
func (p *pauses) pausedNow() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked
}

// checkPauses acts on a change of the pause keys, if the heartbeat saw one.
// Fetch loop only.
func (w *Worker) checkPauses(ctx context.Context) {
	select {
	case <-w.pause.changed:
		w.applyPauses(ctx)
	default:
	}
}

// applyPauses makes the fetch loop follow the pause keys the heartbeat read:
// the waits on newly paused queues are taken back (a job one of them took
// meanwhile goes to the stash and runs: it was reserved before the worker
// heard), and the record says which queues the worker no longer takes from.
// Fetch loop only, after a receive from w.pause.changed.
func (w *Worker) applyPauses(ctx context.Context) {
	w.pause.mu.Lock()
	bases := maps.Clone(w.pause.want)
	w.pause.mu.Unlock()
	want := map[string]bool{} // by shard: pausing a queue pauses its shards
	for _, q := range w.queues {
		if bases[w.base(q)] {
			want[q] = true
		}
	}
	for q := range want {
		if b := w.blockers[q]; b != nil && b.armed && !w.paused[q] {
			w.disarm()
			break
		}
	}
	w.paused = want
	acked := slices.Sorted(maps.Keys(bases))
	w.pause.mu.Lock()
	w.pause.acked = acked
	w.pause.mu.Unlock()
	w.log.Info("paused queues changed", "paused", acked)
	if err := w.rdb.HSet(ctx, w.keys.Processes(), w.proc, w.record()).Err(); err != nil && ctx.Err() == nil {
		w.log.Warn("could not publish the paused queues in the worker record; the next heartbeat will", "err", err)
	}
}
