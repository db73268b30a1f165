package worker

import (
	"context"
	"fmt"
	"strings"
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
		w.process(ctx, slot, j)
		w.running.Add(-1)
		w.tokens <- struct{}{}
	}
}

func (w *Worker) process(ctx context.Context, slot int, j reserved) {
	if j.size > 0 {
		w.failOversize(ctx, slot, j)
		return
	}
	p, err := protocol.DecodePayloadMax([]byte(j.payload), w.cfg.MaxChunkItems)
	switch {
	case err != nil:
		w.finishJob(ctx, slot, j, &failure{exception: excDecode, message: err.Error()})
	case p.Chunk != nil:
		w.runChunk(ctx, slot, j, p)
	default:
		w.runJob(ctx, slot, j, p)
	}
}

// runJob runs a plain Resque job; a failure becomes a failed entry.
func (w *Worker) runJob(ctx context.Context, slot int, j reserved, p protocol.Payload) {
	w.setWorking(ctx, slot, j.queue, j.payload)
	f := w.call(ctx, j.queue, p)
	if ctx.Err() != nil {
		// The shutdown grace ran out: the job goes back to its queue.
		w.log.Info("job still running at the shutdown timeout; it stays queued", "queue", j.queue)
		return
	}
	w.finishJob(ctx, slot, j, f)
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

// setWorking writes Resque's worker:<id> record of the job a slot runs.
func (w *Worker) setWorking(ctx context.Context, slot int, queue, payload string) {
	if err := w.rdb.Set(ctx, w.keys.Worker(w.slots[slot]), workingOn(queue, payload), 0).Err(); err != nil {
		w.log.Warn("could not record the running job", "err", err)
	}
}

func workingOn(queue, payload string) string {
	q, err := protocol.Marshal(queue)
	if err != nil {
		q = []byte(`""`)
	}
	return `{"queue":` + string(q) + `,"run_at":"` + protocol.RunAt(time.Now()) + `","payload":` + payload + `}`
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
	w.ack(ctx, j, func(pipe redis.Pipeliner) {
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
	str(j.queue)
	b.WriteByte('}')
	return b.String()
}

// ack removes j from the in-flight list together with the writes of extra,
// in one pipeline, retrying while Redis is unreachable. If ctx ends first
// (the shutdown grace ran out), j stays in flight and goes back to its queue.
func (w *Worker) ack(ctx context.Context, j reserved, extra func(redis.Pipeliner)) {
	defer w.held.release(j)
	if ctx.Err() != nil {
		// The shutdown grace ran out while the job ran: it is being put
		// back on its queue, and whatever it did is not recorded.
		w.log.Info("job finished after the shutdown timeout; it stays queued", "queue", j.queue)
		return
	}
	attempt := 0
	err := retry(ctx, w.log, "acknowledge job", func(ctx context.Context) error {
		attempt++
		unreserve := true
		if attempt > 1 {
			// The previous attempt may have run in Redis with its reply lost.
			// Sent again, its LREM would take the in-flight entry of another
			// job with the same payload: look first.
			done, err := w.unreserved(ctx, j)
			if err != nil {
				return err
			}
			if done && !w.cluster {
				return nil // one node runs a pipeline in order: what came before the LREM ran too
			}
			unreserve = !done
		}
		_, err := w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			extra(pipe)
			if unreserve {
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
