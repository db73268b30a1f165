package worker

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Time limits. A call (a plain job, or one item of a chunk) gets the
// smallest of the limits that are set: the worker's (Config.JobTimeout or
// Config.ItemTimeout), the function's (WithTimeout) and, for an item, its
// batch's ("limit_ms"). Its context carries the deadline. A call still running
// at its deadline, or when its batch is cancelled, is abandoned: its slot goes
// on at once and the call's goroutine is left to end by itself. Go cannot stop
// a goroutine, so the worker counts the abandoned calls that still run; when
// more than Config.MaxRunaways run past their grace, Run stops and returns
// ErrRestart, and workercmd re-executes the process.

// Exception names of failed entries for the limits, beside those of process.go.
const (
	excTimeout      = "TimeoutError" // the job ran past its time limit and was abandoned
	excRequeueLimit = "RequeueLimit" // the job went back to its queue more than MaxRequeues times
)

// ErrRestart is wrapped by the error Run returns when the worker stopped
// itself because more than Config.MaxRunaways abandoned calls still ran. The
// shutdown was a clean one: running jobs finished or went back to their
// queues, and the worker unregistered. Only a new process frees the CPU those
// calls hold; workercmd re-executes its binary.
var ErrRestart = errors.New("worker: restart needed")

// limit is the time limit of one call and what set it.
type limit struct {
	d      time.Duration // 0: none
	source string
}

// min returns the smaller of l and d, a limit that source sets (d ≤ 0: none).
func (l limit) min(d time.Duration, source string) limit {
	if d > 0 && (l.d == 0 || d < l.d) {
		return limit{d: d, source: source}
	}
	return l
}

// err is what a call that ran past l becomes.
func (l limit) err() error {
	return fmt.Errorf("exceeded the %v limit (%s): raise that limit, or make the call faster", l.d, l.source)
}

// itemLimit is the limit of each item of a chunk of class's function.
func (w *Worker) itemLimit(e entry, limitMS int64) limit {
	l := limit{}.min(w.cfg.ItemTimeout, "the worker's item timeout").min(e.timeout, "the function's WithTimeout")
	if limitMS <= math.MaxInt64/int64(time.Millisecond) { // beyond, it is no limit in practice
		l = l.min(time.Duration(limitMS)*time.Millisecond, "the batch's limit_ms")
	}
	return l
}

// jobLimit is the limit of a plain job of class's function.
func (w *Worker) jobLimit(e entry) limit {
	return limit{}.min(w.cfg.JobTimeout, "the worker's job timeout").min(e.timeout, "the function's WithTimeout")
}

// callState is shared by a goroutine that runs calls and the one that may
// abandon it. state is 0 between calls, a positive token while a call runs,
// and -1 once the running call was abandoned. Whoever abandons a call owns
// the runner's other fields from then on; the runner, when the call returns,
// only tells rec that it did and stops.
type callState struct {
	state atomic.Int64
	rec   runaway
}

// begin marks a call with token (> 0, a new one for each call) as running.
func (s *callState) begin(token int64) { s.state.Store(token) }

// end marks the call of token as returned. It reports false when the call
// was abandoned meanwhile: its outcome is then someone else's, and the caller
// must stop using shared state.
func (s *callState) end(token int64, rw *runaways) bool {
	if s.state.CompareAndSwap(token, 0) {
		return true
	}
	rw.done(&s.rec)
	return false
}

// abandon takes over the call of token, if it still runs; the caller then
// records it with runaways.add.
func (s *callState) abandon(token int64) bool { return s.state.CompareAndSwap(token, -1) }

// runaways are the abandoned calls that still run.
type runaways struct {
	max   int           // more than this many past their grace: restart; < 0: never
	grace time.Duration // Config.RunawayGrace
	over  func(n int, oldest string)

	mu    sync.Mutex
	calls map[*runaway]struct{}
	fired bool // over was called, or the worker stopped
}

// runaway is one abandoned call. Its fields are guarded by runaways.mu.
type runaway struct {
	what     string
	since    time.Time
	grace    time.Duration
	returned bool
}

func newRunaways(max int, grace time.Duration, over func(n int, oldest string)) *runaways {
	return &runaways{max: max, grace: grace, over: over, calls: map[*runaway]struct{}{}}
}

