package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/client"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/gomap/gomap/worker/samples"
	"github.com/redis/go-redis/v9"
)

// runWorker starts an in-process worker with the sample functions and
// returns its stop function (also called when the test ends).
func runWorker(t *testing.T, uri string) (stop func()) {
	t.Helper()
	reg := worker.NewRegistry()
	samples.Register(reg)
	_, stop = workertest.Run(t, worker.Config{
		URI: uri, Hostname: "clienttest", Concurrency: 4, Connections: 8,
		Heartbeat: 100 * time.Millisecond, DeadAfter: time.Second, ShutdownTimeout: 2 * time.Second,
	}, reg)
	return stop
}

// mapResult is what a Map run in the background returned.
type mapResult struct {
	out []jsontext.Value
	err error
}

// repeat is n items of v.
func repeat(v any, n int) []any {
	items := make([]any, n)
	for i := range items {
		items[i] = v
	}
	return items
}

// mapAsync runs Map in a goroutine; the channel brings its result.
func mapAsync(ctx context.Context, c *client.Client, function string, items []any, o *client.MapOptions) <-chan mapResult {
	res := make(chan mapResult, 1)
	go func() {
		out, err := c.Map(ctx, function, items, o)
		res <- mapResult{out, err}
	}()
	return res
}

// await waits up to d for a Map run by mapAsync.
func await(t *testing.T, res <-chan mapResult, d time.Duration) mapResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(d):
		t.Fatalf("Map did not return within %v", d)
		return mapResult{}
	}
}

// sleeps are items of samplesleep, which returns its argument: chunk i sleeps
// step·i seconds, so chunks complete one after another.
func sleeps(n int, step float64) []any {
	items := make([]any, n)
	for i := range items {
		items[i] = step * float64(i)
	}
	return items
}

func checkSleeps(t *testing.T, what string, got []jsontext.Value, items []any) {
	t.Helper()
	if len(got) != len(items) {
		t.Fatalf("%s: %d results for %d items", what, len(got), len(items))
	}
	for i, v := range got {
		if want := fmt.Sprint(items[i]); strings.TrimSuffix(string(v), ".0") != want {
			t.Fatalf("%s: result %d = %s, want %s", what, i, v, want)
		}
	}
}

// waitTaken waits until a batch exists and a worker has taken some of the
// total chunks it queued.
func waitTaken(t *testing.T, srv *redistest.Server, queue string, total int) {
	t.Helper()
	rdb := srv.Client()
	redistest.Eventually(t, 10*time.Second, "a worker takes chunks of the batch", func() bool {
		metas, err := rdb.Keys(context.Background(), "goworker:gomap:{*}:meta").Result()
		return err == nil && len(metas) > 0 && queueLen(t, srv, queue) < int64(total)
	})
}

