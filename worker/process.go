package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/redis/go-redis/v9"
)

// Exception names of failed entries, in Ruby's spelling where Ruby has one.
const (
	excError    = "Error"         // the function returned an error (goworker's name)
	excPanic    = "Panic"         // the function panicked
	excArgument = "ArgumentError" // the arguments do not fit the function
	excName     = "NameError"     // no function is registered for the class
	excDecode   = "DecodeError"   // the payload is not a JSON job
)

// failure is what a failed entry says about a job.
type failure struct {
	exception string
	message   string
	backtrace []string
}

func (w *Worker) slotLoop(ctx context.Context, slot int) {
	for j := range w.jobs {
		w.running.Add(1)
		t := time.Now()
		w.process(ctx, slot, j)
		w.jobTime.add(time.Since(t))
		w.running.Add(-1)
		w.tokens <- struct{}{}
	}
	w.awaitAck(slot)
	w.flushCommits() // nothing stays pending once the slots are done (a record whose job was abandoned)
}

func (w *Worker) process(ctx context.Context, slot int, j reserved) {
	if j.size > 0 {
		w.failOversize(ctx, slot, j)
		return
	}
	p, err := protocol.DecodePayloadMax([]byte(j.payload), w.cfg.MaxChunkItems)
	switch {
	case err != nil:
		f := &failure{exception: excDecode, message: err.Error()}
		w.finishJob(ctx, slot, j, f)
		w.jobDone("", time.Time{}, f)
	case p.Chunk != nil:
		w.runChunk(ctx, slot, j, p)
	default:
		w.runJob(ctx, slot, j, p)
	}
}

// runJob runs a plain Resque job; a failure becomes a failed entry.
func (w *Worker) runJob(ctx context.Context, slot int, j reserved, p protocol.Payload) {
	var t0 time.Time
	if w.cfg.Observer != nil {
		t0 = time.Now()
	}
	w.setWorking(ctx, slot, w.base(j.queue), j.payload)
	f := w.call(ctx, w.base(j.queue), p)
	if ctx.Err() != nil {
		// The shutdown grace ran out: the job goes back to its queue.
		w.log.Info("job still running at the shutdown timeout; it stays queued", "queue", j.queue)
		return
	}
	w.finishJob(ctx, slot, j, f)
	w.jobDone(p.Class, t0, f)
}

// jobDone tells the observer, if any, that a plain job of function finished
// (f nil) or failed; it started at t0 (zero: unknown, no duration).
func (w *Worker) jobDone(function string, t0 time.Time, f *failure) {
	o := w.cfg.Observer
	if o == nil {
		return
	}
	var d time.Duration
	if !t0.IsZero() {
		d = time.Since(t0)
	}
	exc := ""
	if f != nil {
		exc = f.exception
	}
	o.JobDone(function, d, exc)
}

func (w *Worker) call(ctx context.Context, queue string, p protocol.Payload) *failure {
	e, ok := w.reg.lookup(p.Class)
	if !ok {
		return &failure{exception: excName, message: w.unknownClass(p.Class, queue)}
	}
	args, err := jobArgs(p.Args, w.cfg.UseNumber)
	if err != nil {
		return &failure{exception: excArgument, message: err.Error()}
	}
	ctx = withJob(ctx, Job{Queue: queue, Class: p.Class})
	var ierr *protocol.ItemError
	if lim := w.jobLimit(e); lim.d > 0 {
		if ierr, ok = w.callWithin(ctx, e.h, args, lim, p.Class, queue); !ok {
			return &failure{exception: excTimeout, message: lim.err().Error()}
		}
	} else {
		_, ierr = callItem(ctx, e.h, args, nil)
	}
	if ierr == nil {
		return nil
	}
	f := &failure{message: ierr.Error}
	switch ierr.Kind {
	case protocol.KindPanic:
		f.exception, f.backtrace = excPanic, strings.Split(strings.TrimSpace(ierr.Stack), "\n")
	case protocol.KindArguments:
		f.exception = excArgument
	default:
		f.exception = excError
	}
	return f
}

