package worker

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// fetchLoop hands jobs to idle slots until ctx ends, or until the queues are
// empty with ExitOnComplete. Every job it reserves moves atomically from its
// queue into this process's in-flight list (LMOVE/BLMOVE), so a job is never
// only in memory: if the process dies, the reaper puts it back.
func (w *Worker) fetchLoop(ctx context.Context) {
	var bo backoff
	for {
		select {
		case <-w.tokens:
		case <-ctx.Done():
			return
		}
		j, err := w.reserve(ctx)
		if j == nil {
			w.tokens <- struct{}{}
		}
		switch {
		case ctx.Err() != nil:
			if j != nil {
				w.stash = append(w.stash, *j) // in-flight already; requeued at shutdown
			}
			return
		case err != nil:
			w.log.Warn("reserve failed, retrying", "err", err)
			bo.wait(ctx)
		case j != nil:
			bo.reset()
			w.jobs <- *j
		case w.cfg.ExitOnComplete:
			return
		}
	}
}

// reserve takes the next job: one a blocking race left over, else the first
// job of a poll of the queues in this round's order, else (unless
// ExitOnComplete) whatever arrives first on any queue within Interval.
func (w *Worker) reserve(ctx context.Context) (*reserved, error) {
	if len(w.stash) > 0 {
		j := w.stash[0]
		w.stash = w.stash[1:]
		return &j, nil
	}
	for _, q := range w.pollOrder() {
		p, err := w.rdb.LMove(ctx, w.keys.Queue(q), w.keys.Inflight(q, w.proc), "LEFT", "RIGHT").Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &reserved{queue: q, payload: p}, nil
	}
	if w.cfg.ExitOnComplete {
		return nil, nil
	}
	return w.race(ctx)
}

// pollOrder is the order of this poll: the configured order when strict, a
// weighted random order otherwise (a queue comes first with probability
// proportional to its weight, as with goworker's expanded, shuffled list).
func (w *Worker) pollOrder() []string {
	if w.cfg.Queues[0].Weight == 0 {
		return w.queues
	}
	type keyed struct {
		name string
		key  float64
	}
	ks := make([]keyed, len(w.cfg.Queues))
	for i, q := range w.cfg.Queues {
		// Efraimidis–Spirakis: sorting by u^(1/w) descending samples
		// without replacement in proportion to the weights.
		ks[i] = keyed{q.Name, math.Pow(w.rng.Float64(), 1/float64(q.Weight))}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		switch {
		case a.key > b.key:
			return -1
		case a.key < b.key:
			return 1
		}
		return 0
	})
	order := make([]string, len(ks))
	for i, k := range ks {
		order[i] = k.name
	}
	return order
}

// blocker is a dedicated connection that blocks on one queue. CLIENT UNBLOCK
// with its id wakes it, so a worker can block on every queue at once and stop
// the other waits as soon as one returns.
type blocker struct {
	node *redis.Client // the server holding the queue; unblocks go there
	conn *redis.Conn
	id   int64
}

func (w *Worker) blockerFor(ctx context.Context, q string) (*blocker, error) {
	if b, ok := w.blockers[q]; ok {
		return b, nil
	}
	var node *redis.Client
	switch c := w.blockRDB.(type) {
	case *redis.Client:
		node = c
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, w.keys.Queue(q))
		if err != nil {
			return nil, err
		}
		node = n
	}
	conn := node.Conn()
	id, err := conn.ClientID(ctx).Result()
	if err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	b := &blocker{node: node, conn: conn, id: id}
	w.blockers[q] = b
	return b, nil
}

func (w *Worker) dropBlocker(q string) {
	if b, ok := w.blockers[q]; ok {
		delete(w.blockers, q)
		if err := b.conn.Close(); err != nil {
			w.log.Debug("closing blocking connection", "queue", q, "err", err)
		}
	}
}

func (w *Worker) closeBlockers() {
	for q := range w.blockers {
		w.dropBlocker(q)
	}
}

type raceResult struct {
	queue   string
	payload string
	err     error
}

// race blocks on every queue at once (BLMOVE into the in-flight list) and
// returns the first job to arrive. The other waits are woken with CLIENT
// UNBLOCK; a job one of them reserved in the meantime is stashed for the next
// idle slot. When ctx ends, every wait is woken and race returns nil.
func (w *Worker) race(ctx context.Context) (*reserved, error) {
	results := make(chan raceResult, len(w.queues))
	waiting := map[string]*blocker{}
	for _, q := range w.queues {
		b, err := w.blockerFor(ctx, q)
		if err != nil {
			if first := w.collectRace(w.unblockAll(waiting, results), nil); first != nil {
				return first, nil
			}
			return nil, err
		}
		waiting[q] = b
		go func() {
			p, err := b.conn.BLMove(context.WithoutCancel(ctx), w.keys.Queue(q), w.keys.Inflight(q, w.proc),
				"LEFT", "RIGHT", w.cfg.Interval).Result()
			results <- raceResult{queue: q, payload: p, err: err}
		}()
	}
	var first *reserved
	var firstErr error
	for len(waiting) > 0 && first == nil && firstErr == nil {
		select {
		case r := <-results:
			delete(waiting, r.queue)
			first, firstErr = w.raceOutcome(r, first)
		case <-ctx.Done():
			// A job reserved meanwhile is in flight already: hand it back.
			return w.collectRace(w.unblockAll(waiting, results), first), nil
		}
	}
	first = w.collectRace(w.unblockAll(waiting, results), first)
	return first, firstErr
}

// raceOutcome records one finished wait: a job becomes first (or is stashed),
// an error drops the connection.
func (w *Worker) raceOutcome(r raceResult, first *reserved) (*reserved, error) {
	switch {
	case r.err == nil:
		j := reserved{queue: r.queue, payload: r.payload}
		if first == nil {
			return &j, nil
		}
		w.stash = append(w.stash, j)
		return first, nil
	case errors.Is(r.err, redis.Nil):
		return first, nil
	}
	w.dropBlocker(r.queue)
	return first, r.err
}

func (w *Worker) collectRace(rest []raceResult, first *reserved) *reserved {
	for _, r := range rest {
		var err error
		first, err = w.raceOutcome(r, first)
		if err != nil {
			w.log.Debug("blocking reserve", "queue", r.queue, "err", err)
		}
	}
	return first
}

// unblockAll wakes every wait still running and returns how they ended. A
// wait whose BLMOVE has not reached Redis yet is not blocked, so the unblock
// is repeated until its result arrives.
func (w *Worker) unblockAll(waiting map[string]*blocker, results <-chan raceResult) []raceResult {
	var out []raceResult
	if len(waiting) == 0 {
		return out
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, b := range waiting {
			if err := b.node.ClientUnblock(context.Background(), b.id).Err(); err != nil {
				w.log.Debug("client unblock", "err", err)
			}
		}
		select {
		case r := <-results:
			delete(waiting, r.queue)
			out = append(out, r)
			if len(waiting) == 0 {
				return out
			}
		case <-tick.C:
		}
	}
}
