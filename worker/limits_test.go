package worker_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
)

// spinner holds functions that ignore their context: "spin" busy-loops on a
// negative argument until the test ends, and doubles any other; "hang", a
// goworker-shaped job, blocks until the test ends. "nap" sleeps its argument
// in seconds and stops when its context ends.
type spinner struct {
	release  chan struct{}
	released atomic.Bool
	running  atomic.Int64 // spins and hangs under way
}

func newSpinner(t *testing.T) *spinner {
	s := &spinner{release: make(chan struct{})}
	t.Cleanup(func() {
		s.released.Store(true)
		close(s.release)
	})
	return s
}

func (s *spinner) spin(n int) (int, error) {
	if n >= 0 {
		return 2 * n, nil
	}
	s.running.Add(1)
	defer s.running.Add(-1)
	for !s.released.Load() {
	}
	return 0, nil
}

func (s *spinner) hang(string, ...interface{}) error {
	s.running.Add(1)
	defer s.running.Add(-1)
	<-s.release
	return nil
}

func nap(ctx context.Context, seconds float64) (float64, error) {
	t := time.NewTimer(time.Duration(seconds * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return seconds, nil
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
}

func (s *spinner) registry(opts ...worker.Option) *worker.Registry {
	reg := worker.NewRegistry()
	reg.Handle("spin", worker.Func1(s.spin))
	reg.Handle("spinfn", worker.Func1(s.spin), opts...)
	reg.Register("hang", s.hang)
	reg.Register("hangfn", s.hang, opts...)
	reg.Handle("nap", worker.Reflect(nap))
	reg.Handle("add", worker.Func2(func(a, b int64) (int64, error) { return a + b, nil }))
	return reg
}

func queues(names ...string) []worker.Queue {
	qs := make([]worker.Queue, len(names))
	for i, n := range names {
		qs[i] = worker.Queue{Name: n}
	}
	return qs
}

func (e *env) pushLimitedChunk(queue, class, batch string, start int64, items string, limitMS int64) string {
	e.t.Helper()
	p, err := protocol.AppendChunk(nil, class, batch, start, []byte(items), limitMS)
	if err != nil {
		e.t.Fatal(err)
	}
	e.push(queue, string(p))
	return string(p)
}

func TestItemPastItsLimitFailsWithKindTimeoutAndTheChunkGoesOn(t *testing.T) {
	e := newEnv(t)
	s := newSpinner(t)
	cfg := e.config("hostl")
	cfg.Queues = queues("spin", "spinfn")
	cfg.ItemTimeout = 400 * time.Millisecond
	e.run(cfg, s.registry(worker.WithTimeout(200*time.Millisecond)))

	for _, tc := range []struct {
		queue   string
		limitMS int64
		want    string
	}{
		{"spin", 0, "exceeded the 400ms limit (the worker's item timeout)"},
		{"spinfn", 0, "exceeded the 200ms limit (the function's WithTimeout)"},
		{"spin", 150, "exceeded the 150ms limit (the batch's limit_ms)"},
		{"spinfn", 1000, "exceeded the 200ms limit (the function's WithTimeout)"},
	} {
		batch := fmt.Sprintf("limit-%s-%d", tc.queue, tc.limitMS)
		e.startBatch(batch)
		e.pushLimitedChunk(tc.queue, tc.queue, batch, 10, "[1,-1,2,3,-1,4]", tc.limitMS)
		_, res := e.waitChunk(batch)
		var values []string
		for _, v := range res.Values {
			values = append(values, string(v))
		}
		if got := strings.Join(values, ","); got != "2,null,4,6,null,8" {
			t.Errorf("%s: values %s; the items within their limit must succeed", batch, got)
		}
		if len(res.Errors) != 2 {
			t.Fatalf("%s: errors %+v, want the two spinning items", batch, res.Errors)
		}
		for k, ie := range res.Errors {
			if ie.Index != []int64{11, 14}[k] || ie.Kind != protocol.KindTimeout || !strings.Contains(ie.Error, tc.want) {
				t.Errorf("%s: error %+v, want index %d, kind timeout and %q", batch, ie, []int64{11, 14}[k], tc.want)
			}
		}
	}
}

func TestPlainJobPastItsLimitFailsWithTimeoutError(t *testing.T) {
	e := newEnv(t)
	s := newSpinner(t)
	cfg := e.config("hostj")
	cfg.Queues = queues("hang", "hangfn", "nap", "add")
	cfg.Concurrency = 1
	cfg.JobTimeout = 300 * time.Millisecond
	e.run(cfg, s.registry(worker.WithTimeout(100*time.Millisecond)))

	e.push("hang", `{"class":"hang","args":[]}`)
	e.push("hangfn", `{"class":"hangfn","args":[1]}`)
	e.push("nap", `{"class":"nap","args":[60]}`) // it stops at its deadline, with the context's error
	e.eventually("the three jobs fail", func() bool { return e.llen(e.keys.Failed()) == 3 })
	for i, want := range []struct{ payload, msg string }{
		{`{"class":"hang","args":[]}`, "exceeded the 300ms limit (the worker's job timeout)"},
		{`{"class":"hangfn","args":[1]}`, "exceeded the 100ms limit (the function's WithTimeout)"},
		{`{"class":"nap","args":[60]}`, "exceeded the 300ms limit (the worker's job timeout)"},
	} {
		var entry struct {
			Payload   json.RawMessage
			Exception string
			Error     string
		}
		if err := json.Unmarshal([]byte(e.rdb.LIndex(e.ctx, e.keys.Failed(), int64(i)).Val()), &entry); err != nil {
			t.Fatal(err)
		}
		if string(entry.Payload) != want.payload || entry.Exception != "TimeoutError" || !strings.Contains(entry.Error, want.msg) {
			t.Errorf("failed entry %d: %+v, want the payload, TimeoutError and %q", i, entry, want.msg)
		}
	}
	// The one slot is free again although both calls still run.
	e.startBatch("after")
	e.pushChunk("add", "add", "after", 0, "[[1,2]]")
	if _, res := e.waitChunk("after"); len(res.Values) != 1 || string(res.Values[0]) != "3" {
		t.Errorf("the next job: %+v", res)
	}
	if n := s.running.Load(); n != 2 {
		t.Errorf("%d abandoned calls still run, want 2: the test's hang ignores its context", n)
	}
}

// cancelBatch deletes a batch's keys, as a client cancelling it does.
func (e *env) cancelBatch(batch string) {
	e.t.Helper()
	err := e.rdb.Del(e.ctx, e.keys.BatchMeta(batch), e.keys.BatchResults(batch), e.keys.BatchDone(batch), e.keys.BatchTaken(batch)).Err()
	if err != nil {
		e.t.Fatal(err)
	}
}

func TestCancelledBatchesFreeTheirSlots(t *testing.T) {
	e := newEnv(t)
	s := newSpinner(t)
	cfg := e.config("hostx")
	cfg.Queues = queues("spin", "add")
	cfg.Concurrency = 2
	w, _ := e.run(cfg, s.registry())

	// Two runaway items, no limit: each holds a slot, so the worker is full.
	for _, b := range []string{"run1", "run2"} {
		e.startBatch(b)
		e.pushChunk("spin", "spin", b, 0, "[-1]")
	}
	e.eventually("both items spin", func() bool { return s.running.Load() == 2 })
	e.cancelBatch("run1")
	e.cancelBatch("run2")

	e.startBatch("next")
	e.pushChunk("add", "add", "next", 0, "[[1,2]]")
	if _, res := e.waitChunk("next"); len(res.Values) != 1 || string(res.Values[0]) != "3" {
		t.Errorf("a one-item batch after two cancelled ones: %+v", res)
	}
	e.eventually("the cancelled chunks are acknowledged", func() bool {
		return e.llen(e.keys.Inflight("spin", w.ID())) == 0
	})
	if e.exists(e.keys.BatchDone("run1"))+e.exists(e.keys.BatchResults("run2")) != 0 {
		t.Error("a cancelled batch's keys came back")
	}
}

// runRaw runs a worker, for the tests of a Run that ends by itself; wait
// returns what Run returned, failing the test if Run runs past d.
func runRaw(t *testing.T, cfg worker.Config, reg *worker.Registry) (w *worker.Worker, wait func(d time.Duration) error, logs *workertest.LockedBuffer) {
	t.Helper()
	logs = &workertest.LockedBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	started := make(chan struct{})
	cfg.OnStart = func(*worker.Worker) { close(started) }
	w, err := worker.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = w.Run(ctx); close(done) }()
	wait = func(d time.Duration) error {
		t.Helper()
		select {
		case <-done:
			return runErr
		case <-time.After(d):
			t.Fatalf("Run still runs after %v", d)
			return nil
		}
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of its context ending")
		}
		if t.Failed() {
			t.Logf("log of worker %s:\n%s", w.ID(), logs.String())
		}
	})
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not start within 30s")
	}
	return w, wait, logs
}