// callWithin calls h in a goroutine of its own and waits for it until lim
// passes or ctx ends. It reports false for a timeout: when it abandoned the
// call, or when the call failed at its deadline.
func (w *Worker) callWithin(outer context.Context, h Handler, args Args, lim limit, class, queue string) (*protocol.ItemError, bool) {
	ctx, cancel := context.WithTimeoutCause(outer, lim.d, lim.err())
	defer cancel()
	var cs callState
	cs.begin(1)
	res := make(chan *protocol.ItemError, 1)
	go func() {
		_, ierr := callItem(ctx, h, args, nil)
		if cs.end(1, w.runaways) {
			res <- ierr
		}
	}()
	var ierr *protocol.ItemError
	select {
	case ierr = <-res:
	case <-ctx.Done():
		if !cs.abandon(1) {
			ierr = <-res // it returned just now
			break
		}
		w.runaways.add(&cs.rec, fmt.Sprintf("%s job of queue %s", class, queue), lim)
		if outer.Err() != nil {
			w.log.Info("abandoned a job at the shutdown timeout", "function", class, "queue", queue)
		} else {
			w.log.Warn("job exceeded its time limit; abandoned it", "function", class, "queue", queue, "limit", lim.d,
				"set_by", lim.source)
		}
		return nil, false
	}
	// A job that failed at its deadline most likely failed because of it.
	return ierr, ierr == nil || outer.Err() != nil || ctx.Err() == nil
}

func (w *Worker) unknownClass(class, queue string) string {
	return fmt.Sprintf("no function registered for class %q (queue %q); this worker has: %s",
		class, queue, strings.Join(w.reg.Names(), ", "))
}

// recordWithin is how soon a running job's worker:<id> record is sent when
// no other write takes it along.
const recordWithin = 200 * time.Microsecond

// setWorking writes Resque's worker:<id> record of the job a slot runs. It
// does not wait: the record goes in the next group commit, at the latest
// recordWithin after the job started, and always before the job's
// acknowledgement (which deletes it), in the same pipeline for a short job.
func (w *Worker) setWorking(ctx context.Context, slot int, queue, payload string) {
	key, v := w.keys.Worker(w.slots[slot]), workingOn(queue, payload)
	w.commitSoon(&commit{ctx: ctx, what: "record the running job", extra: func(pipe redis.Pipeliner) {
		pipe.Set(ctx, key, v, 0)
	}}, recordWithin)
}

func workingOn(queue, payload string) string {
	return `{"queue":` + quoted(queue) + `,"run_at":"` + protocol.RunAt(time.Now()) + `","payload":` + payload + `}`
}

// quoted is s as a JSON string. A name of printable ASCII without quotes or
// backslashes, as queue names are, needs no escapes, and no encoder (once
// per job, this was a tenth of a worker's CPU on trivial jobs).
func quoted(s string) string {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, err := protocol.Marshal(s)
			if err != nil {
				return `""`
			}
			return string(q)
		}
	}
	return `"` + s + `"`
}

// finishJob acknowledges a plain job as Ruby Resque does: the in-flight copy
// goes, the slot's worker record goes, the counters count it (a failed job
// is processed too), and a failure is pushed to the failed list.
func (w *Worker) finishJob(ctx context.Context, slot int, j reserved, f *failure) {
	id := w.slots[slot]
	var entry string
	if f != nil {
		entry = w.failedEntry(id, j, f)
		w.log.Info("job failed", "queue", j.queue, "exception", f.exception, "error", f.message)
	}
	ack := w.ack
	if j.size == 0 {
		ack = func(ctx context.Context, j reserved, extra func(redis.Pipeliner)) { w.ackSoon(ctx, slot, j, extra) }
	}
	ack(ctx, j, func(pipe redis.Pipeliner) {
		pipe.Del(ctx, w.keys.Worker(id))
		pipe.HDel(ctx, w.keys.Requeues(j.queue), payloadDigest(j.payload)) // it finished: no longer poison
		w.countProcessed(ctx, pipe, id)
		if f != nil {
			pipe.RPush(ctx, w.keys.Failed(), entry)
			pipe.IncrBy(ctx, w.keys.Stat("failed"), 1)
			pipe.IncrBy(ctx, w.keys.Stat("failed:"+id), 1)
		}
	})
}

func (w *Worker) countProcessed(ctx context.Context, pipe redis.Pipeliner, id string) {
	pipe.IncrBy(ctx, w.keys.Stat("processed"), 1)
	pipe.IncrBy(ctx, w.keys.Stat("processed:"+id), 1)
}

