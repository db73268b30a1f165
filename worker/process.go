package worker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
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
	p, err := protocol.DecodePayload([]byte(j.payload))
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
	w.finishJob(ctx, slot, j, w.call(ctx, j.queue, p))
}

func (w *Worker) call(ctx context.Context, queue string, p protocol.Payload) *failure {
	h, ok := w.reg.Lookup(p.Class)
	if !ok {
		return &failure{exception: excName, message: w.unknownClass(p.Class, queue)}
	}
	args, err := jobArgs(p.Args, w.cfg.UseNumber)
	if err != nil {
		return &failure{exception: excArgument, message: err.Error()}
	}
	ctx = withJob(ctx, Job{Queue: queue, Class: p.Class})
	_, ierr := callItem(ctx, h, args, nil)
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
// exception, error, backtrace, worker, queue}, in that order. A payload that
// is not JSON is kept as a JSON string.
func (w *Worker) failedEntry(id string, j reserved, f *failure) string {
	payload := []byte(j.payload)
	if f.exception == excDecode && !jsontext.Value(payload).IsValid() {
		if q, err := protocol.Marshal(j.payload); err == nil {
			payload = q
		}
	}
	if f.backtrace == nil {
		f.backtrace = []string{}
	}
	b, err := protocol.Marshal(struct {
		FailedAt  string         `json:"failed_at"`
		Payload   jsontext.Value `json:"payload"`
		Exception string         `json:"exception"`
		Error     string         `json:"error"`
		Backtrace []string       `json:"backtrace"`
		Worker    string         `json:"worker"`
		Queue     string         `json:"queue"`
	}{protocol.FailedAt(time.Now()), jsontext.Value(payload), f.exception, f.message, f.backtrace, id, j.queue})
	if err != nil { // only invalid UTF-8 in a message can get here
		w.log.Error("encoding failed entry", "err", err)
		return fmt.Sprintf(`{"failed_at":%q,"payload":null,"exception":"Error","error":"unencodable failure","backtrace":[],"worker":%q,"queue":%q}`,
			protocol.FailedAt(time.Now()), id, j.queue)
	}
	return string(b)
}

// ack removes j from the in-flight list together with the writes of extra,
// in one pipeline, retrying while Redis is unreachable. If ctx ends first
// (the shutdown grace ran out), j stays in flight and goes back to its queue.
func (w *Worker) ack(ctx context.Context, j reserved, extra func(redis.Pipeliner)) {
	if ctx.Err() != nil {
		// The shutdown grace ran out while the job ran: it is being put
		// back on its queue, and whatever it did is not recorded.
		w.log.Info("job finished after the shutdown timeout; it stays queued", "queue", j.queue)
		return
	}
	err := retry(ctx, w.log, "acknowledge job", func(ctx context.Context) error {
		_, err := w.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			extra(pipe)
			pipe.LRem(ctx, w.keys.Inflight(j.queue, w.proc), 1, j.payload)
			return nil
		})
		return err
	})
	if err != nil {
		w.log.Warn("job left in flight, it will run again", "queue", j.queue, "err", err)
	}
}