func queueLen(t *testing.T, srv *redistest.Server, queue string) int64 {
	t.Helper()
	n, err := srv.Client().LLen(context.Background(), "goworker:queue:"+queue).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// clientModes are the two ways a client reaches Redis through a proxy: Dial
// (go-redis retries some failures itself, then Map does) and New on a
// go-redis client without retries of its own, so that only Map's recover.
func clientModes(t *testing.T, uri string) map[string]*client.Client {
	t.Helper()
	opt, err := redis.ParseURL(uri)
	if err != nil {
		t.Fatal(err)
	}
	opt.MaxRetries, opt.ContextTimeoutEnabled, opt.Protocol = -1, true, 2
	rdb := redis.NewClient(opt)
	t.Cleanup(func() {
		if err := rdb.Close(); err != nil {
			t.Error(err)
		}
	})
	return map[string]*client.Client{"Dial": dial(t, uri), "New without go-redis retries": client.New(rdb, "")}
}

func hasKeySuffix(args []string, suffix string) bool {
	for _, a := range args[1:] {
		if strings.HasSuffix(a, suffix) {
			return true
		}
	}
	return false
}

// nth matches the nth command (counting from 1) that is is.
func nth(n int, is func(args []string) bool) func(args []string) bool {
	seen := 0
	return func(args []string) bool {
		if is(args) {
			seen++
		}
		return seen == n && is(args)
	}
}

func isCommand(name string) func(args []string) bool {
	return func(args []string) bool { return strings.EqualFold(args[0], name) }
}

func isTake(args []string) bool {
	return strings.EqualFold(args[0], "eval") && hasKeySuffix(args, "}:done")
}

// isPush matches the command that queues a batch's chunks.
func isPush(args []string) bool {
	return (strings.EqualFold(args[0], "eval") || strings.EqualFold(args[0], "rpush")) &&
		hasKeySuffix(args, ":queue:samplesleep")
}

// The reply of every round trip of a batch is lost in turn (the command ran,
// its reply never arrived): Map still gets every result, once, and leaves no
// key behind.
func TestMapSurvivesALostReplyAtEveryRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	runWorker(t, srv.URI)
	proxy := redistest.StartProxy(t, srv)
	items := sleeps(6, 0.05)
	type roundTrip struct {
		name  string
		match func() func(args []string) bool
		maybe bool  // the batch may end before this round trip
		items []any // default: six chunks
	}
	cases := []roundTrip{
		{"reading the workers", func() func([]string) bool { return nth(1, isCommand("hgetall")) }, false, nil},
		{"submit", func() func([]string) bool { return nth(1, isPush) }, false, nil},
		{"the first BLMOVE", func() func([]string) bool { return nth(1, isCommand("blmove")) }, false, nil},
	}
	// Chunks complete about 50ms apart: a batch has more than two takes; how
	// many more depends on timing.
	for k := 1; k <= 8; k++ {
		cases = append(cases, roundTrip{fmt.Sprintf("take %d", k), func() func([]string) bool { return nth(k, isTake) }, k > 2, nil})
	}
	cases = append(cases, roundTrip{"finish", func() func([]string) bool {
		return nth(1, func(args []string) bool { return strings.EqualFold(args[0], "del") && hasKeySuffix(args, "}:meta") })
	}, false, nil})
	cases = append(cases, roundTrip{"the one take of a one-chunk batch", func() func([]string) bool { return nth(1, isTake) }, false, sleeps(1, 0)})
	modes := clientModes(t, proxy.URI)
	for _, mode := range []string{"Dial", "New without go-redis retries"} {
		c := modes[mode]
		for _, rt := range cases {
			t.Run(mode+"/"+rt.name, func(t *testing.T) {
				drops := proxy.Drops()
				proxy.DropReplyTo(rt.match())
				defer proxy.DropReplyTo(nil)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				items := items
				if rt.items != nil {
					items = rt.items
				}
				got, err := c.Map(ctx, "samplesleep", items, &client.MapOptions{ChunkSize: 1})
				dropped := proxy.Drops() - drops
				t.Logf("%d replies dropped", dropped)
				if err != nil {
					t.Fatal(err)
				}
				checkSleeps(t, "", got, items)
				assertNoBatchKeys(t, srv)
				if dropped == 0 && !rt.maybe {
					t.Error("the reply was never dropped: the test tests nothing")
				}
			})
		}
	}
}

// The reply to the submit is lost before any worker runs: the chunks are
// queued once, not again by the retry.
func TestMapSubmitSentAgainQueuesEachChunkOnce(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv)
	items := sleeps(5, 0.01)
	for mode, c := range clientModes(t, proxy.URI) {
		proxy.DropReplyTo(nth(1, isPush))
		drops := proxy.Drops()
		res := mapAsync(context.Background(), c, "samplesleep", items,
			&client.MapOptions{ChunkSize: 1, NoWorkersAfter: 20 * time.Second})
		rdb := srv.Client()
		redistest.Eventually(t, 10*time.Second, "Map waits on its batch's done list", func() bool {
			list, err := rdb.ClientList(context.Background()).Result()
			return err == nil && strings.Contains(list, "cmd=blmove")
		})
		if proxy.Drops() != drops+1 {
			t.Fatalf("%s: the submit's reply was not dropped", mode)
		}
		if n := queueLen(t, srv, "samplesleep"); n != int64(len(items)) {
			t.Fatalf("%s: %d chunks queued for %d items of chunk size 1", mode, n, len(items))
		}
		stop := runWorker(t, srv.URI)
		r := await(t, res, 20*time.Second)
		stop()
		if r.err != nil {
			t.Fatalf("%s: %v", mode, r.err)
		}
		checkSleeps(t, mode, r.out, items)
		assertNoBatchKeys(t, srv)
	}
}

