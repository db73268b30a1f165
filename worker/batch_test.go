package worker_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
)

// A worker with idle slots reserves as many jobs as it has idle slots in one
// round trip (ReserveBatchScript), and acknowledges finished jobs together
// (group commit). These tests check that nothing is lost on the way.

func isBatchReserve(args []string) bool {
	return strings.EqualFold(args[0], "eval") && len(args) > 1 && args[1] == protocol.ReserveBatchScript
}

// gate is a function whose calls block until the test lets them finish; it
// reports each call's first argument.
func gate(class string, release <-chan struct{}) (*worker.Registry, chan string) {
	started := make(chan string, 100)
	reg := worker.NewRegistry()
	reg.Register(class, func(_ string, args ...interface{}) error {
		started <- fmt.Sprint(args...)
		<-release
		return nil
	})
	return reg, started
}

// receiveN waits for n calls and returns their arguments, sorted.
func receiveN(t *testing.T, calls <-chan string, n int, d time.Duration, what string) []string {
	t.Helper()
	var got []string
	deadline := time.After(d)
	for len(got) < n {
		select {
		case c := <-calls:
			got = append(got, c)
		case <-deadline:
			t.Fatalf("%s: %d calls within %v, want %d (%v)", what, len(got), d, n, got)
		}
	}
	slices.Sort(got)
	return got
}

// Four jobs queued for a worker with four idle slots: one reserve takes
// them all, every one sits in the in-flight list while it runs, and each
// runs once.
func TestBatchReserveKeepsEveryJobInFlight(t *testing.T) {
	e := newEnv(t)
	proxy := redistest.StartProxy(t, e.srv)
	var reserves atomic.Int32
	proxy.DropReplyTo(func(args []string) bool {
		if isBatchReserve(args) || isReserve(args) {
			reserves.Add(1)
		}
		return false // count only
	})
	release := make(chan struct{})
	reg, started := gate("batch", release)
	for i := range 4 {
		e.push("batch", fmt.Sprintf(`{"class":"batch","args":[%d]}`, i))
	}
	cfg := e.config("hostbr")
	cfg.URI = proxy.URI
	cfg.Queues = []worker.Queue{{Name: "batch"}}
	cfg.Concurrency = 4
	w, stop := e.run(cfg, reg)
	got := receiveN(t, started, 4, 10*time.Second, "the four jobs")
	if fmt.Sprint(got) != "[0 1 2 3]" {
		t.Errorf("ran %v, want [0 1 2 3]", got)
	}
	inflight := e.keys.Inflight("batch", w.ID())
	if n := e.llen(inflight); n != 4 {
		t.Errorf("%d jobs in flight while four run, want 4", n)
	}
	if n := e.llen(e.keys.Queue("batch")); n != 0 {
		t.Errorf("%d jobs still queued, want 0", n)
	}
	if n := reserves.Load(); n != 1 {
		t.Errorf("%d reserve scripts sent for four jobs and four idle slots, want 1", n)
	}
	close(release)
	e.eventually("the four jobs acknowledged", func() bool {
		return e.llen(inflight) == 0 && e.get(e.keys.Stat("processed")) == "4"
	})
	stop()
	select {
	case c := <-started:
		t.Errorf("ran %s again", c)
	default:
	}
}

// The reply of a batch reserve is lost: every job it moved into flight runs
// all the same, within two heartbeats, and once.
func TestJobsOfALostBatchReserveReplyRun(t *testing.T) {
	e := newEnv(t)
	proxy := redistest.StartProxy(t, e.srv)
	release := make(chan struct{})
	close(release)
	reg, started := gate("orphb", release)
	for i := range 3 {
		e.push("orphb", fmt.Sprintf(`{"class":"orphb","args":[%d]}`, i))
	}
	proxy.DropReplyTo(isBatchReserve)
	cfg := e.orphanConfig("hostlb", proxy, "orphb")
	cfg.Concurrency = 3
	w, stop := e.run(cfg, reg)
	got := receiveN(t, started, 3, 2*cfg.Heartbeat, "the jobs of the lost reply")
	if fmt.Sprint(got) != "[0 1 2]" {
		t.Errorf("ran %v, want [0 1 2]", got)
	}
	if proxy.Drops() != 1 {
		t.Fatalf("%d replies dropped, want 1: the test tests nothing", proxy.Drops())
	}
	inflight := e.keys.Inflight("orphb", w.ID())
	e.eventually("the three jobs acknowledged", func() bool {
		return e.llen(inflight) == 0 && e.get(e.keys.Stat("processed")) == "3"
	})
	stop()
	select {
	case c := <-started:
		t.Errorf("ran %s again", c)
	default:
	}
	if n := e.llen(e.keys.Queue("orphb")); n != 0 {
		t.Errorf("%d jobs left queued", n)
	}
}

