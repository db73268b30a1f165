package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/redis/go-redis/v9"
)

// Jobs reserved without a reply. A reserve can run in Redis while its reply
// never reaches the worker: the connection drops right after the command
// ran, or Redis freezes past the read timeout and runs the command once it
// resumes. The job then sits in this process's in-flight list, but the
// worker does not know it holds it; and since the process stays alive, the
// reaper never puts it back.
//
// So the worker counts what it holds: every job reserved and not yet
// acknowledged, per queue, identical payloads counted apart. A job of an
// in-flight list that it does not hold is an orphan. The worker adopts it
// (runs it as if it had just reserved it; the job is in flight already, so
// nothing changes in Redis), the oldest first. It looks for orphans
//
//   - in a queue whose reserve failed (an error other than "nothing to
//     take", on a poll or a wait), before its next reserve, until a look
//     succeeds; polls are sent without go-redis' retries, so that such a
//     failure is seen rather than hidden by a retry that reserves another job;
//   - every Heartbeat, in every queue whose in-flight list is longer than
//     what it holds there (one LLEN per queue, sent by a goroutine of its
//     own, so that a slow Redis never holds up the fetch loop). This finds
//     the orphans of commands Redis ran only after the worker had looked.
//
// An orphan must never be a job whose reply is still on its way: the job
// would run twice. Every reserve comes from the fetch loop (a poll) or from
// a wait it armed, so the fetch loop looks only in queues whose wait is not
// armed (it takes the waits back first when needed), and only it looks.
// What it holds is read before the list, so an acknowledgement under way
// can only hide an orphan until the next look, never invent one.

// holdings is what this process holds of its in-flight lists.
type holdings struct {
	mu   sync.Mutex
	jobs map[string]map[heldJob]int // per queue: how many of each job are held
	n    map[string]int             // per queue: jobs held

	suspect map[string]bool // queues whose in-flight list may hold orphans; fetch loop only
	longer  chan []string   // from watchLengths to the fetch loop: lists longer than what is held
}

// heldJob is a job as the worker holds it: its payload, or the size and the
// first bytes of an oversize job.
type heldJob struct {
	payload string
	size    int
}

func newHoldings() *holdings {
	return &holdings{jobs: map[string]map[heldJob]int{}, n: map[string]int{}, suspect: map[string]bool{},
		longer: make(chan []string)}
}

// hold records that j was reserved.
func (h *holdings) hold(j reserved) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.jobs[j.queue]
	if m == nil {
		m = map[heldJob]int{}
		h.jobs[j.queue] = m
	}
	m[heldJob{j.payload, j.size}]++
	h.n[j.queue]++
}

// release records that j was acknowledged, or given up.
func (h *holdings) release(j reserved) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := heldJob{j.payload, j.size}
	m := h.jobs[j.queue]
	switch m[k] {
	case 0:
		return
	case 1:
		delete(m, k)
	default:
		m[k]--
	}
	h.n[j.queue]--
}

// count is how many jobs like j are held.
func (h *holdings) count(j reserved) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.jobs[j.queue][heldJob{j.payload, j.size}]
}

// counts is how many jobs are held, per queue.
func (h *holdings) counts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := make(map[string]int, len(h.n))
	for q, n := range h.n {
		c[q] = n
	}
	return c
}

// digests names every job held of queue q for OrphansScript.
func (h *holdings) digests(q string) []any {
	h.mu.Lock()
	held := make(map[heldJob]int, len(h.jobs[q]))
	for k, n := range h.jobs[q] {
		held[k] = n
	}
	h.mu.Unlock()
	var ds []any
	for k, n := range held {
		d := protocol.JobDigest(k.payload, k.size)
		for range n {
			ds = append(ds, d)
		}
	}
	return ds
}