func TestRunawaysPastTheBoundEndRunWithErrRestartAndLoseNoWork(t *testing.T) {
	e := newEnv(t)
	s := newSpinner(t)
	cfg := e.config("hostr")
	cfg.Queues = queues("nap", "spin")
	cfg.Concurrency = 2
	cfg.ItemTimeout = 100 * time.Millisecond
	cfg.MaxRunaways = 1
	cfg.RunawayGrace = 300 * time.Millisecond
	cfg.ShutdownTimeout = 10 * time.Second
	w, wait, logs := runRaw(t, cfg, s.registry())

	// Other work: a plain job that runs through the restart.
	e.push("nap", `{"class":"nap","args":[1.5]}`)
	e.eventually("the nap runs", func() bool {
		return e.exists(e.keys.Worker(w.ID()+"-0:nap,spin"))+e.exists(e.keys.Worker(w.ID()+"-1:nap,spin")) == 1
	})
	e.startBatch("runaway")
	e.pushChunk("spin", "spin", "runaway", 0, "[-1,-1]")
	if _, res := e.waitChunk("runaway"); len(res.Errors) != 2 || res.Errors[1].Kind != protocol.KindTimeout {
		t.Fatalf("the runaway chunk: %+v", res)
	}
	err := wait(20 * time.Second)
	if !errors.Is(err, worker.ErrRestart) || !strings.Contains(err.Error(), "2 abandoned calls still run") {
		t.Errorf("Run returned %v, want ErrRestart with the count", err)
	}
	if !strings.Contains(logs.String(), "too many abandoned calls still run") {
		t.Error("the log does not say why the worker stopped")
	}
	// The nap finished within the shutdown timeout; nothing is left behind.
	if n := e.get(e.keys.Stat("processed")); n != "2" || e.llen(e.keys.Failed()) != 0 {
		t.Errorf("processed %s and %d failed, want the nap and the chunk done and nothing failed", n, e.llen(e.keys.Failed()))
	}
	if e.llen(e.keys.Queue("nap"))+e.llen(e.keys.Inflight("nap", w.ID()))+e.llen(e.keys.Inflight("spin", w.ID())) != 0 ||
		e.rdb.HExists(e.ctx, e.keys.Processes(), w.ID()).Val() {
		t.Error("after the stop, jobs are left or the worker is still registered")
	}
}