// Six of eight jobs with the same payload finish at once, so their
// acknowledgements go out together, and the reply of one of them is lost:
// the worker must not send the lost ones again blindly. Their LREMs would
// take the in-flight entries of the two copies still running, and their
// counters would count jobs twice.
func TestLostGroupAckReplyTakesNoOtherJobsEntry(t *testing.T) {
	e := newEnv(t)
	proxy := redistest.StartProxy(t, e.srv)
	quick, slow := make(chan struct{}), make(chan struct{})
	started := make(chan struct{}, 8)
	var n atomic.Int32
	reg := worker.NewRegistry()
	reg.Register("same", func(string, ...interface{}) error {
		gate := quick
		if n.Add(1) > 6 {
			gate = slow
		}
		started <- struct{}{}
		<-gate
		return nil
	})
	job := `{"class":"same","args":[]}`
	for range 8 {
		e.push("same", job)
	}
	cfg := e.config("hostga")
	cfg.URI = proxy.URI
	cfg.Queues = []worker.Queue{{Name: "same"}}
	cfg.Concurrency = 8
	w, stop := e.run(cfg, reg)
	for range 8 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the eight jobs did not all start within 10s")
		}
	}
	inflight := e.keys.Inflight("same", w.ID())
	// Drop the reply of the second LREM: the first may go out alone, the
	// others queue up behind it and go out together.
	var mu sync.Mutex
	lrems := 0
	proxy.DropReplyTo(func(args []string) bool {
		if !strings.EqualFold(args[0], "lrem") {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		lrems++
		return lrems == 2
	})
	close(quick)
	e.eventually("the six quick copies acknowledged, a reply lost", func() bool {
		processed, _ := strconv.Atoi(e.get(e.keys.Stat("processed")))
		return proxy.Drops() == 1 && processed >= 6 && e.llen(inflight) <= 2
	})
	// Whatever the worker does after the lost reply (a retry comes after a
	// backoff of at most a few hundred ms), the slow copies' entries must
	// stay in flight while they run: watch them for five heartbeats.
	deadline := time.Now().Add(5 * cfg.Heartbeat)
	for time.Now().Before(deadline) {
		if got := e.llen(inflight); got != 2 {
			t.Fatalf("%d entries in flight while two copies run, want 2: a retried ack took another's entry", got)
		}
		if got := e.get(e.keys.Stat("processed")); got != "6" {
			t.Fatalf("stat:processed = %s while two copies run, want 6: an acknowledgement was counted twice", got)
		}
		time.Sleep(cfg.Heartbeat / 10)
	}
	close(slow)
	e.eventually("the slow copies acknowledged", func() bool { return e.llen(inflight) == 0 })
	stop()
	if got := e.get(e.keys.Stat("processed")); got != "8" {
		t.Errorf("stat:processed = %s, want 8: an acknowledgement was counted twice or lost", got)
	}
	if n.Load() != 8 {
		t.Errorf("%d calls, want 8: a job ran again", n.Load())
	}
}