// add records an abandoned call, unless it has returned already. Once its
// grace (the longer of RunawayGrace and its limit) has passed, the calls past
// theirs are counted.
func (rw *runaways) add(r *runaway, what string, lim limit) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if r.returned {
		return
	}
	r.what, r.since, r.grace = what, time.Now(), max(rw.grace, lim.d)
	rw.calls[r] = struct{}{}
	if rw.max >= 0 {
		time.AfterFunc(r.grace, rw.check)
	}
}

// stop ends the watch: over is not called from now on.
func (rw *runaways) stop() {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.fired = true
}

// done forgets a call that returned.
func (rw *runaways) done(r *runaway) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	r.returned = true
	delete(rw.calls, r)
}

// check calls over, once, when more than max calls run past their grace.
func (rw *runaways) check() {
	now := time.Now()
	rw.mu.Lock()
	n, oldest := 0, (*runaway)(nil)
	for r := range rw.calls {
		if now.Sub(r.since) >= r.grace {
			n++
			if oldest == nil || r.since.Before(oldest.since) {
				oldest = r
			}
		}
	}
	fire := n > rw.max && !rw.fired
	var desc string
	if fire {
		rw.fired = true
		desc = fmt.Sprintf("%s, abandoned %v ago", oldest.what, now.Sub(oldest.since).Round(time.Millisecond))
	}
	rw.mu.Unlock()
	if fire {
		rw.over(n, desc)
	}
}

// restartCause is the cause Run's context ends with when the runaways
// exceed their bound.
func restartCause(n, bound int, oldest string) error {
	return fmt.Errorf("%w: %d abandoned calls still run, more than the bound of %d (the oldest: %s)", ErrRestart, n, bound, oldest)
}

// limitCtx is the context of one item with a time limit: its chunk's, plus
// the deadline. context.WithDeadline costs a timer and a registration with
// the parent for every item, about 0.5µs, more than a trivial item itself;
// so limitCtx builds that context only when the item asks for Done, or for
// Err past the deadline. Until then Err compares the clock, and Value (which
// context.Cause uses) is the parent's. It is small, since there is one per
// item: what the items of a chunk share is in limitBase.
type limitCtx struct {
	base *limitBase
	dl   int64 // the deadline, in ns since base.t0
	lazy atomic.Pointer[lazyCtx]
}

// limitBase is what the limitCtx of a chunk's items share.
type limitBase struct {
	parent context.Context
	t0     time.Time
	cause  error
}

type lazyCtx struct {
	ctx  context.Context
	stop context.CancelFunc
}

func (c *limitCtx) Deadline() (time.Time, bool) { return c.base.t0.Add(time.Duration(c.dl)), true }

func (c *limitCtx) Done() <-chan struct{} { return c.real().Done() }

func (c *limitCtx) Err() error {
	if l := c.lazy.Load(); l != nil {
		return l.ctx.Err()
	}
	if err := c.base.parent.Err(); err != nil {
		return err
	}
	if int64(time.Since(c.base.t0)) >= c.dl {
		return c.real().Err()
	}
	return nil
}

func (c *limitCtx) Value(key any) any {
	if l := c.lazy.Load(); l != nil {
		return l.ctx.Value(key)
	}
	return c.base.parent.Value(key)
}

func (c *limitCtx) String() string {
	d, _ := c.Deadline()
	return fmt.Sprintf("worker.limitCtx(deadline %v)", d)
}

func (c *limitCtx) real() context.Context {
	if l := c.lazy.Load(); l != nil {
		return l.ctx
	}
	d, _ := c.Deadline()
	ctx, stop := context.WithDeadlineCause(c.base.parent, d, c.base.cause)
	if !c.lazy.CompareAndSwap(nil, &lazyCtx{ctx: ctx, stop: stop}) {
		stop()
		return c.lazy.Load().ctx
	}
	return ctx
}

// expire ends the context at its deadline, which has passed: it returns once
// the context is done with its limit as the cause, so that the chunk's
// context, cancelled next, does not take its place.
func (c *limitCtx) expire() { <-c.real().Done() }

// release frees the context's timer, if it has one, once its call returned.
func (c *limitCtx) release() {
	if l := c.lazy.Load(); l != nil {
		l.stop()
	}
}

// payloadDigest is the field of a payload in its queue's requeue counts:
// the SHA-1 in hex, as Lua's redis.sha1hex writes it.
func payloadDigest(payload string) string {
	sum := sha1.Sum([]byte(payload))
	return hex.EncodeToString(sum[:])
}