func digest(payload string) string {
	sum := sha1.Sum([]byte(payload))
	return hex.EncodeToString(sum[:])
}

func TestJobRequeuedTooOftenGoesToFailed(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("hostp")
	cfg.Queues = queues("nap")
	cfg.Concurrency = 1
	cfg.ShutdownTimeout = 100 * time.Millisecond
	cfg.MaxRequeues = 2
	job := `{"class":"nap","args":[60]}`
	e.push("nap", job)
	requeues := e.keys.Requeues("nap")
	for round := 1; round <= 3; round++ {
		w, stop := e.run(cfg, newSpinner(t).registry())
		e.eventually("the job runs", func() bool { return e.exists(e.keys.Worker(w.ID()+"-0:nap")) == 1 })
		stop() // the nap outlives the shutdown timeout: the job goes back, or to failed
		count := e.rdb.HGet(e.ctx, requeues, digest(job)).Val()
		queued := e.rdb.LRange(e.ctx, e.keys.Queue("nap"), 0, -1).Val()
		if round <= 2 {
			if len(queued) != 1 || queued[0] != job || count != fmt.Sprint(round) {
				t.Fatalf("after requeue %d: queue %q, count %q; want the job back, counted", round, queued, count)
			}
			continue
		}
		if len(queued) != 0 || count != "" || e.llen(e.keys.Poison("nap")) != 0 {
			t.Errorf("after requeue 3 of at most 2: queue %q, count %q, poison %d; want all empty", queued, count, e.llen(e.keys.Poison("nap")))
		}
		var entry struct {
			Payload   json.RawMessage
			Exception string
			Error     string
			Queue     string
		}
		if err := json.Unmarshal([]byte(e.rdb.LIndex(e.ctx, e.keys.Failed(), 0).Val()), &entry); err != nil {
			t.Fatal(err)
		}
		if string(entry.Payload) != job || entry.Exception != "RequeueLimit" || entry.Queue != "nap" ||
			!strings.Contains(entry.Error, `went back to queue "nap" more than 2 times`) ||
			!strings.Contains(entry.Error, "the last time at the shutdown of "+w.ID()) {
			t.Errorf("failed entry %+v", entry)
		}
	}
}