// Redis flushed mid-batch: Map says the batch is lost, within seconds, and
// does not blame the workers.
func TestMapNoticesAFlushedBatch(t *testing.T) {
	srv := redistest.Start(t)
	runWorker(t, srv.URI)
	c := dial(t, srv.URI)
	items := repeat(30.0, 8) // the worker stops them when their batch is gone
	res := mapAsync(context.Background(), c, "samplesleep", items, &client.MapOptions{ChunkSize: 1, NoWorkersAfter: 200 * time.Millisecond})
	waitTaken(t, srv, "samplesleep", len(items))
	if err := srv.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	flushed := time.Now()
	r := await(t, res, 10*time.Second)
	took := time.Since(flushed)
	if !errors.Is(r.err, client.ErrBatchLost) || !strings.Contains(r.err.Error(), "Redis lost the keys of batch") {
		t.Fatalf("err = %v, want ErrBatchLost", r.err)
	}
	if took > 3*time.Second {
		t.Errorf("took %v to notice", took)
	}
	t.Logf("noticed %v after the flush: %v", took.Round(time.Millisecond), r.err)
}

// Redis restarted without persistence mid-batch: Map rides out the restart,
// then says the batch is lost.
func TestMapNoticesABatchLostInARestart(t *testing.T) {
	srv := redistest.Start(t)
	runWorker(t, srv.URI)
	c := dial(t, srv.URI)
	items := repeat(30.0, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := mapAsync(ctx, c, "samplesleep", items, &client.MapOptions{ChunkSize: 1})
	waitTaken(t, srv, "samplesleep", len(items))
	srv.Kill()
	srv.Restart()
	restarted := time.Now()
	r := await(t, res, 10*time.Second)
	if !errors.Is(r.err, client.ErrBatchLost) {
		t.Fatalf("err = %v, want ErrBatchLost", r.err)
	}
	t.Logf("noticed %v after the restart: %v", time.Since(restarted).Round(time.Millisecond), r.err)
}

// Every worker stops (a rolling restart) and a new one starts 4s later: the
// batch waits for it, keeps its queued chunks, and completes.
func TestMapWaitsForWorkersToComeBack(t *testing.T) {
	srv := redistest.Start(t)
	stop := runWorker(t, srv.URI)
	c := dial(t, srv.URI)
	items := repeat(0.2, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := mapAsync(ctx, c, "samplesleep", items, &client.MapOptions{ChunkSize: 1, NoWorkersAfter: 200 * time.Millisecond})
	waitTaken(t, srv, "samplesleep", len(items))
	stop() // lets running chunks finish, puts the ones it holds back
	left := queueLen(t, srv, "samplesleep")
	if left == 0 {
		t.Fatal("no chunk left queued: the test needs more or longer items")
	}
	select {
	case r := <-res:
		t.Fatalf("Map returned while no worker ran: %v", r.err)
	case <-time.After(4 * time.Second): // the gap of the restart
	}
	if n := queueLen(t, srv, "samplesleep"); n != left {
		t.Fatalf("%d chunks queued after the gap, %d before: the batch was cancelled", n, left)
	}
	runWorker(t, srv.URI)
	r := await(t, res, 20*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	for i, v := range r.out {
		if string(v) != "0.2" {
			t.Fatalf("result %d = %s", i, v)
		}
	}
	assertNoBatchKeys(t, srv)
}

// Workers gone for longer than WaitForWorkers: ErrNoWorkers, saying so, and
// the batch is cancelled.
func TestMapGivesUpWaitingForWorkers(t *testing.T) {
	srv := redistest.Start(t)
	stop := runWorker(t, srv.URI)
	c := dial(t, srv.URI)
	items := repeat(0.2, 16)
	res := mapAsync(context.Background(), c, "samplesleep", items, &client.MapOptions{
		ChunkSize: 1, NoWorkersAfter: 200 * time.Millisecond, WaitForWorkers: time.Second})
	waitTaken(t, srv, "samplesleep", len(items))
	stop()
	stopped := time.Now()
	r := await(t, res, 10*time.Second)
	took := time.Since(stopped)
	if !errors.Is(r.err, client.ErrNoWorkers) || !strings.Contains(r.err.Error(), "MapOptions.WaitForWorkers") {
		t.Fatalf("err = %v", r.err)
	}
	if took < time.Second || took > 4*time.Second {
		t.Errorf("gave up %v after the worker stopped, want about 1s (WaitForWorkers) + 200ms", took)
	}
	assertNoBatchKeys(t, srv)
	if n := queueLen(t, srv, "samplesleep"); n != 0 {
		t.Errorf("%d chunks left queued", n)
	}
}

// A function no live worker offers fails at once, and nothing is queued.
func TestMapOfAnUnknownFunctionFailsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	runWorker(t, srv.URI)
	c := dial(t, srv.URI)
	for _, o := range []*client.MapOptions{nil, {Queue: "sampleadd"}} {
		start := time.Now()
		_, err := c.Map(context.Background(), "samplesad", pairs(10), o)
		if !errors.Is(err, client.ErrUnknownFunction) || !strings.Contains(err.Error(), "sampleadd, ") {
			t.Fatalf("queue %+v: err = %v", o, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("took %v", took)
		}
		t.Log(err)
	}
	rdb := srv.Client()
	keys, err := rdb.Keys(context.Background(), "goworker:queue*").Result()
	if err != nil || len(keys) > 0 {
		t.Errorf("queues %q (%v)", keys, err)
	}
	assertNoBatchKeys(t, srv)
}

// ItemTimeout travels in every chunk, after the items, in milliseconds
// rounded up; without it, chunks carry no limit.
func TestMapSendsItemTimeout(t *testing.T) {
	srv := redistest.Start(t)
	c := dial(t, srv.URI)
	rdb := srv.Client()
	for timeout, tail := range map[time.Duration]string{4999500 * time.Microsecond: `,"limit_ms":5000}}`, 0: `}}`} {
		ctx, cancel := context.WithCancel(context.Background())
		res := mapAsync(ctx, c, "sampleadd", pairs(3), &client.MapOptions{
			ChunkSize: 2, ItemTimeout: timeout, NoWorkersAfter: 20 * time.Second})
		redistest.Eventually(t, 10*time.Second, "both chunks are queued", func() bool {
			return queueLen(t, srv, "sampleadd") == 2
		})
		queued, err := rdb.LRange(context.Background(), "goworker:queue:sampleadd", 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(queued[0], `"batch":"`)
		batch, _, _ := strings.Cut(rest, `"`)
		want := []string{
			`{"class":"sampleadd","args":[],"gomap":{"v":1,"batch":"` + batch + `","start":0,"items":[[0,0],[1,2]]` + tail,
			`{"class":"sampleadd","args":[],"gomap":{"v":1,"batch":"` + batch + `","start":2,"items":[[2,4]]` + tail,
		}
		for i := range want {
			if queued[i] != want[i] {
				t.Errorf("ItemTimeout %v: chunk %d is\n%s\nwant\n%s", timeout, i, queued[i], want[i])
			}
		}
		cancel()
		if r := await(t, res, 10*time.Second); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("err = %v", r.err)
		}
		if n := queueLen(t, srv, "sampleadd"); n != 0 {
			t.Errorf("%d chunks left queued after cancel", n)
		}
	}
}

// A chunk larger than MaxPayload, or by default than the max payload the
// workers advertise, is refused before anything is sent.
func TestMapRefusesAnOversizeChunk(t *testing.T) {
	srv := redistest.Start(t)
	reg := worker.NewRegistry()
	samples.Register(reg)
	workertest.Run(t, worker.Config{URI: srv.URI, Hostname: "clienttest", Concurrency: 2, MaxPayload: 2000}, reg)
	c := dial(t, srv.URI)
	items := []any{strings.Repeat("x", 1200), strings.Repeat("y", 1200)}
	for _, tc := range []struct {
		o    client.MapOptions
		want string
	}{
		{client.MapOptions{ChunkSize: 2, MaxPayload: 1000}, "over the limit of 1000 (MapOptions.MaxPayload): use a smaller MapOptions.ChunkSize (now 2)"},
		{client.MapOptions{ChunkSize: 2}, "over the limit of 2000 (the max payload of the workers on the queue): use a smaller MapOptions.ChunkSize (now 2)"},
	} {
		_, err := c.Map(context.Background(), "sampleupper", items, &tc.o)
		if !errors.Is(err, client.ErrChunkTooLarge) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%+v: err = %v", tc.o, err)
		}
	}
	if n := queueLen(t, srv, "sampleupper"); n != 0 {
		t.Errorf("%d chunks queued", n)
	}
	assertNoBatchKeys(t, srv)
	got, err := client.MapAs[string](context.Background(), c, "sampleupper", items, &client.MapOptions{ChunkSize: 1})
	if err != nil || got[1] != strings.Repeat("Y", 1200) {
		t.Fatalf("chunk size 1: %v", err)
	}
}

// Errors that no retry can cure (a missing permission, Redis out of memory)
// end Map at once, not after StallTolerance.
func TestMapReturnsPermanentErrorsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	if err := rdb.Do(ctx, "ACL", "SETUSER", "noeval", "on", ">secret", "~*", "&*", "+@all", "-eval").Err(); err != nil {
		t.Fatal(err)
	}
	noEval := dial(t, "unix://noeval:secret@"+srv.Addr)
	start := time.Now()
	_, err := noEval.Map(ctx, "sampleadd", pairs(3), nil)
	if !redis.IsPermissionError(err) {
		t.Fatalf("without EVAL: err = %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("without EVAL: returned after %v", took)
	}

	c := dial(t, srv.URI)
	if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = c.Map(ctx, "sampleadd", pairs(3), nil)
	if !redis.IsOOMError(err) {
		t.Fatalf("out of memory: err = %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("out of memory: returned after %v", took)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	assertNoBatchKeys(t, srv)
}

// The network between client and Redis is cut while a batch runs, and Map's
// deadline passes: Map returns by its deadline, and once the network is back
// its cancel, retried in the background, removes the batch.
func TestMapCancelsInTheBackgroundOnceRedisIsBack(t *testing.T) {
	srv := redistest.Start(t)
	runWorker(t, srv.URI)
	proxy := redistest.StartProxy(t, srv)
	c := dial(t, proxy.URI)
	items := repeat(1.5, 8)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res := mapAsync(ctx, c, "samplesleep", items, &client.MapOptions{ChunkSize: 1})
	waitTaken(t, srv, "samplesleep", len(items))
	proxy.Cut()
	r := await(t, res, 5*time.Second)
	took := time.Since(start)
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", r.err)
	}
	if took > 1300*time.Millisecond {
		t.Errorf("Map returned %v after it started, with a deadline of 1s", took)
	}
	metas, err := srv.Client().Keys(context.Background(), "goworker:gomap:{*}:meta").Result()
	if err != nil || len(metas) != 1 {
		t.Fatalf("the batch should still exist while the network is cut: %q (%v)", metas, err)
	}
	proxy.Restore()
	redistest.Eventually(t, 10*time.Second, "the batch is cancelled", func() bool {
		keys, err := srv.Client().Keys(context.Background(), "goworker:gomap:{*").Result()
		return err == nil && len(keys) == 0 && queueLen(t, srv, "samplesleep") == 0
	})
}

// A chunk over the workers' -max-chunk-items: Map refuses the ChunkSize up
// front once it can read the limit, and, when it could not (the batch was
// submitted before the worker came up), fails with the worker's one
// chunk_too_large error for the whole chunk.
func TestMapAndTheWorkersItemLimit(t *testing.T) {
	srv := redistest.Start(t)
	c := dial(t, srv.URI)
	items := repeat([]any{1, 2}, 6)
	res := mapAsync(context.Background(), c, "sampleadd", items, &client.MapOptions{ChunkSize: 6, NoWorkersAfter: 10 * time.Second})
	redistest.Eventually(t, 10*time.Second, "the chunk is queued", func() bool { return queueLen(t, srv, "sampleadd") == 1 })
	reg := worker.NewRegistry()
	samples.Register(reg)
	workertest.Run(t, worker.Config{URI: srv.URI, Hostname: "clienttest", Concurrency: 2, MaxChunkItems: 3}, reg)
	r := await(t, res, 20*time.Second)
	var te *client.TaskError
	if !errors.As(r.err, &te) || te.Kind != "chunk_too_large" || te.Index != 0 {
		t.Fatalf("err = %v, want the TaskError of kind chunk_too_large for item 0", r.err)
	}
	_, err := c.Map(context.Background(), "sampleadd", items, &client.MapOptions{ChunkSize: 6})
	if !errors.Is(err, client.ErrChunkTooLarge) || !strings.Contains(err.Error(), "-max-chunk-items 3") {
		t.Fatalf("err = %v, want ErrChunkTooLarge naming the limit", err)
	}
	if n := queueLen(t, srv, "sampleadd"); n != 0 {
		t.Errorf("%d chunks queued by the refused Map", n)
	}
	out, err := c.Map(context.Background(), "sampleadd", items, &client.MapOptions{ChunkSize: 3})
	if err != nil || len(out) != 6 || string(out[5]) != "3" {
		t.Fatalf("Map with ChunkSize 3: %v %q", err, out)
	}
	assertNoBatchKeys(t, srv)
}
