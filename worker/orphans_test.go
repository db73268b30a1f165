package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/redis/go-redis/v9"
)

// A reserve whose reply is lost leaves a job in the worker's in-flight list
// that the worker does not know it holds. These tests check that the worker
// finds such a job and runs it, once, instead of leaving it in flight until
// it stops.

// orphanConfig is a worker of queue q behind proxy p, with a heartbeat long
// enough that "within two heartbeats" means something.
func (e *env) orphanConfig(host string, p *redistest.Proxy, q string) worker.Config {
	cfg := e.config(host)
	cfg.URI = p.URI
	cfg.Queues = []worker.Queue{{Name: q}}
	cfg.Concurrency = 1
	cfg.Heartbeat = 500 * time.Millisecond
	cfg.DeadAfter = 5 * time.Second
	return cfg
}

// receiveWithin waits for the next call for at most d.
func receiveWithin(t *testing.T, calls <-chan call, d time.Duration, what string) call {
	t.Helper()
	select {
	case c := <-calls:
		return c
	case <-time.After(d):
		t.Fatalf("%s: no call within %v", what, d)
		return call{}
	}
}

// ranOnce checks, once the job of args first ran, that the worker runs a
// job pushed after it, that stopping it leaves nothing queued or in flight,
// and that it ran nothing else.
func (e *env) ranOnce(w *worker.Worker, stop func(), calls <-chan call, q string) {
	e.t.Helper()
	e.push(q, `{"class":"`+q+`","args":["after"]}`)
	if c := receive(e.t, calls); fmt.Sprint(c.args) != "[after]" {
		e.t.Errorf("ran %v, want the job pushed after the orphan", c.args)
	}
	stop()
	select {
	case c := <-calls:
		e.t.Errorf("ran %v again", c.args)
	default:
	}
	if n := e.llen(e.keys.Queue(q)); n != 0 {
		e.t.Errorf("%d jobs left queued", n)
	}
	if n := e.llen(e.keys.Inflight(q, w.ID())); n != 0 {
		e.t.Errorf("%d jobs left in flight", n)
	}
}

func isReserve(args []string) bool {
	return strings.EqualFold(args[0], "eval") && len(args) > 1 && args[1] == protocol.ReserveScript
}

// The reply of a poll is lost: the job it reserved runs all the same,
// within two heartbeats, and once.
func TestJobOfALostPollReplyRuns(t *testing.T) {
	e := newEnv(t)
	proxy := redistest.StartProxy(t, e.srv)
	reg, calls := recorder("orph")
	e.push("orph", `{"class":"orph","args":["lost"]}`) // the worker's first poll takes it
	proxy.DropReplyTo(isReserve)
	cfg := e.orphanConfig("hostlp", proxy, "orph")
	w, stop := e.run(cfg, reg)
	lostJobRan(t, calls, cfg, proxy)
	e.ranOnce(w, stop, calls, "orph")
}

// The reply of an idle worker's wait (BLMOVE) is lost: the job it reserved
// runs all the same, within two heartbeats, and once.
func TestJobOfALostWaitReplyRuns(t *testing.T) {
	e := newEnv(t)
	proxy := redistest.StartProxy(t, e.srv)
	reg, calls := recorder("orphw")
	proxy.DropReplyTo(func(args []string) bool { return strings.EqualFold(args[0], "blmove") })
	cfg := e.orphanConfig("hostlw", proxy, "orphw")
	w, stop := e.run(cfg, reg)
	e.eventually("the worker waits on its queue", func() bool { return blockedClients(t, e.rdb) == 1 })
	e.push("orphw", `{"class":"orphw","args":["lost"]}`)
	lostJobRan(t, calls, cfg, proxy)
	e.ranOnce(w, stop, calls, "orphw")
}

