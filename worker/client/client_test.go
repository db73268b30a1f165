package client_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/client"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/gomap/gomap/worker/samples"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// vectorArgs are the cases of testdata/resque_vectors.rb, built natively.
func vectorArgs() map[string]struct {
	class string
	args  []any
} {
	type c = struct {
		class string
		args  []any
	}
	return map[string]c{
		"ints":    {"Archive", []any{35, "tar"}},
		"empty":   {"Ping", nil},
		"strings": {"Echo", []any{"a/b", "<&>", "\u2028", "\x1f\n\t\"\\"}},
		"floats":  {"Add", []any{1.0, 1.5, math.Copysign(0, -1), 2.5e-05, 0.1, 123456.789}},
		"nested":  {"Store", []any{map[string]any{"b": []int{2, 3}, "a": 1}, []any{true, false, nil}}},
		"bigint":  {"Big", []any{int64(9007199254740993), int64(-9223372036854775808)}},
		"unicode": {"Say", []any{"日本語", "é 🎉"}},
	}
}

func loadVectors(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../testdata/resque-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestEnqueueWritesRubysBytes(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	c := client.New(rdb, "resque:")
	ctx := context.Background()
	vectors := loadVectors(t)
	for name, tc := range vectorArgs() {
		if err := c.Enqueue(ctx, "q_"+name, tc.class, tc.args...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := rdb.LPop(ctx, "resque:queue:q_"+name).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got != vectors[name] {
			t.Errorf("%s:\n got %s\nwant %s (Ruby's Resque.enqueue)", name, got, vectors[name])
		}
		if ok, err := rdb.SIsMember(ctx, "resque:queues", "q_"+name).Result(); err != nil || !ok {
			t.Errorf("%s: queue not in resque:queues (%v)", name, err)
		}
	}
}

func TestVectorsAreRubysOwn(t *testing.T) {
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		t.Skip("ruby is not on PATH (.ci/run installs it): the committed vectors are checked by the other tests only")
	}
	out, err := exec.Command(ruby, "../testdata/resque_vectors.rb").Output()
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("../testdata/resque-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(out), bytes.TrimSpace(committed)) {
		t.Errorf("Ruby now writes:\n%s\nthe committed vectors say:\n%s", out, committed)
	}
}

// startWorker runs an in-process worker with the sample functions.
func startWorker(t *testing.T, uri string) {
	t.Helper()
	reg := worker.NewRegistry()
	samples.Register(reg)
	workertest.Run(t, worker.Config{
		URI: uri, Hostname: "clienttest", Concurrency: 4, Connections: 8,
		Heartbeat: 100 * time.Millisecond, DeadAfter: time.Second,
	}, reg)
}

func dial(t *testing.T, uri string) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), client.Options{URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func pairs(n int) []any {
	items := make([]any, n)
	for i := range items {
		items[i] = []any{i, 2 * i}
	}
	return items
}

func TestMapReturnsResultsInOrder(t *testing.T) {
	srv := redistest.Start(t)
	startWorker(t, srv.URI)
	c := dial(t, srv.URI)
	ctx := context.Background()
	for _, chunk := range []int{0, 1, 7, 1000} {
		got, err := client.MapAs[int](ctx, c, "sampleadd", pairs(1000), &client.MapOptions{ChunkSize: chunk})
		if err != nil {
			t.Fatalf("chunk size %d: %v", chunk, err)
		}
		for i, v := range got {
			if v != 3*i {
				t.Fatalf("chunk size %d: result %d = %d, want %d", chunk, i, v, 3*i)
			}
		}
	}
	recs, err := client.MapAs[samples.WordStats](ctx, c, "samplewords", []any{"hello big world", "é"}, nil)
	if err != nil || recs[0].Words != 3 || recs[1].Chars != 1 || recs[1].Upper != "É" {
		t.Errorf("records %+v, %v", recs, err)
	}
	empty, err := c.Map(ctx, "sampleadd", nil, nil)
	if err != nil || len(empty) != 0 {
		t.Errorf("empty map: %v, %v", empty, err)
	}
	assertNoBatchKeys(t, srv)
}

func TestMapFailsOnTheFirstItemErrorAndCleansUp(t *testing.T) {
	srv := redistest.Start(t)
	startWorker(t, srv.URI)
	c := dial(t, srv.URI)
	items := []any{[]any{6, 3}, []any{1, 0}, []any{8, 2}}
	_, err := c.Map(context.Background(), "samplediv", items, &client.MapOptions{ChunkSize: 1})
	var te *client.TaskError
	if !errors.As(err, &te) || te.Index != 1 || te.Kind != "error" || te.Message != "division by zero" || te.Function != "samplediv" {
		t.Fatalf("err = %#v", err)
	}
	_, err = c.Map(context.Background(), "samplepanic", []any{"oops"}, nil)
	if !errors.As(err, &te) || te.Kind != "panic" || !strings.Contains(te.Stack, "samples.go:") {
		t.Fatalf("panic err = %#v", err)
	}
	assertNoBatchKeys(t, srv)
}

func TestMapWithoutWorkersFailsClearly(t *testing.T) {
	srv := redistest.Start(t)
	c := dial(t, srv.URI)
	start := time.Now()
	_, err := c.Map(context.Background(), "sampleadd", pairs(10), &client.MapOptions{NoWorkersAfter: 200 * time.Millisecond})
	if !errors.Is(err, client.ErrNoWorkers) || !strings.Contains(err.Error(), "start one with: gomap-worker -queues sampleadd") {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v to notice", took)
	}
	assertNoBatchKeys(t, srv)
	if n := srv.Client().LLen(context.Background(), "goworker:queue:sampleadd").Val(); n != 0 {
		t.Errorf("%d chunks left queued", n)
	}
}

func TestMapTimeoutCancelsTheBatch(t *testing.T) {
	srv := redistest.Start(t)
	startWorker(t, srv.URI)
	c := dial(t, srv.URI)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	items := repeat(30.0, 20) // seconds: the worker stops them when the batch is cancelled
	_, err := c.Map(ctx, "samplesleep", items, &client.MapOptions{ChunkSize: 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	assertNoBatchKeys(t, srv)
	if n := srv.Client().LLen(context.Background(), "goworker:queue:samplesleep").Val(); n != 0 {
		t.Errorf("%d chunks left queued after cancel", n)
	}
}

func TestMapOnARedisCluster(t *testing.T) {
	uri := redistest.StartCluster(t)
	startWorker(t, uri)
	c := dial(t, uri)
	// Batch keys and queues live on different nodes; many small batches make
	// it likely that a race between them (meta key vs first chunk) shows.
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		got, err := client.MapAs[int](ctx, c, "sampleadd", pairs(100), &client.MapOptions{ChunkSize: 10})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != 3*i {
				t.Fatalf("result %d = %d", i, v)
			}
		}
	}
	if err := c.Enqueue(context.Background(), "sampleupper", "sampleupper", "plain"); err != nil {
		t.Fatal(err)
	}
}

// assertNoBatchKeys checks that no batch key is left in Redis.
func assertNoBatchKeys(t *testing.T, srv *redistest.Server) {
	t.Helper()
	keys, err := srv.Client().Keys(context.Background(), "goworker:gomap:{*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Errorf("batch keys left behind: %q", keys)
	}
}

// MapOptions.Progress hears the items done inside a chunk while it runs, not
// only when the chunk completes.
func TestMapProgressCountsItemsInsideARunningChunk(t *testing.T) {
	srv := redistest.Start(t)
	startWorker(t, srv.URI)
	c := dial(t, srv.URI)
	items := make([]any, 8)
	for i := range items {
		items[i] = 0.2 * float64(i+1) // seconds: samplesleep runs them all at once; they end 0.2 s apart
	}
	var seen []int
	_, err := c.Map(context.Background(), "samplesleep", items, &client.MapOptions{
		ChunkSize: len(items),
		Progress: func(done, total int) {
			if total != len(items) {
				t.Errorf("total %d, want %d", total, len(items))
			}
			seen = append(seen, done)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 || seen[len(seen)-1] != len(items) {
		t.Fatalf("progress %v: want it to end at %d", seen, len(items))
	}
	inside := false
	for _, n := range seen {
		inside = inside || (n > 0 && n < len(items))
	}
	if !inside {
		t.Errorf("progress %v: no count from inside the running chunk", seen)
	}
}
