package worker

import (
	"context"
	"slices"
	"sync/atomic"
	"time"
)

// Reserving ahead over a slow link. A slot that finishes a job waits a round
// trip to Redis for the next one: nothing on one machine (50 µs), a real
// share of a short job's time between machines (1 ms and more). So, when the
// round trip is long, a poll reserves more jobs than there are idle slots,
// and the extras wait in the stash (in flight, so nothing is lost if the
// process dies) for the next slot that frees. The rule (Config.Prefetch):
// none while the round trip averages under prefetchRTT; else the round trip
// over the average job's time, rounded up, at most Concurrency: enough to
// cover one round trip of work per slot that comes free.

// prefetchRTT is the round trip from which a worker reserves ahead.
const prefetchRTT = 500 * time.Microsecond

// ewma is an exponentially weighted moving average of durations (weight 1/8).
type ewma struct{ ns atomic.Int64 }

func (e *ewma) add(d time.Duration) {
	for {
		old := e.ns.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if e.ns.CompareAndSwap(old, max(next, 1)) {
			return
		}
	}
}

func (e *ewma) get() time.Duration { return time.Duration(e.ns.Load()) }

// ahead is how many jobs a poll reserves beyond the idle slots.
func (w *Worker) ahead() int {
	switch p := w.cfg.Prefetch; {
	case p < 0:
		return 0
	case p > 0:
		return p
	}
	rtt := w.rtt.get()
	if rtt < prefetchRTT {
		return 0
	}
	job := w.jobTime.get()
	if job <= 0 {
		return 1
	}
	return min(w.cfg.Concurrency, int((rtt+job-1)/job))
}

// refill reserves, while every slot is busy, the jobs ahead() asks for
// that the stash lacks, in one poll of the first queue that has any. Fetch
// loop only.
func (w *Worker) refill(ctx context.Context) {
	want := w.ahead() - len(w.stash)
	if want <= 0 {
		return
	}
	for _, q := range w.pollOrder() {
		if w.paused[q] {
			continue
		}
		n := len(w.stash)
		j, err := w.poll(ctx, q, want)
		if err != nil {
			w.log.Debug("reserving ahead", "queue", q, "err", err)
			return
		}
		if j != nil {
			w.stash = slices.Insert(w.stash, n, *j) // the first of them, in front of the rest
			return
		}
	}
}

// measureRTT times a few PINGs, for the first estimate of the round trip
// (the heartbeats keep it up to date).
func (w *Worker) measureRTT(ctx context.Context) {
	for range 3 {
		t := time.Now()
		if w.rdb.Ping(ctx).Err() != nil {
			return
		}
		w.rtt.add(time.Since(t))
	}
}