// failedEntry is Ruby Resque's failure record: {failed_at, payload,
// exception, error, backtrace, worker, queue}, in that order. The payload is
// kept as it was when it is valid JSON (duplicate names inside allowed);
// otherwise, and for an oversize job, whose start alone is known, it is kept
// as a JSON string cut at protocol.FailedTextLimit (see protocol.AppendText).
// The message is made valid UTF-8 and cut at maxMessage, here and in the log.
func (w *Worker) failedEntry(id string, j reserved, f *failure) string {
	f.message = protocol.Sanitize(f.message, maxMessage)
	var text []byte // the payload as a JSON string, when it is not kept as it was
	switch {
	case j.size > 0:
		text = protocol.AppendText(nil, j.payload, j.size, protocol.FailedTextLimit)
	case !protocol.ValidJSON(j.payload):
		text = protocol.AppendText(nil, j.payload, len(j.payload), protocol.FailedTextLimit)
	}
	var b strings.Builder
	var q []byte // scratch for quoted strings
	str := func(s string) {
		q = protocol.AppendText(q[:0], s, len(s), len(s))
		b.Write(q)
	}
	size := 256 + len(f.message) + len(text)
	if text == nil {
		size += len(j.payload)
	}
	b.Grow(size)
	b.WriteString(`{"failed_at":`)
	str(protocol.FailedAt(time.Now()))
	b.WriteString(`,"payload":`)
	if text != nil {
		b.Write(text)
	} else {
		b.WriteString(j.payload)
	}
	b.WriteString(`,"exception":`)
	str(f.exception)
	b.WriteString(`,"error":`)
	str(f.message)
	b.WriteString(`,"backtrace":[`)
	for i, line := range f.backtrace {
		if i > 0 {
			b.WriteByte(',')
		}
		str(line)
	}
	b.WriteString(`],"worker":`)
	str(id)
	b.WriteString(`,"queue":`)
	str(w.base(j.queue)) // a retry goes to the base queue, which every worker serves
	b.WriteByte('}')
	return b.String()
}

// ack removes j from the in-flight list together with the writes of extra,
// in the next group commit, retrying while Redis is unreachable. If ctx ends
// first (the shutdown grace ran out), j stays in flight and goes back to its
// queue.
func (w *Worker) ack(ctx context.Context, j reserved, extra func(redis.Pipeliner)) {
	if ctx.Err() != nil {
		// The shutdown grace ran out while the job ran: it is being put
		// back on its queue, and whatever it did is not recorded.
		w.held.release(j)
		w.log.Info("job finished after the shutdown timeout; it stays queued", "queue", j.queue)
		return
	}
	w.commit(&commit{ctx: ctx, what: "acknowledge job", extra: extra, job: &j})
}

// Group commit. The slots' writes around a job (its worker record before it
// runs, its acknowledgement after) go through w.commits: whatever the slots
// hand in while a pipeline is on its way goes out together in the next one,
// so with many slots busy one round trip carries the bookkeeping of many
// jobs. A lone write goes out at once; nothing waits for company. Redis
// holds the same keys as with one pipeline per job: a job's record is
// queued before it runs (setWorking, not waited for) and deleted by its
// acknowledgement, queued after it; a slot queues its next job's record only
// after handing in the acknowledgement of the previous one (ackSoon), and
// queues that job's acknowledgement only once the previous one is done.
//
// Each acknowledgement keeps its commands together in the pipeline, its
// LREM last; on a single Redis a group's pipeline runs in MULTI/EXEC, so a
// lost connection leaves each commit whole or not run. When a pipeline
// fails, the commits whose commands all got their replies are done; every
// other one is sent again on its own, in pipeline order, an acknowledgement
// after the lost-reply check (unreserved), so identical payloads are told
// apart by their count as before.

// commits is the queue of writes waiting for the next pipeline. The
// goroutine that sends them runs only while there are some.
type commits struct {
	mu      sync.Mutex
	pending []*commit
	active  bool                  // a goroutine is sending pipelines
	last    map[int]chan struct{} // per slot: its acknowledgement under way (ackSoon)
}

// ackSoon is ack without waiting for it: the slot goes on to its next job
// while the acknowledgement is on its way. It waits for the slot's previous
// one first, so a slot has at most one under way (slotLoop waits for the
// last), and the slot's next worker record goes after it.
func (w *Worker) ackSoon(ctx context.Context, slot int, j reserved, extra func(redis.Pipeliner)) {
	w.awaitAck(slot)
	if ctx.Err() != nil {
		w.ack(ctx, j, extra) // says why it is not acknowledged
		return
	}
	c := &commit{ctx: ctx, what: "acknowledge job", extra: extra, job: &j, done: make(chan struct{})}
	w.commits.mu.Lock()
	w.commits.pending = append(w.commits.pending, c)
	if w.commits.last == nil {
		w.commits.last = map[int]chan struct{}{}
	}
	w.commits.last[slot] = c.done
	lead := !w.commits.active
	w.commits.active = true
	w.commits.mu.Unlock()
	if lead {
		go w.sendCommits(nil)
	}
}

// awaitAck waits until the slot's acknowledgement under way, if any, is done.
func (w *Worker) awaitAck(slot int) {
	w.commits.mu.Lock()
	done := w.commits.last[slot]
	delete(w.commits.last, slot)
	w.commits.mu.Unlock()
	if done != nil {
		<-done
	}
}

// commit is one slot's writes for the next pipeline.
type commit struct {
	ctx   context.Context
	what  string                // for the log: "acknowledge job", …
	extra func(redis.Pipeliner) // the writes
	job   *reserved             // an acknowledgement's job, removed from flight after extra's writes
	done  chan struct{}         // closed once written, or given up
	err   error                 // what failed in the group's pipeline
}