// lostJobRan checks that the job whose reply the proxy dropped ran within two
// heartbeats, and that the proxy did drop one reply.
func lostJobRan(t *testing.T, calls <-chan call, cfg worker.Config, proxy *redistest.Proxy) {
	t.Helper()
	start := time.Now()
	c := receiveWithin(t, calls, 2*cfg.Heartbeat, "the job of the lost reply")
	t.Logf("ran %v after %v", c.args, time.Since(start).Round(time.Millisecond))
	if fmt.Sprint(c.args) != "[lost]" {
		t.Errorf("ran %v, want [lost]", c.args)
	}
	if proxy.Drops() != 1 {
		t.Fatalf("%d replies dropped, want 1: the test tests nothing", proxy.Drops())
	}
}

// A reserve Redis runs after the worker gave up on it (a command sent to a
// frozen Redis) puts a job in flight while the worker saw nothing fail
// since. The test makes that job itself, with LMOVE, while the worker runs a
// job with the same payload and its other slot waits on the queue: the
// worker runs the orphan within two heartbeats, although it holds a job
// that looks the same, and acknowledges both.
func TestOrphanBehindTheWorkersBackRuns(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	reg := worker.NewRegistry()
	reg.Register("same", func(string, ...interface{}) error {
		started <- struct{}{}
		<-release
		return nil
	})
	cfg := e.config("hostob")
	cfg.Queues = []worker.Queue{{Name: "same"}}
	cfg.Concurrency = 2
	cfg.Heartbeat = 500 * time.Millisecond
	cfg.DeadAfter = 5 * time.Second
	w, stop := e.run(cfg, reg)
	job := `{"class":"same","args":[]}`
	e.push("same", job)
	<-started
	e.eventually("the idle slot waits on the queue", func() bool { return blockedClients(t, e.rdb) == 1 })
	// The same payload again, moved past the waiting slot straight into flight.
	inflight := e.keys.Inflight("same", w.ID())
	if err := e.rdb.LPush(e.ctx, e.keys.Queue("same")+":side", job).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.LMove(e.ctx, e.keys.Queue("same")+":side", inflight, "LEFT", "RIGHT").Err(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	select {
	case <-started:
		t.Logf("the orphan ran after %v", time.Since(t0).Round(time.Millisecond))
	case <-time.After(2 * cfg.Heartbeat):
		t.Fatal("the orphan did not run within two heartbeats")
	}
	close(release)
	e.eventually("both jobs acknowledged", func() bool { return e.llen(inflight) == 0 })
	if got := e.get(e.keys.Stat("processed")); got != "2" {
		t.Errorf("stat:processed = %s, want 2", got)
	}
	stop()
	select {
	case <-started:
		t.Error("a job ran a third time")
	default:
	}
}

// An orphan bigger than the worker's max payload is failed as any oversize
// job is, without the worker reading it whole.
func TestOversizeOrphanIsFailed(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("big")
	const limit = 1000
	cfg := e.config("hostbo")
	cfg.Queues = []worker.Queue{{Name: "big"}}
	cfg.Concurrency = 1
	cfg.MaxPayload = limit
	cfg.Heartbeat = 500 * time.Millisecond
	cfg.DeadAfter = 5 * time.Second
	w, stop := e.run(cfg, reg)
	e.eventually("the worker waits on its queue", func() bool { return blockedClients(t, e.rdb) == 1 })
	big := `{"class":"big","args":["` + strings.Repeat("b", 2*limit) + `"]}`
	inflight := e.keys.Inflight("big", w.ID())
	if err := e.rdb.RPush(e.ctx, inflight, big).Err(); err != nil {
		t.Fatal(err)
	}
	entry := e.failedEntries(1)[0]
	if entry.Exception != "PayloadTooLarge" {
		t.Errorf("failed with %s: %s, want PayloadTooLarge", entry.Exception, entry.Error)
	}
	e.eventually("the oversize orphan acknowledged", func() bool { return e.llen(inflight) == 0 })
	e.ranOnce(w, stop, calls, "big")
}

// Redis freezes (SIGSTOP) for longer than the worker's read timeout while
// the worker reserves jobs as fast as it can and more jobs are pushed:
// every job runs once, and nothing is left in flight once the queue has
// drained.
func TestRedisStallLosesNoReservedJob(t *testing.T) {
	e := newEnv(t)
	const readTimeout = 200 * time.Millisecond
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: e.srv.Addr, ReadTimeout: readTimeout, Protocol: 2})
	t.Cleanup(func() {
		if err := rdb.Close(); err != nil {
			t.Error(err)
		}
	})
	var mu sync.Mutex
	ran := map[string]int{}
	reg := worker.NewRegistry()
	reg.Register("stall", func(_ string, args ...interface{}) error {
		mu.Lock()
		defer mu.Unlock()
		ran[fmt.Sprint(args...)]++
		return nil
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ran)
	}
	cfg := e.config("hoststall")
	cfg.Redis = rdb
	cfg.Queues = []worker.Queue{{Name: "stall"}}
	cfg.Concurrency = 16 // some slot is idle, so the worker is reserving, when Redis freezes
	cfg.Heartbeat = 250 * time.Millisecond
	cfg.DeadAfter = 5 * time.Second
	w, stop := e.run(cfg, reg)

	const before, during = 3000, 200
	jobs := make([]any, before)
	for i := range jobs {
		jobs[i] = fmt.Sprintf(`{"class":"stall","args":["%d"]}`, i)
	}
	if err := e.rdb.RPush(e.ctx, e.keys.Queue("stall"), jobs...).Err(); err != nil {
		t.Fatal(err)
	}
	e.eventually("the worker is under way", func() bool { return count() >= 100 })
	e.srv.Pause()
	// Pushed one at a time from now on, by a client that waits through the stall.
	pusher := redis.NewClient(&redis.Options{Network: "unix", Addr: e.srv.Addr, ReadTimeout: -1, MaxRetries: -1})
	pushed := make(chan error, 1)
	go func() {
		var err error
		for i := before; i < before+during && err == nil; i++ {
			err = pusher.RPush(context.Background(), e.keys.Queue("stall"), fmt.Sprintf(`{"class":"stall","args":["%d"]}`, i)).Err()
		}
		pushed <- err
	}()
	t.Cleanup(func() {
		// Ends the pushes if the test failed half way.
		if err := pusher.Close(); err != nil {
			t.Error(err)
		}
	})
	stalled := time.NewTimer(5 * readTimeout)
	select {
	case err := <-pushed:
		t.Fatalf("a push went through while Redis was frozen: %v", err)
	case <-stalled.C:
	}
	e.srv.Resume()
	select {
	case err := <-pushed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pushes did not finish within 10s of Redis resuming")
	}
	inflight := e.keys.Inflight("stall", w.ID())
	redistest.Eventually(t, 10*time.Second, "every job ran and nothing is queued or in flight", func() bool {
		return count() == before+during && e.llen(e.keys.Queue("stall")) == 0 && e.llen(inflight) == 0
	})
	stop()
	mu.Lock()
	defer mu.Unlock()
	for i := range before + during {
		if n := ran[fmt.Sprint(i)]; n != 1 {
			t.Errorf("job %d ran %d times", i, n)
		}
	}
}

