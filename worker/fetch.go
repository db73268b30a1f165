package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/redis/go-redis/v9"
)

// Reserving jobs. Every job moves atomically from its queue into this
// process's in-flight list (LMOVE in ReserveScript or ReserveBatchScript, or
// BLMOVE), so a job is never only in memory: if the process dies, the reaper
// puts it back. A poll reserves as many jobs as there are idle slots, in one
// round trip; the fetch loop hands them out from its stash.
//
// An idle worker blocks on all its queues at once: one BLMOVE per queue, each
// on a connection of its own (a "wait"). A wait stays armed across jobs, so a
// worker that serves many queues takes a job pushed to any of them at once,
// with no polling and no per-job churn of blocking commands. When every slot
// is busy the waits are taken back (CLIENT UNBLOCK), so a worker never
// reserves a job it could not start.
//
// A reserve whose reply is lost leaves a job in flight that the worker does
// not know it holds: orphans.go finds and adopts such jobs.

// fetchLoop hands jobs to idle slots until ctx ends, or until the queues are
// empty with ExitOnComplete.
func (w *Worker) fetchLoop(ctx context.Context) {
	defer w.disarm()
	stopWatch := w.watchLengths(ctx)
	defer stopWatch()
	var bo backoff
	for {
		if !w.takeToken(ctx) {
			return
		}
		j, err := w.reserve(ctx)
		if j == nil {
			w.tokens <- struct{}{}
		}
		switch {
		case ctx.Err() != nil:
			if j != nil {
				w.stash = append(w.stash, *j) // in flight already; requeued at shutdown
			}
			return
		case err != nil:
			w.log.Warn("reserve failed, retrying", "err", err)
			bo.wait(ctx)
		case j != nil:
			bo.reset()
			w.jobs <- *j
			if j.disposed != nil {
				// Nothing more from its queue until it is acknowledged
				// (see "Jobs bigger than MaxPayload" below).
				select {
				case <-j.disposed:
				case <-ctx.Done():
				}
			}
		case w.cfg.ExitOnComplete:
			if w.checkLengths(ctx); len(w.stash) == 0 {
				return
			}
		}
	}
}

// takeToken waits for an idle slot; while every slot is busy, no wait stays
// armed, unless the worker reserves ahead (prefetch.go): then the stash is
// filled up to ahead() jobs, by a poll and by waits. It returns false when
// ctx ends.
func (w *Worker) takeToken(ctx context.Context) bool {
	select {
	case <-w.tokens:
		return true
	case <-ctx.Done():
		return false
	default:
	}
	w.disarm()
	w.refill(ctx)
	// Until a wait fails: then the next token's reserve handles it, with its
	// backoff. With ExitOnComplete no wait is ever armed, so that a poll of
	// every queue that finds nothing means the queues are empty.
	waitAhead := !w.cfg.ExitOnComplete
	for {
		switch {
		case waitAhead && w.ahead() > len(w.stash):
			if err := w.armAll(ctx); err != nil {
				w.log.Debug("waiting ahead", "err", err)
				waitAhead = false
			}
		case w.anyArmed():
			w.disarm()
		}
		select {
		case <-w.tokens:
			return true
		case r := <-w.waitResults:
			if _, err := w.waitOutcome(r); err != nil {
				w.log.Debug("waiting ahead", "queue", r.queue, "err", err)
				waitAhead = false
			} else if r.err == nil {
				w.stash = append(w.stash, r.job)
			}
		case qs := <-w.held.longer:
			w.adoptLonger(ctx, qs)
		case <-w.pause.changed:
			w.applyPauses(ctx)
		case <-ctx.Done():
			return false
		}
	}
}

// armAll arms a wait on every queue that is not paused and has none.
func (w *Worker) armAll(ctx context.Context) error {
	for _, q := range w.queues {
		if w.paused[q] {
			continue
		}
		b, err := w.blockerFor(ctx, q)
		if err != nil {
			return err
		}
		if !b.armed {
			w.arm(ctx, q, b)
		}
	}
	return nil
}