// ReserveBatchScript moves up to k jobs into flight and stops after one
// bigger than the max payload, of which it returns the size and first bytes.
func TestReserveBatchScriptStopsAfterAnOversizeJob(t *testing.T) {
	e := newEnv(t)
	q, inflight := e.keys.Queue("rb"), e.keys.Inflight("rb", "host:1")
	big := strings.Repeat("b", 50)
	e.push("rb", "j1", big, "j3", "j4")
	v, err := e.rdb.Eval(e.ctx, protocol.ReserveBatchScript, []string{q, inflight}, 10, 4, 3).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(v); got != "[j1 [50 bbbb]]" {
		t.Errorf("reply %s, want [j1 [50 bbbb]]: j1 whole, then the oversize job's size and first 4 bytes", got)
	}
	if got := e.rdb.LRange(e.ctx, inflight, 0, -1).Val(); fmt.Sprint(got) != fmt.Sprint([]string{"j1", big}) {
		t.Errorf("in flight: %v, want j1 and the oversize job", got)
	}
	v, err = e.rdb.Eval(e.ctx, protocol.ReserveBatchScript, []string{q, inflight}, 10, 4, 5).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(v); got != "[j3 j4]" {
		t.Errorf("second reply %s, want [j3 j4]", got)
	}
	v, err = e.rdb.Eval(e.ctx, protocol.ReserveBatchScript, []string{q, inflight}, 10, 4, 5).Result()
	if err != nil || fmt.Sprint(v) != "[]" {
		t.Errorf("reply on an empty queue: %v, %v; want [] and no error", v, err)
	}
	if n := e.llen(inflight); n != 4 {
		t.Errorf("%d jobs in flight, want 4", n)
	}
}

// A batch reserve stops after a job bigger than the worker's max payload:
// that job is failed unread, and the jobs behind it run after it.
func TestBatchReserveStopsAfterAnOversizeJob(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("bigb")
	const limit = 1000
	big := `{"class":"bigb","args":["` + strings.Repeat("b", 2*limit) + `"]}`
	e.push("bigb", `{"class":"bigb","args":[0]}`, big, `{"class":"bigb","args":[2]}`, `{"class":"bigb","args":[3]}`)
	cfg := e.config("hostbb")
	cfg.Queues = []worker.Queue{{Name: "bigb"}}
	cfg.Concurrency = 4
	cfg.MaxPayload = limit
	w, stop := e.run(cfg, reg)
	var got []string
	for range 3 {
		got = append(got, fmt.Sprint(receive(t, calls).args...))
	}
	slices.Sort(got)
	if fmt.Sprint(got) != "[0 2 3]" {
		t.Errorf("ran %v, want [0 2 3]", got)
	}
	entry := e.failedEntries(1)[0]
	if entry.Exception != "PayloadTooLarge" {
		t.Errorf("failed with %s: %s, want PayloadTooLarge", entry.Exception, entry.Error)
	}
	inflight := e.keys.Inflight("bigb", w.ID())
	e.eventually("every job acknowledged", func() bool {
		return e.llen(inflight) == 0 && e.get(e.keys.Stat("processed")) == "4"
	})
	stop()
	if n := e.llen(e.keys.Queue("bigb")); n != 0 {
		t.Errorf("%d jobs left queued", n)
	}
}

// A slot does not wait for a plain job's acknowledgement, but the worker
// does before it stops: once Run returns, every job is counted and out of
// flight, none back on its queue.
func TestRunReturnsOnceEveryAckIsWritten(t *testing.T) {
	for _, prefetch := range []int{-1, 3} { // reserving ahead arms waits while every slot is busy
		t.Run(fmt.Sprintf("prefetch=%d", prefetch), func(t *testing.T) { runReturnsOnceEveryAckIsWritten(t, prefetch) })
	}
}

func runReturnsOnceEveryAckIsWritten(t *testing.T, prefetch int) {
	e := newEnv(t)
	reg, calls := recorder("acks")
	const n = 300
	for i := range n {
		e.push("acks", fmt.Sprintf(`{"class":"acks","args":[%d]}`, i))
	}
	cfg := e.config("hostae")
	cfg.Queues = []worker.Queue{{Name: "acks"}}
	cfg.Concurrency = 8
	cfg.ExitOnComplete = true
	cfg.Prefetch = prefetch
	w, err := worker.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(e.ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of draining its queue")
	}
	if got := e.get(e.keys.Stat("processed")); got != strconv.Itoa(n) {
		t.Errorf("stat:processed = %s when Run returned, want %d", got, n)
	}
	if k := e.llen(e.keys.Inflight("acks", w.ID())); k != 0 {
		t.Errorf("%d jobs in flight when Run returned", k)
	}
	if k := e.llen(e.keys.Queue("acks")); k != 0 {
		t.Errorf("%d jobs back on the queue when Run returned: their acknowledgements were not waited for", k)
	}
	if len(calls) != n {
		t.Errorf("%d calls, want %d", len(calls), n)
	}
}