func TestReaperFailsAChunkRequeuedTooOftenAndCountsOthers(t *testing.T) {
	e := newEnv(t)
	dead := protocol.Process{ID: "ghost:7", Host: "ghost", PID: 7, Queues: []string{"add"}, Slots: []string{"ghost:7-0:add"}, Version: 1}
	rec, err := protocol.Marshal(dead)
	if err != nil {
		t.Fatal(err)
	}
	e.startBatch("poisoned")
	chunk, err := protocol.AppendChunk(nil, "add", "poisoned", 5, []byte("[[1,2],[3,4]]"), 0)
	if err != nil {
		t.Fatal(err)
	}
	job := `{"class":"add","args":[1,1]}`
	requeues := e.keys.Requeues("add")
	// The chunk went back three times already; the job never did.
	if err := e.rdb.HSet(e.ctx, requeues, digest(string(chunk)), 3).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(e.ctx, e.keys.Processes(), dead.ID, rec).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.RPush(e.ctx, e.keys.Inflight("add", dead.ID), string(chunk), job).Err(); err != nil {
		t.Fatal(err)
	}
	cfg := e.config("hostq")
	cfg.Queues = queues("spin") // it reaps, but takes nothing from "add"
	e.run(cfg, newSpinner(t).registry())

	start, res := e.waitChunk("poisoned")
	if start != 5 || len(res.Errors) != 2 {
		t.Fatalf("outcome of the poisoned chunk: start %d, %+v", start, res)
	}
	for _, ie := range res.Errors {
		if ie.Kind != protocol.KindRequeueLimit || !strings.Contains(ie.Error, "more than 3 times") ||
			!strings.Contains(ie.Error, "after its worker ghost:7 died") {
			t.Errorf("item error %+v", ie)
		}
	}
	if q := e.rdb.LRange(e.ctx, e.keys.Queue("add"), 0, -1).Val(); len(q) != 1 || q[0] != job {
		t.Errorf("queue %q: want only the job back", q)
	}
	if c := e.rdb.HGetAll(e.ctx, requeues).Val(); len(c) != 1 || c[digest(job)] != "1" {
		t.Errorf("requeue counts %v: want the job's at 1 and the chunk's gone", c)
	}
	if ttl := e.rdb.PTTL(e.ctx, requeues).Val(); ttl <= 0 {
		t.Errorf("the requeue counts have no TTL (%v)", ttl)
	}
	if e.llen(e.keys.Failed()) != 0 {
		t.Error("a chunk's items fail in its outcome, not in the failed list")
	}
}

func TestFinishedJobForgetsItsRequeues(t *testing.T) {
	e := newEnv(t)
	job := `{"class":"add","args":[1,1]}`
	other := digest(`{"class":"add","args":[2,2]}`)
	requeues := e.keys.Requeues("add")
	if err := e.rdb.HSet(e.ctx, requeues, digest(job), 2, other, 1).Err(); err != nil {
		t.Fatal(err)
	}
	e.push("add", job)
	cfg := e.config("hostf")
	cfg.Queues = queues("add")
	e.run(cfg, newSpinner(t).registry())
	e.eventually("the job is done", func() bool { return e.get(e.keys.Stat("processed")) == "1" })
	if c := e.rdb.HGetAll(e.ctx, requeues).Val(); len(c) != 1 || c[other] != "1" {
		t.Errorf("requeue counts %v: want only the other payload's", c)
	}
}