// reserve takes the next job: one a wait reserved meanwhile, else an orphan
// of a queue whose last reserve failed, else the first job of a poll of the
// queues in this round's order, else (unless ExitOnComplete) whatever arrives
// first on any queue within Interval.
func (w *Worker) reserve(ctx context.Context) (*reserved, error) {
	w.checkPauses(ctx)
	w.drainWaits()
	if j := w.unstash(); j != nil {
		return j, nil
	}
	if err := w.adoptSuspects(ctx); err != nil {
		return nil, err
	}
	if j := w.unstash(); j != nil {
		return j, nil
	}
	for _, q := range w.pollOrder() {
		if b := w.blockers[q]; (b != nil && b.armed) || w.paused[q] {
			continue // its wait takes any job pushed there at once, or it is paused
		}
		j, err := w.poll(ctx, q, w.idleSlots()+w.ahead())
		if j != nil || err != nil {
			return j, err
		}
	}
	if w.cfg.ExitOnComplete {
		return nil, nil
	}
	return w.await(ctx)
}

// unstash takes the first job of the stash, if any.
func (w *Worker) unstash() *reserved {
	if len(w.stash) == 0 {
		return nil
	}
	j := w.stash[0]
	w.stash = w.stash[1:]
	return &j
}

// pollOrder is the order of this poll: the configured order when strict, a
// weighted random order otherwise (a queue comes first with probability
// proportional to its weight, as with goworker's expanded, shuffled list).
//
// A queue's shards share its place in the order, starting at a random one,
// so that the workers spread their polls over the masters.
func (w *Worker) pollOrder() []string {
	if w.shards == 1 && w.cfg.Queues[0].Weight == 0 {
		return w.queues
	}
	if w.cfg.Queues[0].Weight == 0 {
		return w.shardOrder(w.bases)
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
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.name
	}
	return w.shardOrder(names)
}

// shardOrder is the shards of bases, base after base, each base's shards
// from a random one on.
func (w *Worker) shardOrder(bases []string) []string {
	order := make([]string, 0, len(w.queues))
	for _, q := range bases {
		shards := w.shardsOf[q]
		first := w.rng.IntN(len(shards))
		order = append(order, shards[first:]...)
		order = append(order, shards[:first]...)
	}
	return order
}

// blocker is a dedicated connection that blocks on one queue. CLIENT UNBLOCK
// with its id wakes it.
type blocker struct {
	node  *redis.Client // the server holding the queue; unblocks go there
	conn  *redis.Conn
	id    int64
	armed bool // a BLMOVE is under way on it
}