// commit sends c with the next pipeline and returns once it is written, or
// given up. When no pipeline is on its way, the caller sends it itself, with
// whatever else is pending, and leaves what comes in meanwhile to a
// goroutine: a lone write costs no hand-over between goroutines.
func (w *Worker) commit(c *commit) {
	c.done = make(chan struct{})
	w.commits.mu.Lock()
	w.commits.pending = append(w.commits.pending, c)
	lead := !w.commits.active
	w.commits.active = true
	w.commits.mu.Unlock()
	if lead {
		w.sendCommits(c.done)
	}
	<-c.done
}

// commitSoon queues c without waiting for it: it goes with the next commit,
// or on its own after d. It returns at once.
func (w *Worker) commitSoon(c *commit, d time.Duration) {
	c.done = make(chan struct{})
	w.commits.mu.Lock()
	w.commits.pending = append(w.commits.pending, c)
	w.commits.mu.Unlock()
	time.AfterFunc(d, w.flushCommits)
}

// flushCommits sends what is pending, unless a pipeline is on its way (its
// sender sends the rest), and returns once nothing is pending.
func (w *Worker) flushCommits() {
	w.commits.mu.Lock()
	lead := !w.commits.active && len(w.commits.pending) > 0
	if lead {
		w.commits.active = true
	}
	w.commits.mu.Unlock()
	if lead {
		w.sendCommits(nil)
	}
}

// sendCommits sends pipelines of what is pending until nothing is, or, with
// until, until it is closed; then a goroutine of its own sends the rest.
func (w *Worker) sendCommits(until <-chan struct{}) {
	var spare []*commit
	for {
		w.commits.mu.Lock()
		group := w.commits.pending
		if len(group) == 0 {
			w.commits.active = false
			w.commits.mu.Unlock()
			return
		}
		if until != nil && closed(until) {
			w.commits.mu.Unlock()
			go w.sendCommits(nil)
			return
		}
		w.commits.pending = spare[:0]
		w.commits.mu.Unlock()
		w.sendGroup(group)
		clear(group)
		spare = group
	}
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// sendGroup writes a group of commits in one pipeline, then sends again on
// its own every commit not known to be written.
func (w *Worker) sendGroup(group []*commit) {
	ctx := group[0].ctx
	pipe := w.rdb.Pipeline()
	if len(group) > 1 && !w.cluster {
		// In MULTI/EXEC, so that a connection lost in the middle leaves
		// every commit of the group either whole or not run at all: the
		// lost-reply check (unreserved) then tells each one exactly.
		pipe = w.rdb.TxPipeline()
	}
	ends := make([]int, len(group))
	for i, c := range group {
		c.extra(pipe)
		if c.job != nil {
			w.unreserve(ctx, pipe, *c.job)
		}
		ends[i] = pipe.Len()
	}
	cmds, _ := pipe.Exec(ctx) // each command's error is looked at below
	var failed []*commit
	from := 0
	for i, c := range group {
		for _, cmd := range cmds[from:ends[i]] {
			if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
				c.err = err
				break
			}
		}
		from = ends[i]
		if c.err != nil {
			failed = append(failed, c)
			continue
		}
		if c.job != nil {
			w.held.release(*c.job)
		}
		close(c.done)
	}
	for _, c := range failed {
		w.log.Warn("redis error, retrying", "op", c.what, "err", c.err)
		if c.job != nil {
			w.retryAck(c)
		} else if _, err := w.rdb.Pipelined(c.ctx, func(pipe redis.Pipeliner) error { c.extra(pipe); return nil }); err != nil {
			w.log.Warn("could not "+c.what, "err", err)
		}
		close(c.done)
	}
}

// retryAck sends an acknowledgement whose pipeline failed again, on its own,
// until it is written or its ctx ends (the shutdown grace ran out).
func (w *Worker) retryAck(c *commit) {
	j := *c.job
	defer w.held.release(j)
	err := retry(c.ctx, w.log, c.what, func(ctx context.Context) error {
		// The failed pipeline may have run in Redis with its reply lost.
		// Sent again, its LREM would take the in-flight entry of another
		// job with the same payload: look first.
		done, err := w.unreserved(ctx, j)
		if err != nil {
			return err
		}
		if done && !w.cluster {
			return nil // one node runs a pipeline in order: what came before the LREM ran too
		}
		_, err = w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			c.extra(pipe)
			if !done {
				w.unreserve(ctx, pipe, j)
			}
			return nil
		})
		return err
	})
	if err != nil {
		w.log.Warn("job left in flight, it will run again", "queue", j.queue, "err", err)
	}
}
