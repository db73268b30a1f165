package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
)

// startBatch creates a batch's meta key, as a client does before enqueueing.
func (e *env) startBatch(batch string) {
	e.t.Helper()
	if err := e.rdb.HSet(e.ctx, e.keys.BatchMeta(batch), "function", "test").Err(); err != nil {
		e.t.Fatal(err)
	}
	if err := e.rdb.PExpire(e.ctx, e.keys.BatchMeta(batch), time.Minute).Err(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) pushChunk(queue, class, batch string, start int64, items string) {
	e.t.Helper()
	p, err := protocol.AppendChunk(nil, class, batch, start, []byte(items), 0)
	if err != nil {
		e.t.Fatal(err)
	}
	e.push(queue, string(p))
}

// waitChunk blocks on the batch's done list and returns the chunk's outcome.
func (e *env) waitChunk(batch string) (int64, protocol.ChunkResult) {
	e.t.Helper()
	r, err := e.rdb.BLPop(e.ctx, 10*time.Second, e.keys.BatchDone(batch)).Result()
	if err != nil {
		e.t.Fatalf("no chunk of batch %s completed: %v", batch, err)
	}
	var start int64
	if _, err := fmt.Sscan(r[1], &start); err != nil {
		e.t.Fatal(err)
	}
	raw, err := e.rdb.HGet(e.ctx, e.keys.BatchResults(batch), r[1]).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := protocol.DecodeChunkResult([]byte(raw))
	if err != nil {
		e.t.Fatalf("outcome %q: %v", raw, err)
	}
	return start, res
}

func chunkRegistry() *worker.Registry {
	reg := worker.NewRegistry()
	reg.Handle("add", worker.Func2(func(a, b int64) (int64, error) { return a + b, nil }))
	reg.Handle("half", worker.Func1(func(x float64) (float64, error) { return x / 2, nil }))
	reg.Handle("check", worker.Func1(func(n int) (string, error) {
		switch n {
		case 1:
			return "", errors.New("one is refused")
		case 2:
			panic("two panics")
		}
		return strings.Repeat("x", n), nil
	}))
	return reg
}

func TestChunkResultsInOrderWithPerItemErrors(t *testing.T) {
	e := newEnv(t)
	reg := chunkRegistry()
	cfg := e.config("hostc")
	cfg.Queues = []worker.Queue{{Name: "add"}, {Name: "half"}, {Name: "check"}}
	e.run(cfg, reg)

	// 3000 items, so the worker spreads them over goroutines; the order must hold.
	var items strings.Builder
	items.WriteString("[")
	for i := range 3000 {
		if i > 0 {
			items.WriteString(",")
		}
		fmt.Fprintf(&items, "[%d,%d]", i, 1_000_000_000_000*int64(i))
	}
	items.WriteString("]")
	e.startBatch("b1")
	e.pushChunk("add", "add", "b1", 7000, items.String())
	start, res := e.waitChunk("b1")
	if start != 7000 || len(res.Values) != 3000 || len(res.Errors) != 0 {
		t.Fatalf("start %d, %d values, errors %v", start, len(res.Values), res.Errors)
	}
	for i, v := range res.Values {
		if want := fmt.Sprint(int64(i) + 1_000_000_000_000*int64(i)); string(v) != want {
			t.Fatalf("value %d = %s, want %s", i, v, want)
		}
	}

	e.startBatch("b2")
	e.pushChunk("half", "half", "b2", 0, `[3, 4.5, [1], "x", null, [1,2]]`)
	_, res = e.waitChunk("b2")
	if got := fmt.Sprint(res.Values); got != "[1.5 2.25 0.5 null null null]" {
		t.Errorf("half values %s (floats must stay floats: 1.0 is written 1.0)", got)
	}
	wantErr := map[int64]string{3: "argument 1: want float64", 4: "argument 1: null is not a valid float64", 5: "takes 1 argument, got 2"}
	if len(res.Errors) != len(wantErr) {
		t.Errorf("errors %+v", res.Errors)
	}
	for _, ie := range res.Errors {
		if ie.Kind != protocol.KindArguments || !strings.Contains(ie.Error, wantErr[ie.Index]) {
			t.Errorf("item %d: %+v, want an arguments error with %q", ie.Index, ie, wantErr[ie.Index])
		}
	}

	e.startBatch("b3")
	e.pushChunk("check", "check", "b3", 10, `[0, 1, 2, 3]`)
	_, res = e.waitChunk("b3")
	if got := fmt.Sprint(res.Values); got != `["" null null "xxx"]` {
		t.Errorf("check values %s", got)
	}
	if len(res.Errors) != 2 {
		t.Fatalf("errors %+v", res.Errors)
	}
	if ie := res.Errors[0]; ie.Index != 11 || ie.Kind != protocol.KindError || ie.Error != "one is refused" {
		t.Errorf("error of item 11: %+v", ie)
	}
	if ie := res.Errors[1]; ie.Index != 12 || ie.Kind != protocol.KindPanic || ie.Error != "two panics" ||
		!strings.Contains(strings.SplitN(ie.Stack, "\n", 4)[2], "chunk_test.go:") {
		t.Errorf("panic of item 12: %+v; its stack must start at the panicking line", ie)
	}
}

func TestChunkOfUnknownFunctionFailsEveryItem(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("hostu")
	cfg.Queues = []worker.Queue{{Name: "q"}}
	e.run(cfg, chunkRegistry())
	e.startBatch("b")
	e.pushChunk("q", "nosuch", "b", 0, `[1,2]`)
	_, res := e.waitChunk("b")
	if len(res.Errors) != 2 || res.Errors[1].Index != 1 || res.Errors[1].Kind != protocol.KindUnknown ||
		!strings.Contains(res.Errors[1].Error, `no function registered for class "nosuch"`) {
		t.Errorf("outcome %+v", res)
	}
}

func TestChunkOfCancelledBatchIsSkippedAndLeavesNoKeys(t *testing.T) {
	e := newEnv(t)
	var calls atomic.Int64
	reg := worker.NewRegistry()
	reg.Handle("f", worker.Func1(func(int) (int, error) { calls.Add(1); return 0, nil }))
	reg.Handle("g", worker.Func1(func(int) (int, error) { return 0, nil }))
	cfg := e.config("hostk")
	cfg.Concurrency = 1
	w, _ := e.run(cfg, reg)

	e.pushChunk("f", "f", "gone", 0, `[1,2,3]`) // no meta key: cancelled or expired
	e.startBatch("live")
	e.pushChunk("f", "f", "live", 0, `[1]`) // behind it on the same queue
	e.waitChunk("live")
	if n := calls.Load(); n != 1 {
		t.Errorf("the function ran %d times; the cancelled batch's 3 items must not run", n)
	}
	for _, k := range []string{e.keys.BatchResults("gone"), e.keys.BatchDone("gone"), e.keys.BatchMeta("gone"),
		e.keys.Queue("f"), e.keys.Inflight("f", w.ID())} {
		if e.exists(k) != 0 {
			t.Errorf("%s exists", k)
		}
	}
	// The results the worker wrote for the live batch carry the meta key's TTL
	// (its done list was emptied by waitChunk).
	for _, k := range []string{e.keys.BatchResults("live")} {
		if ttl, err := e.rdb.PTTL(e.ctx, k).Result(); err != nil || ttl <= 0 {
			t.Errorf("%s has TTL %v (%v); it must expire with its batch", k, ttl, err)
		}
	}
}

func TestItemRules(t *testing.T) {
	// An array item is the call's positional arguments, anything else the one argument.
	e := newEnv(t)
	reg := worker.NewRegistry()
	reg.Handle("count", worker.HandlerFunc(func(_ context.Context, args worker.Args, dst []byte) ([]byte, error) {
		return fmt.Appendf(dst, "%d", args.Len()), nil
	}))
	cfg := e.config("hosti")
	e.run(cfg, reg)
	e.startBatch("b")
	e.pushChunk("count", "count", "b", 0, `[[], [1], [1,[2,3]], 5, "s", {"a":[1,2]}, null]`)
	_, res := e.waitChunk("b")
	if got := fmt.Sprint(res.Values); got != "[0 1 2 1 1 1 1]" {
		t.Errorf("argument counts %s", got)
	}
}

// A chunk with more items than MaxChunkItems is not run: one error of kind
// chunk_too_large stands for all its items, in the compact form (values
// null, the error's count), so that millions of tiny items cannot make the
// worker build an error and an outcome per item.
func TestChunkOverMaxItemsFailsInOneError(t *testing.T) {
	e := newEnv(t)
	var calls atomic.Int64
	reg := worker.NewRegistry()
	reg.Handle("count", worker.Func0(func() (int, error) { return int(calls.Add(1)), nil }))
	cfg := e.config("hostmax")
	cfg.Queues = []worker.Queue{{Name: "count"}}
	cfg.MaxChunkItems = 5
	e.run(cfg, reg)
	e.startBatch("bmax")
	e.pushChunk("count", "count", "bmax", 100, "[[],[],[],[],[],[]]")
	start, res := e.waitChunk("bmax")
	if start != 100 || res.Values != nil || len(res.Errors) != 1 {
		t.Fatalf("outcome of chunk %d: %+v, want values null and one error", start, res)
	}
	got := res.Errors[0]
	if got.Index != 100 || got.Count != 6 || got.Kind != protocol.KindTooMany || !strings.Contains(got.Error, "-max-chunk-items 5") {
		t.Errorf("error %+v, want index 100, count 6, kind %s naming the limit", got, protocol.KindTooMany)
	}
	// A chunk at the limit runs as usual.
	e.pushChunk("count", "count", "bmax", 0, "[[],[],[],[],[]]")
	if _, res := e.waitChunk("bmax"); len(res.Values) != 5 || len(res.Errors) != 0 {
		t.Errorf("a chunk of 5 items: %+v", res)
	}
	if n := calls.Load(); n != 5 {
		t.Errorf("the function ran %d times, want 5: the chunk over the limit must not run", n)
	}
}

// While a chunk runs, its worker records in meta how many of its items are
// done; the outcome's write removes the record.
func TestRunningChunkReportsItsProgress(t *testing.T) {
	e := newEnv(t)
	tokens := make(chan struct{}, 8)
	reg := worker.NewRegistry()
	reg.Handle("gate", worker.Func1(func(n int) (int, error) {
		<-tokens
		return n, nil
	}))
	cfg := e.config("hostp")
	cfg.ProgressInterval = 20 * time.Millisecond
	e.run(cfg, reg)
	e.startBatch("prog")
	e.pushChunk("gate", "gate", "prog", 100, "[0,1,2,3,4,5,6,7]")
	meta := e.keys.BatchMeta("prog")
	field := func() string {
		v, err := e.rdb.HGet(e.ctx, meta, "running:100").Result()
		if err != nil {
			return ""
		}
		return v
	}
	given := 0
	for _, want := range []int{1, 4, 7} {
		for ; given < want; given++ {
			tokens <- struct{}{}
		}
		e.eventually(fmt.Sprintf("running:100 = %d", want), func() bool { return field() == fmt.Sprint(want) })
	}
	tokens <- struct{}{} // the last item
	start, res := e.waitChunk("prog")
	if start != 100 || len(res.Values) != 8 || len(res.Errors) != 0 {
		t.Fatalf("outcome: start %d, %d values, errors %v", start, len(res.Values), res.Errors)
	}
	if n, err := e.rdb.HExists(e.ctx, meta, "running:100").Result(); err != nil || n {
		t.Fatalf("the progress field outlived the outcome: %v %v", n, err)
	}
}
