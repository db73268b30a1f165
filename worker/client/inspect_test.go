package client

// These tests are inside the package: they fix the inspector's clock, and one
// changes a failed entry between Remove's read and its script.

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/gomap/gomap/worker/samples"
	"github.com/redis/go-redis/v9"
)

// inspectAt is 2025-04-15 19:42:01 UTC, the inspector's clock in these tests.
func inspectAt() time.Time { return time.Date(2025, 4, 15, 19, 42, 1, 0, time.UTC) }

func newInspector(rdb redis.UniversalClient) *Inspector {
	i := New(rdb, "").Inspect()
	i.now = inspectAt
	return i
}

// failedEntry is a failed entry as a gomap or Ruby worker writes it.
func failedEntry(t *testing.T, queue, class, exception, errText string, args ...any) string {
	t.Helper()
	raw, err := json.Marshal(map[string]any{
		"failed_at": "2025/04/15 19:00:00 UTC", "payload": map[string]any{"class": class, "args": args},
		"exception": exception, "error": errText, "backtrace": []string{"main.go:1", "main.go:2"},
		"worker": "host:1-0:" + queue, "queue": queue,
	}, json.Deterministic(true))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func pushFailed(t *testing.T, rdb redis.UniversalClient, entries ...string) {
	t.Helper()
	for _, e := range entries {
		if err := rdb.RPush(context.Background(), "goworker:failed", e).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInspectQueuesPauseAndResume(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	c := New(rdb, "")
	i := newInspector(rdb)
	ctx := context.Background()
	for _, q := range []string{"beta", "alpha", "alpha"} {
		if err := c.Enqueue(ctx, q, "Job", 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"alpha", "empty"} {
		if err := i.Pause(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	at, err := rdb.Get(ctx, "goworker:gomap:paused:{goworker:queue:alpha}").Result()
	if err != nil || at != "2025-04-15T19:42:01Z" {
		t.Fatalf("paused key = %q, %v; want the pause time in RFC 3339 UTC", at, err)
	}
	qs, err := i.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Queue{{Name: "alpha", Length: 2, Paused: true}, {Name: "beta", Length: 1}, {Name: "empty", Paused: true}}
	if !slices.Equal(qs, want) {
		t.Fatalf("Queues = %+v, want %+v", qs, want)
	}
	if err := i.Resume(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Exists(ctx, "goworker:gomap:paused:{goworker:queue:alpha}").Result(); err != nil || n != 0 {
		t.Fatalf("paused key after Resume: exists %d, %v", n, err)
	}
	if qs, err = i.Queues(ctx); err != nil || qs[0].Paused {
		t.Fatalf("after Resume: %+v, %v", qs, err)
	}
	if err := i.Pause(ctx, "a{b}"); !errors.Is(err, protocol.ErrBadQueueName) {
		t.Fatalf("Pause of a name with braces: %v", err)
	}
}

func TestInspectProcessesAndWorkersIncludingAForeignResqueWorker(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	reg := worker.NewRegistry()
	samples.Register(reg)
	w, _ := workertest.Run(t, worker.Config{URI: srv.URI, Hostname: "inspecttest", Queues: []worker.Queue{{Name: "sampleadd"}},
		Concurrency: 2, Heartbeat: 100 * time.Millisecond, DeadAfter: time.Second}, reg)

	// A dead gomap process: its record without an alive key.
	dead := protocol.Process{ID: "deadhost:7", Host: "deadhost", PID: 7, Queues: []string{"q"}, Concurrency: 3,
		Slots: []string{"deadhost:7-0:q"}}
	rec, err := json.Marshal(dead)
	if err != nil {
		t.Fatal(err)
	}
	// A Ruby worker working on a job, and one whose heartbeat stopped long ago.
	ruby, stale := "rubyhost:4242:low,high", "rubyhost:4243:low"
	job := `{"queue":"low","run_at":"2025-04-15T19:41:00Z","payload":{"class":"Archive","args":[35,"tar"]}}`
	_, err = rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		// Its record says it stopped taking jobs from paused queue q.
		pipe.HSet(ctx, "goworker:gomap:workers", dead.ID, string(rec[:len(rec)-1])+`,"paused":["q"]}`)
		pipe.HSet(ctx, "goworker:gomap:workers", "broken", "not json")
		pipe.SAdd(ctx, "goworker:workers", ruby, stale)
		pipe.Set(ctx, "goworker:worker:"+ruby, job, 0)
		pipe.HSet(ctx, "goworker:workers:heartbeat", ruby, protocol.HeartbeatTime(inspectAt().Add(-42*time.Second)))
		pipe.HSet(ctx, "goworker:workers:heartbeat", stale, "2025-04-15T19:30:00+00:00")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	i := newInspector(rdb)
	ps, err := i.Processes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 {
		t.Fatalf("Processes = %+v, want the dead one and the live one", ps)
	}
	if p := ps[0]; p.ID != dead.ID || p.Alive || p.Slots != 3 || p.PID != 7 || !slices.Equal(p.Paused, []string{"q"}) {
		t.Errorf("dead process = %+v", p)
	}
	live := ps[1]
	if live.ID != w.ID() || !live.Alive || live.Host != "inspecttest" || live.Slots != 2 || live.Cores < 1 ||
		!slices.Contains(live.Functions, "sampleadd") || !slices.Equal(live.Queues, []string{"sampleadd"}) {
		t.Errorf("live process = %+v (worker %s)", live, w.ID())
	}

	ws, err := i.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]ResqueWorker{}
	gomapSlots := 0
	for _, rw := range ws {
		byID[rw.ID] = rw
		if rw.Gomap {
			gomapSlots++
			if rw.Host != "inspecttest" || !slices.Equal(rw.Queues, []string{"sampleadd"}) {
				t.Errorf("gomap slot = %+v", rw)
			}
		}
	}
	if gomapSlots != 2 || len(ws) != 4 {
		t.Fatalf("Workers = %+v, want 2 gomap slots and 2 Ruby workers", ws)
	}
	r := byID[ruby]
	if r.Gomap || r.Host != "rubyhost" || r.PID != "4242" || !slices.Equal(r.Queues, []string{"low", "high"}) {
		t.Errorf("Ruby worker = %+v", r)
	}
	if r.HeartbeatAge != 42*time.Second || r.Stale() {
		t.Errorf("Ruby worker heartbeat %q: age %v, stale %v; want 42s, live", r.Heartbeat, r.HeartbeatAge, r.Stale())
	}
	if r.Job == nil || r.Job.Queue != "low" || r.Job.RunAt != "2025-04-15T19:41:00Z" || r.Job.Class() != "Archive" {
		t.Errorf("Ruby worker's job = %+v", r.Job)
	}
	if s := byID[stale]; s.Job != nil || !s.Stale() || s.HeartbeatAge != 12*time.Minute+time.Second {
		t.Errorf("stale Ruby worker = %+v (stale %v)", s, s.Stale())
	}
}

func TestInspectStats(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	i := newInspector(rdb)
	if s, err := i.Stats(ctx); err != nil || s != (Stats{}) {
		t.Fatalf("Stats of an empty Redis = %+v, %v", s, err)
	}
	_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, "goworker:stat:processed", "17", 0)
		pipe.Set(ctx, "goworker:stat:failed", "5", 0)
		pipe.Set(ctx, "goworker:gomap:stat:requeued", "3", 0)
		pipe.Set(ctx, "goworker:gomap:stat:pruned", "2", 0)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := i.Stats(ctx)
	if want := (Stats{Processed: 17, Failed: 5, Requeued: 3, Pruned: 2}); err != nil || s != want {
		t.Fatalf("Stats = %+v, %v; want %+v", s, err, want)
	}
	if err := rdb.Set(ctx, "goworker:stat:failed", "many", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := i.Stats(ctx); err == nil {
		t.Fatal("Stats took a counter that is not a number")
	}
}

func TestInspectFailedPagesAndFilters(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	i := newInspector(rdb)
	for n := range 5 {
		class, exc := "A", "Error"
		if n%2 == 1 {
			class, exc = "B", "Panic"
		}
		pushFailed(t, rdb, failedEntry(t, "q"+class, class, exc, "boom "+strconv.Itoa(n), n))
	}
	pushFailed(t, rdb, "not json at all")
	if n, err := i.FailedCount(ctx); err != nil || n != 6 {
		t.Fatalf("FailedCount = %d, %v", n, err)
	}
	indexes := func(fs []Failed) []int64 {
		var out []int64
		for _, f := range fs {
			out = append(out, f.Index)
		}
		return out
	}
	for _, tc := range []struct {
		offset, limit int
		where         FailedFilter
		want          []int64
	}{
		{0, 50, FailedFilter{}, []int64{0, 1, 2, 3, 4, 5}},
		{1, 2, FailedFilter{}, []int64{1, 2}},
		{0, 50, FailedFilter{Class: "A"}, []int64{0, 2, 4}},
		{1, 1, FailedFilter{Class: "A"}, []int64{2}},
		{0, 50, FailedFilter{Queue: "qB"}, []int64{1, 3}},
		{0, 50, FailedFilter{Exception: "Panic", Grep: "boom 3"}, []int64{3}},
		{0, 50, FailedFilter{Grep: "at all"}, []int64{5}},
		{0, 0, FailedFilter{}, nil},
	} {
		got, err := i.Failed(ctx, tc.offset, tc.limit, tc.where)
		if err != nil || !slices.Equal(indexes(got), tc.want) {
			t.Errorf("Failed(%d, %d, %+v) = %v, %v; want %v", tc.offset, tc.limit, tc.where, indexes(got), err, tc.want)
		}
	}
	f, err := i.FailedOne(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != "B" || f.Queue != "qB" || f.Exception != "Panic" || f.Error != "boom 3" || f.FailedAt != "2025/04/15 19:00:00 UTC" ||
		f.Worker != "host:1-0:qB" || !slices.Equal(f.Backtrace, []string{"main.go:1", "main.go:2"}) ||
		len(f.Args) != 1 || string(f.Args[0]) != "3" || f.RetriedAt != "" {
		t.Errorf("FailedOne(3) = %+v", f)
	}
	if _, err := i.FailedOne(ctx, 6); !errors.Is(err, ErrNoFailedJob) {
		t.Errorf("FailedOne past the end: %v", err)
	}
	if _, err := i.Failed(ctx, -1, 5, FailedFilter{}); err == nil {
		t.Error("Failed took a negative offset")
	}
}

func TestInspectRetrySetsRetriedAtAndPushesThePayload(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	i := newInspector(rdb)
	// Member order and a big integer must survive the rewrite.
	entry := `{"failed_at":"2025/04/15 19:00:00 UTC","payload":{"class":"Add","args":[9007199254740993,"é"]},` +
		`"exception":"Error","error":"bad","backtrace":[],"worker":"h:1-0:math","queue":"math"}`
	pushFailed(t, rdb, failedEntry(t, "other", "X", "Error", "e"), entry, "not json")
	got, err := i.Retry(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got.Class != "Add" || got.Stored != entry {
		t.Errorf("Retry returned %+v", got)
	}
	jobs, err := rdb.LRange(ctx, "goworker:queue:math", 0, -1).Result()
	if err != nil || !slices.Equal(jobs, []string{`{"class":"Add","args":[9007199254740993,"é"]}`}) {
		t.Fatalf("queue math = %q, %v", jobs, err)
	}
	if ok, err := rdb.SIsMember(ctx, "goworker:queues", "math").Result(); err != nil || !ok {
		t.Errorf("math not in the queues set: %v", err)
	}
	now, err := rdb.LIndex(ctx, "goworker:failed", 1).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := entry[:len(entry)-1] + `,"retried_at":"2025/04/15 19:42:01 UTC"}`
	if now != want {
		t.Errorf("entry after Retry:\n got %s\nwant %s", now, want)
	}
	// Again: retried_at is replaced, not added twice, and the job is pushed again.
	i.now = func() time.Time { return inspectAt().Add(time.Hour) }
	if _, err := i.Retry(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if now, err = rdb.LIndex(ctx, "goworker:failed", 1).Result(); err != nil || now != entry[:len(entry)-1]+`,"retried_at":"2025/04/15 20:42:01 UTC"}` {
		t.Errorf("entry after a second Retry: %s, %v", now, err)
	}
	if n, err := rdb.LLen(ctx, "goworker:queue:math").Result(); err != nil || n != 2 {
		t.Errorf("queue math holds %d, %v; want 2", n, err)
	}
	if _, err := i.Retry(ctx, 2); !errors.Is(err, ErrNotRetryable) {
		t.Errorf("Retry of an entry without payload: %v", err)
	}
	if _, err := i.Retry(ctx, 3); !errors.Is(err, ErrNoFailedJob) {
		t.Errorf("Retry past the end: %v", err)
	}
	if n, err := i.FailedCount(ctx); err != nil || n != 3 {
		t.Errorf("Retry changed the number of failed entries: %d, %v", n, err)
	}
}

func TestInspectRetryWhereByClass(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	i := newInspector(rdb)
	for n := range 5 {
		class := "A"
		if n%2 == 1 {
			class = "B"
		}
		pushFailed(t, rdb, failedEntry(t, "q", class, "Error", "e", n))
	}
	n, err := i.RetryWhere(ctx, FailedFilter{Class: "A"})
	if err != nil || n != 3 {
		t.Fatalf("RetryWhere(A) = %d, %v; want 3", n, err)
	}
	jobs, err := rdb.LRange(ctx, "goworker:queue:q", 0, -1).Result()
	want := []string{`{"args":[0],"class":"A"}`, `{"args":[2],"class":"A"}`, `{"args":[4],"class":"A"}`}
	if err != nil || !slices.Equal(jobs, want) {
		t.Fatalf("queue q = %q, %v; want %q", jobs, err, want)
	}
	fs, err := i.Failed(ctx, 0, 10, FailedFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if retried := f.RetriedAt != ""; retried != (f.Class == "A") {
			t.Errorf("entry %d (class %s): retried_at %q", f.Index, f.Class, f.RetriedAt)
		}
	}
}

func TestInspectRemoveRefusesAnEntryThatChanged(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	i := newInspector(rdb)
	a, b, c := failedEntry(t, "q", "A", "Error", "a"), failedEntry(t, "q", "B", "Error", "b"), failedEntry(t, "q", "C", "Error", "c")
	pushFailed(t, rdb, a, b, c)
	got, err := i.Remove(ctx, 1)
	if err != nil || got.Class != "B" {
		t.Fatalf("Remove(1) = %+v, %v", got, err)
	}
	if l, err := rdb.LRange(ctx, "goworker:failed", 0, -1).Result(); err != nil || !slices.Equal(l, []string{a, c}) {
		t.Fatalf("failed after Remove(1) = %q, %v", l, err)
	}
	// Another tool removes entry 0 between the read and the script.
	read, err := i.FailedOne(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.LPop(ctx, "goworker:failed").Err(); err != nil {
		t.Fatal(err)
	}
	var changed *ChangedError
	if err := i.removeEntry(ctx, read); !errors.As(err, &changed) || changed.Index != 0 {
		t.Fatalf("removing an entry that moved: %v, want a *ChangedError", err)
	}
	if l, err := rdb.LRange(ctx, "goworker:failed", 0, -1).Result(); err != nil || !slices.Equal(l, []string{c}) {
		t.Fatalf("a refused Remove changed the list: %q, %v", l, err)
	}
	if _, err := i.Remove(ctx, 1); !errors.Is(err, ErrNoFailedJob) {
		t.Errorf("Remove past the end: %v", err)
	}
}

func TestInspectClear(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	i := newInspector(rdb)
	pushFailed(t, rdb, "x", "y", "z")
	if n, err := i.Clear(ctx); err != nil || n != 3 {
		t.Fatalf("Clear = %d, %v; want 3", n, err)
	}
	if n, err := rdb.Exists(ctx, "goworker:failed").Result(); err != nil || n != 0 {
		t.Fatalf("failed list after Clear: exists %d, %v", n, err)
	}
	if n, err := i.Clear(ctx); err != nil || n != 0 {
		t.Fatalf("Clear of nothing = %d, %v", n, err)
	}
}

// chunkPayload is a chunk of batch as Map submits it.
func chunkPayload(t *testing.T, batch string, start int) string {
	t.Helper()
	raw, err := protocol.AppendChunk(nil, "sampleadd", batch, int64(start), []byte(`[[1,2]]`), 0)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestInspectCancelBatchRemovesItsKeysAndQueuedChunksOnly(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	i := newInspector(rdb)
	k := protocol.NewKeys("")
	mine, other := "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	plain := `{"class":"sampleadd","args":[1,2]}`
	queue := []string{chunkPayload(t, mine, 0), chunkPayload(t, other, 0), plain, chunkPayload(t, mine, 10), chunkPayload(t, mine, 0)}
	_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, b := range []string{mine, other} {
			pipe.HSet(ctx, k.BatchMeta(b), "function", "sampleadd", "queue", "sampleadd", "items", "20")
			pipe.HSet(ctx, k.BatchResults(b), "5", "x")
			pipe.RPush(ctx, k.BatchDone(b), "5")
			pipe.RPush(ctx, k.BatchTaken(b), "0")
		}
		pipe.RPush(ctx, k.Queue("sampleadd"), queue)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := i.CancelBatch(ctx, mine)
	if err != nil || n != 3 {
		t.Fatalf("CancelBatch = %d, %v; want its 3 queued chunks", n, err)
	}
	if left, err := rdb.LRange(ctx, k.Queue("sampleadd"), 0, -1).Result(); err != nil || !slices.Equal(left, []string{queue[1], plain}) {
		t.Errorf("queue after CancelBatch = %q, %v; want the other batch's chunk and the plain job", left, err)
	}
	if n, err := rdb.Exists(ctx, k.BatchMeta(mine), k.BatchResults(mine), k.BatchDone(mine), k.BatchTaken(mine)).Result(); err != nil || n != 0 {
		t.Errorf("%d keys of the cancelled batch left (%v)", n, err)
	}
	if n, err := rdb.Exists(ctx, k.BatchMeta(other), k.BatchResults(other), k.BatchDone(other), k.BatchTaken(other)).Result(); err != nil || n != 4 {
		t.Errorf("the other batch has %d of its 4 keys (%v)", n, err)
	}
	if _, err := i.CancelBatch(ctx, mine); !errors.Is(err, ErrNoBatch) {
		t.Errorf("CancelBatch of a gone batch: %v", err)
	}
}

// A job a real worker failed goes back on its queue with Retry, runs again
// and fails again; its entry keeps its place and records the retry.
func TestInspectRetryOfAJobARealWorkerFailed(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	reg := worker.NewRegistry()
	samples.Register(reg)
	workertest.Run(t, worker.Config{URI: srv.URI, Hostname: "inspecttest", Queues: []worker.Queue{{Name: "work"}},
		Concurrency: 1, Heartbeat: 100 * time.Millisecond, DeadAfter: time.Second}, reg)
	i := newInspector(rdb)
	if err := New(rdb, "").Enqueue(ctx, "work", "nosuchfunction", 1); err != nil {
		t.Fatal(err)
	}
	countIs := func(want int64) func() bool {
		return func() bool { n, err := i.FailedCount(ctx); return err == nil && n == want }
	}
	redistest.Eventually(t, 10*time.Second, "the worker fails the job", countIs(1))
	f, err := i.Retry(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.Exception != "NameError" || f.Class != "nosuchfunction" || f.Queue != "work" {
		t.Errorf("failed entry = %+v", f)
	}
	redistest.Eventually(t, 10*time.Second, "the worker fails the retried job", countIs(2))
	fs, err := i.Failed(ctx, 0, 10, FailedFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if fs[0].RetriedAt != "2025/04/15 19:42:01 UTC" || fs[1].RetriedAt != "" || fs[1].Class != "nosuchfunction" {
		t.Errorf("after the retry: %+v", fs)
	}
	if s, err := i.Stats(ctx); err != nil || s.Failed != 2 || s.Processed != 2 {
		t.Errorf("Stats = %+v, %v", s, err)
	}
}

// On a Redis Cluster the keys of one action live in different slots: every
// query and action still works (pipelines split by slot, scripts use one key).
func TestInspectOnARedisCluster(t *testing.T) {
	uri := redistest.StartCluster(t)
	rdb := redistest.ClusterClient(t, uri)
	ctx := context.Background()
	i := newInspector(rdb)
	c := New(rdb, "")
	k := protocol.NewKeys("")
	for _, q := range []string{"a", "b", "c", "d"} {
		if err := c.Enqueue(ctx, q, "Job"); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"a", "c"} {
		if err := i.Pause(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	qs, err := i.Queues(ctx)
	want := []Queue{{"a", 1, true}, {"b", 1, false}, {"c", 1, true}, {"d", 1, false}}
	if err != nil || !slices.Equal(qs, want) {
		t.Fatalf("Queues = %+v, %v", qs, err)
	}
	if err := i.Resume(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, k.Counter("pruned"), "4", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if s, err := i.Stats(ctx); err != nil || s != (Stats{Pruned: 4}) {
		t.Errorf("Stats = %+v, %v", s, err)
	}
	if err := rdb.SAdd(ctx, k.Workers(), "rubyhost:1:a").Err(); err != nil {
		t.Fatal(err)
	}
	if ws, err := i.Workers(ctx); err != nil || len(ws) != 1 || ws[0].Host != "rubyhost" || ws[0].Job != nil {
		t.Errorf("Workers = %+v, %v", ws, err)
	}
	pushFailed(t, rdb, failedEntry(t, "x", "X", "Error", "e"), failedEntry(t, "y", "Y", "Error", "e"))
	if n, err := i.RetryWhere(ctx, FailedFilter{}); err != nil || n != 2 {
		t.Fatalf("RetryWhere = %d, %v", n, err)
	}
	if n, err := rdb.LLen(ctx, k.Queue("y")).Result(); err != nil || n != 1 {
		t.Errorf("queue y holds %d, %v", n, err)
	}
	if _, err := i.Remove(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := i.Clear(ctx); err != nil || n != 1 {
		t.Errorf("Clear = %d, %v", n, err)
	}
	batch := "0123456789abcdef0123456789abcdef"
	if err := rdb.HSet(ctx, k.BatchMeta(batch), "function", "sampleadd", "queue", "sampleadd").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.RPush(ctx, k.Queue("sampleadd"), chunkPayload(t, batch, 0), chunkPayload(t, batch, 1)).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := i.CancelBatch(ctx, batch); err != nil || n != 2 {
		t.Errorf("CancelBatch = %d, %v", n, err)
	}
}