// On a Redis Cluster, where every queue and its in-flight lists live in a
// slot of their own, an orphan of each of two queues runs, and so do jobs
// pushed after them.
func TestOrphansOnARedisCluster(t *testing.T) {
	uri := redistest.StartCluster(t)
	rdb := redistest.ClusterClient(t, uri)
	ctx := context.Background()
	keys := protocol.NewKeys("")
	names := []string{"clorph1", "clorph2"}
	reg, calls := recorder(names...)
	cfg := worker.Config{URI: uri, Hostname: "clo", Queues: queues(names...), Concurrency: 2, Interval: 10 * time.Second,
		Heartbeat: 500 * time.Millisecond, DeadAfter: 5 * time.Second}
	w, stop := workertest.Run(t, cfg, reg)
	if rdb.ClusterKeySlot(ctx, keys.Queue(names[0])).Val() == rdb.ClusterKeySlot(ctx, keys.Queue(names[1])).Val() {
		t.Fatal("the two queues share a slot: the test tests less than it says")
	}
	for _, q := range names {
		if err := rdb.RPush(ctx, keys.Inflight(q, w.ID()), `{"class":"`+q+`","args":["orphan"]}`).Err(); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]bool{}
	for range names {
		c := receiveWithin(t, calls, 2*cfg.Heartbeat, "an orphan on the cluster")
		got[c.queue+" "+fmt.Sprint(c.args)] = true
	}
	for _, q := range names {
		if !got[q+" [orphan]"] {
			t.Errorf("the orphan of queue %s did not run; ran %v", q, got)
		}
		if err := rdb.RPush(ctx, keys.Queue(q), `{"class":"`+q+`","args":["after"]}`).Err(); err != nil {
			t.Fatal(err)
		}
		if c := receive(t, calls); c.queue != q || fmt.Sprint(c.args) != "[after]" {
			t.Errorf("ran %s %v, want %s [after]", c.queue, c.args, q)
		}
	}
	stop()
	for _, q := range names {
		if n := rdb.LLen(ctx, keys.Inflight(q, w.ID())).Val() + rdb.LLen(ctx, keys.Queue(q)).Val(); n != 0 {
			t.Errorf("queue %s: %d jobs left queued or in flight", q, n)
		}
	}
	select {
	case c := <-calls:
		t.Errorf("ran %s %v again", c.queue, c.args)
	default:
	}
}