type waitResult struct {
	queue string
	job   reserved // see took
	err   error
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

// await arms a wait on every queue that has none and returns what the first
// one to finish brought: a job, nothing (its Interval passed), or an error.
// Meanwhile it looks for orphans every Heartbeat, and returns the first one
// it adopts.
func (w *Worker) await(ctx context.Context) (*reserved, error) {
	for {
		if err := w.armAll(ctx); err != nil {
			return nil, err
		}
		select {
		case r := <-w.waitResults:
			return w.waitOutcome(r)
		case <-w.pause.changed:
			w.applyPauses(ctx)
			if j := w.unstash(); j != nil {
				return j, nil
			}
			if !w.anyArmed() {
				return nil, nil // a resumed queue is polled first
			}
		case qs := <-w.held.longer:
			w.adoptLonger(ctx, qs)
			if j := w.unstash(); j != nil {
				return j, nil
			}
		case <-ctx.Done():
			return nil, nil
		}
	}
}

func (w *Worker) arm(ctx context.Context, q string, b *blocker) {
	b.armed = true
	src, dst := w.keys.Queue(q), w.keys.Inflight(q, w.proc)
	go func() {
		p, err := b.conn.BLMove(context.WithoutCancel(ctx), src, dst, "LEFT", "RIGHT", w.cfg.Interval).Result()
		j := w.took(q, p)
		if j.size > 0 {
			// The reply was read whole: give its memory back now, not at
			// the next collection (several waits may read one at once).
			debug.FreeOSMemory()
		}
		w.waitResults <- waitResult{queue: q, job: j, err: err}
	}()
}

// waitOutcome records a finished wait. After an error, what the wait did is
// unknown: its queue becomes suspect (see orphans.go).
func (w *Worker) waitOutcome(r waitResult) (*reserved, error) {
	if b := w.blockers[r.queue]; b != nil {
		b.armed = false
	}
	switch {
	case r.err == nil:
		w.held.hold(r.job)
		w.reserved(1)
		return &r.job, nil
	case errors.Is(r.err, redis.Nil):
		return nil, nil
	}
	w.held.suspect[r.queue] = true
	w.dropBlocker(r.queue)
	return nil, r.err
}

// drainWaits takes in the waits that finished meanwhile; their jobs go to the stash.
func (w *Worker) drainWaits() {
	for {
		select {
		case r := <-w.waitResults:
			w.collect(r)
		default:
			return
		}
	}
}

func (w *Worker) collect(r waitResult) {
	j, err := w.waitOutcome(r)
	if j != nil {
		w.stash = append(w.stash, *j)
	}
	if err != nil {
		w.log.Debug("blocking reserve", "queue", r.queue, "err", err)
	}
}

// disarm wakes every armed wait and collects what they reserved meanwhile. A
// wait whose BLMOVE has not reached Redis yet is not blocked there, so the
// unblock is repeated until it reports back. Waits that have already ended
// are collected first: when Redis is gone they all have (with an error), and
// an unblock would only spend go-redis' dial retries, seconds, on nothing.
func (w *Worker) disarm() {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for w.drainWaits(); w.anyArmed(); {
		w.unblockArmed()
		select {
		case r := <-w.waitResults:
			w.collect(r)
			w.drainWaits()
		case <-tick.C:
		}
	}
}

func (w *Worker) anyArmed() bool {
	for _, b := range w.blockers {
		if b.armed {
			return true
		}
	}
	return false
}

// unblockArmed sends CLIENT UNBLOCK for every armed wait, one pipeline per server.
func (w *Worker) unblockArmed() {
	byNode := map[*redis.Client][]int64{}
	for _, b := range w.blockers {
		if b.armed {
			byNode[b.node] = append(byNode[b.node], b.id)
		}
	}
	for node, ids := range byNode {
		_, err := node.Pipelined(context.Background(), func(pipe redis.Pipeliner) error {
			for _, id := range ids {
				pipe.ClientUnblock(context.Background(), id)
			}
			return nil
		})
		if err != nil {
			w.log.Debug("client unblock", "err", err)
		}
	}
}

// Jobs bigger than MaxPayload. A poll reserves with ReserveScript, which
// returns only the size and the first bytes of such a job; a wait (BLMOVE)
// reads a job whole, and keeps only as much of it. Either way the job stays
// in flight until its failed entry is written, and nothing more is reserved
// from its queue until then, so DropOversizeScript finds it at once.

// excTooLarge is the exception of the failed entry of an oversize job.
const excTooLarge = "PayloadTooLarge"

// maxMessage is the most bytes of a failure's message that a failed entry
// and the log keep: messages may quote payload text.
const maxMessage = 8 << 10

// idleSlots is how many slots a reserve may fill now: the one whose token
// the fetch loop holds, and every other idle slot. Only the fetch loop takes
// tokens, so each job of a batch it reserves finds its slot.
func (w *Worker) idleSlots() int { return 1 + len(w.tokens) }

// poll reserves up to k jobs from the head of queue q and returns the first;
// the others go to the stash. A single job is reserved with ReserveScript, a
// batch with ReserveBatchScript, one round trip either way. It sends the
// reserve once: after an error, what it did is unknown, and the queue
// becomes suspect (see orphans.go).
func (w *Worker) poll(ctx context.Context, q string, k int) (*reserved, error) {
	script, args := protocol.ReserveScript, []any{w.cfg.MaxPayload, protocol.FailedTextLimit}
	if k > 1 {
		script, args = protocol.ReserveBatchScript, append(args, k)
	}
	cmd := redis.NewCmd(ctx, append([]any{"eval", script, 2, w.keys.Queue(q), w.keys.Inflight(q, w.proc)}, args...)...)
	cmd.SetFirstKeyPos(3)
	err := w.rdb.Process(ctx, noRetry{cmd})
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		w.held.suspect[q] = true
		return nil, err
	}
	v := cmd.Val()
	if k == 1 {
		j, ok := reservedOf(q, v)
		if !ok {
			w.held.suspect[q] = true
			return nil, fmt.Errorf("reserving from queue %q: unexpected reply %v of the reserve script", q, v)
		}
		w.held.hold(j)
		w.reserved(1)
		return &j, nil
	}
	vs, ok := v.([]any)
	if !ok {
		w.held.suspect[q] = true
		return nil, fmt.Errorf("reserving from queue %q: unexpected reply %v of the batch reserve script", q, v)
	}
	jobs := make([]reserved, 0, len(vs))
	for _, v := range vs {
		j, ok := reservedOf(q, v)
		if !ok {
			// The jobs are in flight: a look for orphans finds them all.
			w.held.suspect[q] = true
			return nil, fmt.Errorf("reserving from queue %q: unexpected job %v in the reply of the batch reserve script", q, v)
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	for _, j := range jobs {
		w.held.hold(j)
	}
	w.reserved(len(jobs))
	w.stash = append(w.stash, jobs[1:]...)
	return &jobs[0], nil
}

// reserved tells the observer, if any, that n jobs were reserved.
func (w *Worker) reserved(n int) {
	if o := w.cfg.Observer; o != nil {
		o.Reserved(n)
	}
}

// reservedOf is the job of queue q that a reserve script returned: the
// payload, or the size and first bytes of an oversize one.
func reservedOf(q string, v any) (reserved, bool) {
	switch v := v.(type) {
	case string:
		return reserved{queue: q, payload: v}, true
	case []any:
		if len(v) == 2 {
			size, ok1 := v[0].(int64)
			head, ok2 := v[1].(string)
			if ok1 && ok2 {
				return oversize(q, head, int(size)), true
			}
		}
	}
	return reserved{}, false
}

// took is the job a wait brought. Of one bigger than MaxPayload only the
// first bytes are kept.
func (w *Worker) took(q, payload string) reserved {
	if len(payload) <= w.cfg.MaxPayload {
		return reserved{queue: q, payload: payload}
	}
	return oversize(q, strings.Clone(payload[:min(len(payload), protocol.FailedTextLimit)]), len(payload))
}

func oversize(q, head string, size int) reserved {
	return reserved{queue: q, payload: head, size: size, disposed: make(chan struct{})}
}

// failOversize fails a job bigger than MaxPayload, unread, and acknowledges it.
func (w *Worker) failOversize(ctx context.Context, slot int, j reserved) {
	defer close(j.disposed)
	f := &failure{exception: excTooLarge, message: fmt.Sprintf(
		"the payload is %d bytes, more than the %d bytes this worker takes (-max-payload); "+
			"send smaller jobs (for a batch, a smaller chunksize) or raise -max-payload", j.size, w.cfg.MaxPayload)}
	w.finishJob(ctx, slot, j, f)
	w.jobDone("", time.Time{}, f)
}

// unreserve removes j from the in-flight list, in pipe.
// unreserved reports whether j's entry already left the in-flight list:
// fewer entries like it are in the list than the worker holds (j among
// them). An oversize job is never reported so: DropOversizeScript finds it
// by its size and removes it only if it is there.
func (w *Worker) unreserved(ctx context.Context, j reserved) (bool, error) {
	if j.size > 0 {
		return false, nil
	}
	// COUNT 0: every position, so the reply's length is the number of entries.
	at, err := w.rdb.LPosCount(ctx, w.keys.Inflight(j.queue, w.proc), j.payload, 0, redis.LPosArgs{}).Result()
	if err != nil {
		return false, err
	}
	return len(at) < w.held.count(j), nil
}

// unreserve removes j's entry from its in-flight list, in pipe. The command
// is marked for go-redis not to send the pipeline again by itself: after a
// lost reply, ack looks first (unreserved), since the LREM sent again would
// take the entry of another job with the same payload.
func (w *Worker) unreserve(ctx context.Context, pipe redis.Pipeliner, j reserved) {
	inflight := w.keys.Inflight(j.queue, w.proc)
	cmd := redis.NewCmd(ctx, "lrem", inflight, 1, j.payload)
	if j.size > 0 {
		cmd = redis.NewCmd(ctx, "eval", protocol.DropOversizeScript, 1, inflight, j.size, j.payload)
	}
	if err := pipe.Process(ctx, noRetry{cmd}); err != nil {
		w.log.Warn("queueing the acknowledgement", "err", err)
	}
}