// watchLengths starts comparing, every Heartbeat, the length of every
// in-flight list with what the worker holds; the queues whose list is
// longer come on w.held.longer. It returns the function that stops it.
func (w *Worker) watchLengths(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(w.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			qs, err := w.longerLists(ctx)
			if err != nil {
				w.log.Debug("comparing the in-flight lists with the jobs held", "err", err)
				continue
			}
			if len(qs) == 0 {
				continue
			}
			select {
			case w.held.longer <- qs:
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}

// longerLists returns the queues whose in-flight list is longer than what
// the worker holds there.
func (w *Worker) longerLists(ctx context.Context) ([]string, error) {
	held := w.held.counts()
	lens := make([]*redis.IntCmd, len(w.queues))
	_, err := w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, q := range w.queues {
			lens[i] = pipe.LLen(ctx, w.keys.Inflight(q, w.proc))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var qs []string
	for i, q := range w.queues {
		if lens[i].Val() > int64(held[q]) {
			qs = append(qs, q)
		}
	}
	return qs, nil
}

// checkLengths is watchLengths' comparison, made by the fetch loop itself.
func (w *Worker) checkLengths(ctx context.Context) {
	qs, err := w.longerLists(ctx)
	if err != nil {
		w.log.Debug("comparing the in-flight lists with the jobs held", "err", err)
		return
	}
	w.adoptLonger(ctx, qs)
}

// adoptLonger adopts the orphans of queues qs, whose in-flight lists were
// found longer than what the worker holds there.
func (w *Worker) adoptLonger(ctx context.Context, qs []string) {
	armed := false
	for _, q := range qs {
		w.held.suspect[q] = true
		if b := w.blockers[q]; b != nil && b.armed {
			armed = true
		}
	}
	if armed {
		// A wait may have just reserved a job whose reply is on its way.
		w.disarm()
	}
	if err := w.adoptSuspects(ctx); err != nil {
		w.log.Warn("looking for jobs reserved without a reply", "err", err)
	}
}

// adoptSuspects adopts the orphans of every suspect queue whose wait is not
// armed, onto the stash, until the stash holds Concurrency jobs. A queue
// stays suspect while a look fails or finds more orphans than it adopts.
func (w *Worker) adoptSuspects(ctx context.Context) error {
	for _, q := range w.queues {
		if len(w.stash) >= w.cfg.Concurrency {
			return nil
		}
		if !w.held.suspect[q] {
			continue
		}
		if b := w.blockers[q]; b != nil && b.armed {
			continue
		}
		more, err := w.adoptOrphans(ctx, q)
		if err != nil {
			return fmt.Errorf("looking for jobs reserved without a reply in queue %q: %w", q, err)
		}
		if !more {
			delete(w.held.suspect, q)
		}
	}
	return nil
}

// adoptOrphans adopts orphans of queue q, whose wait is not armed, until the
// stash holds Concurrency jobs, and reports whether more are left.
func (w *Worker) adoptOrphans(ctx context.Context, q string) (bool, error) {
	most := max(w.cfg.Concurrency-len(w.stash), 1)
	args := append([]any{w.cfg.MaxPayload, protocol.FailedTextLimit, most}, w.held.digests(q)...)
	v, err := w.rdb.Eval(ctx, protocol.OrphansScript, []string{w.keys.Inflight(q, w.proc)}, args...).Result()
	if err != nil {
		return false, err
	}
	n, jobs, ok := orphansReply(v)
	if !ok {
		return false, fmt.Errorf("unexpected reply %v of the orphans script", v)
	}
	for _, o := range jobs {
		j, ok := reservedOf(q, o)
		if !ok {
			return false, fmt.Errorf("unexpected job %v in the reply of the orphans script", o)
		}
		w.held.hold(j)
		w.stash = append(w.stash, j)
	}
	if len(jobs) > 0 {
		w.log.Warn("found jobs reserved without a reply in flight: running them", "queue", q, "jobs", len(jobs),
			"left", n-int64(len(jobs)))
	}
	return n > int64(len(jobs)), nil
}

func orphansReply(v any) (int64, []any, bool) {
	r, ok := v.([]any)
	if !ok || len(r) != 2 {
		return 0, nil, false
	}
	n, ok1 := r[0].(int64)
	jobs, ok2 := r[1].([]any)
	return n, jobs, ok1 && ok2
}

// noRetry is a command go-redis sends once: a reserve sent again after a
// lost reply would reserve a second job, and hide that the first is in
// flight.
type noRetry struct{ *redis.Cmd }

func (noRetry) NoRetry() bool { return true }