// OrphansScript names the jobs of a list as protocol.JobDigest names the
// jobs a worker holds, whole or oversize, and counts identical ones apart.
func TestOrphansScriptMatchesJobDigest(t *testing.T) {
	e := newEnv(t)
	const limit, head = 100, 10
	small, other := `{"class":"a","args":[1]}`, `{"class":"a","args":[2]}`
	big := `{"class":"a","args":["` + strings.Repeat("x", 2*limit) + `"]}`
	bigToo := big[:len(big)-4] + `y"]}` // same size and first bytes, another end
	list := e.keys.Inflight("script", "host:1")
	if err := e.rdb.RPush(e.ctx, list, small, big, small, other, bigToo, big).Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		held []string // digests
		most int
		n    int64
		want string
	}{
		{"nothing held", nil, 10, 6, fmt.Sprintf("[%s [%d %s] %s %s [%d %s] [%d %s]]",
			small, len(big), big[:head], small, other, len(big), big[:head], len(big), big[:head])},
		{"one of two identical held", []string{protocol.JobDigest(small, 0)}, 10, 5, fmt.Sprintf("[[%d %s] %s %s [%d %s] [%d %s]]",
			len(big), big[:head], small, other, len(big), big[:head], len(big), big[:head])},
		{"all but the last held", []string{protocol.JobDigest(small, 0), protocol.JobDigest(small, 0), protocol.JobDigest(other, 0),
			protocol.JobDigest(big[:head], len(big)), protocol.JobDigest(big[:head], len(big))}, 10, 1,
			fmt.Sprintf("[[%d %s]]", len(big), big[:head])},
		{"at most two returned", nil, 2, 6, fmt.Sprintf("[%s [%d %s]]", small, len(big), big[:head])},
	} {
		args := []any{limit, head, c.most}
		for _, d := range c.held {
			args = append(args, d)
		}
		v, err := e.rdb.Eval(e.ctx, protocol.OrphansScript, []string{list}, args...).Slice()
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != 2 || v[0] != c.n || fmt.Sprint(v[1]) != c.want {
			t.Errorf("%s: got %v, want %d orphans, returned %s", c.name, v, c.n, c.want)
		}
	}
	if n := e.llen(list); n != 6 {
		t.Errorf("the script changed the list: %d jobs left of 6", n)
	}
}