func TestLimitFlagsMapOntoConfig(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fl := worker.BindFlags(fs)
	err := fs.Parse([]string{"-item-timeout", "2s", "-job-timeout", "3m", "-max-runaways", "4", "-runaway-grace", "5s",
		"-max-requeues", "6"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fl.Config(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ItemTimeout != 2*time.Second || cfg.JobTimeout != 3*time.Minute || cfg.MaxRunaways != 4 ||
		cfg.RunawayGrace != 5*time.Second || cfg.MaxRequeues != 6 {
		t.Errorf("config %+v", cfg)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-max-requeues", "0"}, "-1 for no limit"},
		{[]string{"-max-runaways", "-2"}, "-1 for no bound"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fl := worker.BindFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if _, err := fl.Config(func(string) string { return "" }); !errors.Is(err, worker.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a config error saying %q", tc.args, err, tc.want)
		}
	}
	reg := worker.NewRegistry()
	reg.Handle("f", worker.Func0(func() (int, error) { return 0, nil }))
	if _, err := worker.New(worker.Config{ItemTimeout: -time.Second}, reg); !errors.Is(err, worker.ErrConfig) {
		t.Errorf("a negative ItemTimeout: %v", err)
	}
}

func TestLimitedItemsContextCarriesTheDeadlineAndEndsAtIt(t *testing.T) {
	e := newEnv(t)
	type seen struct {
		left  time.Duration // from the call to its deadline
		cause error
	}
	calls := make(chan seen, 1)
	reg := worker.NewRegistry()
	reg.Handle("watch", worker.Reflect(func(ctx context.Context) (int, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			calls <- seen{}
			return 0, nil
		}
		left := time.Until(dl)
		<-ctx.Done()
		calls <- seen{left: left, cause: context.Cause(ctx)}
		return 0, ctx.Err()
	}))
	cfg := e.config("hostd")
	cfg.Queues = queues("watch")
	e.run(cfg, reg)
	e.startBatch("watched")
	e.pushLimitedChunk("watch", "watch", "watched", 0, "[[]]", 200)
	var s seen
	select {
	case s = <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("the item's context never ended")
	}
	if s.left < 150*time.Millisecond || s.left > 250*time.Millisecond {
		t.Errorf("the item's deadline was %v away, want about 200ms", s.left)
	}
	if s.cause == nil || !strings.Contains(s.cause.Error(), "exceeded the 200ms limit (the batch's limit_ms)") {
		t.Errorf("the context's cause is %v, want the limit", s.cause)
	}
	if _, res := e.waitChunk("watched"); len(res.Errors) != 1 || res.Errors[0].Kind != protocol.KindTimeout {
		t.Errorf("outcome %+v, want a timeout", res)
	}
}

func TestRequeueLimitOnARedisCluster(t *testing.T) {
	uri := redistest.StartCluster(t)
	rdb := redistest.ClusterClient(t, uri)
	ctx := context.Background()
	keys := protocol.NewKeys("")
	job := `{"class":"nap","args":[60]}`
	if err := rdb.RPush(ctx, keys.Queue("nap"), job).Err(); err != nil {
		t.Fatal(err)
	}
	cfg := worker.Config{URI: uri, Hostname: "cl", Queues: queues("nap"), Concurrency: 1, Heartbeat: 50 * time.Millisecond,
		DeadAfter: 250 * time.Millisecond, ShutdownTimeout: 100 * time.Millisecond, MaxRequeues: 1}
	for round := 1; round <= 2; round++ {
		w, stop := workertest.Run(t, cfg, newSpinner(t).registry())
		redistest.Eventually(t, 10*time.Second, "the job runs", func() bool {
			return rdb.Exists(ctx, keys.Worker(w.ID()+"-0:nap")).Val() == 1
		})
		stop()
	}
	if n := rdb.LLen(ctx, keys.Queue("nap")).Val(); n != 0 {
		t.Errorf("%d jobs queued after two requeues of at most one", n)
	}
	entry := rdb.LIndex(ctx, keys.Failed(), 0).Val()
	if !strings.Contains(entry, `"exception":"RequeueLimit"`) || !strings.Contains(entry, job) {
		t.Errorf("failed entry %q", entry)
	}
}
