package worker_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomap/gomap/worker"
	"github.com/redis/go-redis/v9"
)

func TestPlainJobWritesResqueKeys(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	running := make(chan []any, 1)
	reg := worker.NewRegistry()
	reg.Register("Archive", func(queue string, args ...interface{}) error {
		running <- append([]any{queue}, args...)
		<-release
		return nil
	})
	cfg := e.config("hosta")
	cfg.Queues = []worker.Queue{{Name: "archive"}, {Name: "other"}}
	cfg.Concurrency = 2
	w, stop := e.run(cfg, reg)

	pid := os.Getpid()
	ids := []string{fmt.Sprintf("hosta:%d-0:archive,other", pid), fmt.Sprintf("hosta:%d-1:archive,other", pid)}
	if w.ID() != fmt.Sprintf("hosta:%d", pid) {
		t.Errorf("ID() = %q", w.ID())
	}
	members, err := e.rdb.SMembers(e.ctx, e.keys.Workers()).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(members)
	if !slices.Equal(members, ids) {
		t.Errorf("workers = %q, want %q (goworker's host:pid-N:queues)", members, ids)
	}
	rubyToS := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$`)
	iso8601 := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$`)
	for _, id := range ids {
		if s := e.get(e.keys.WorkerStarted(id)); !rubyToS.MatchString(s) {
			t.Errorf("worker:%s:started = %q, want Ruby's Time#to_s", id, s)
		}
		hb, err := e.rdb.HGet(e.ctx, e.keys.Heartbeat(), id).Result()
		if err != nil || !iso8601.MatchString(hb) {
			t.Errorf("workers:heartbeat[%s] = %q, %v; want ISO 8601", id, hb, err)
		}
	}

	payload := `{"class":"Archive","args":[35,"tar",{"k":[1,2]}]}`
	e.push("archive", payload)
	got := <-running
	if want := []any{"archive", 35.0, "tar", map[string]any{"k": []any{1.0, 2.0}}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("function got %v, want %v", got, want)
	}
	// While it runs, worker:<id> says so, as Ruby's working_on writes it.
	var working string
	e.eventually("worker:<id> is set", func() bool {
		for _, id := range ids {
			if working = e.get(e.keys.Worker(id)); working != "" {
				return true
			}
		}
		return false
	})
	var rec struct {
		Queue   string         `json:"queue"`
		RunAt   string         `json:"run_at"`
		Payload jsontext.Value `json:"payload"`
	}
	if err := json.Unmarshal([]byte(working), &rec); err != nil {
		t.Fatalf("worker record %q: %v", working, err)
	}
	if names := objectNames(t, working); !slices.Equal(names, []string{"queue", "run_at", "payload"}) {
		t.Errorf("worker record keys %v", names)
	}
	if rec.Queue != "archive" || string(rec.Payload) != payload ||
		!regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(rec.RunAt) {
		t.Errorf("worker record = %+v", rec)
	}
	if n := e.llen(e.keys.Inflight("archive", w.ID())); n != 1 {
		t.Errorf("in-flight list holds %d jobs while one runs, want 1", n)
	}
	close(release)
	e.eventually("the job is counted", func() bool { return e.get(e.keys.Stat("processed")) == "1" })
	e.eventually("worker:<id> is cleared", func() bool {
		for _, id := range ids {
			if e.get(e.keys.Worker(id)) != "" {
				return false
			}
		}
		return true
	})
	if n := e.llen(e.keys.Inflight("archive", w.ID())); n != 0 {
		t.Errorf("in-flight list holds %d jobs after the job, want 0", n)
	}
	perWorker := e.get(e.keys.Stat("processed:"+ids[0])) + e.get(e.keys.Stat("processed:"+ids[1]))
	if perWorker != "1" {
		t.Errorf("per-worker processed counters = %q, want one of them 1", perWorker)
	}

	stop()
	if n := e.exists(e.keys.Workers()); n != 0 {
		t.Errorf("workers left registered after shutdown")
	}
	for _, key := range []string{e.keys.Heartbeat(), e.keys.Processes(), e.keys.WorkerStarted(ids[0]),
		e.keys.Stat("processed:" + ids[0]), e.keys.Stat("processed:" + ids[1]), e.keys.Alive(w.ID())} {
		if e.exists(key) != 0 {
			t.Errorf("%s left after shutdown", key)
		}
	}
	if e.get(e.keys.Stat("processed")) != "1" {
		t.Error("the global processed counter must survive the worker")
	}
}

// objectNames returns the member names of a JSON object in order.
func objectNames(t *testing.T, obj string) []string {
	t.Helper()
	dec := jsontext.NewDecoder(strings.NewReader(obj))
	if _, err := dec.ReadToken(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tok.String())
		if err := dec.SkipValue(); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

func TestFailuresBecomeFailedEntriesAndTheWorkerCarriesOn(t *testing.T) {
	e := newEnv(t)
	reg := worker.NewRegistry()
	reg.Handle("add", worker.Func2(func(a, b int) (int, error) { return a + b, nil }))
	reg.Handle("fail", worker.Func1(func(s string) (int, error) { return 0, fmt.Errorf("refused %s", s) }))
	reg.Handle("boom", worker.Func1(func(s string) (int, error) { panic("kaboom " + s) }))
	ok := make(chan struct{}, 1)
	reg.Register("ok", func(string, ...interface{}) error { ok <- struct{}{}; return nil })
	cfg := e.config("hostf")
	cfg.Queues = []worker.Queue{{Name: "q"}}
	cfg.Concurrency = 1
	_, _ = e.run(cfg, reg)

	cases := []struct{ payload, exception, error string }{
		{`not json`, "DecodeError", "malformed payload"},
		{`[1,2]`, "DecodeError", "want a JSON object"},
		{`{"args":[1]}`, "DecodeError", `no "class"`},
		{`{"class":"nope","args":[]}`, "NameError", `no function registered for class "nope"`},
		{`{"class":"add","args":"1,2"}`, "ArgumentError", `"args" is not a JSON array`},
		{`{"class":"add","args":[1]}`, "ArgumentError", "takes 2 arguments, got 1"},
		{`{"class":"add","args":[1,"x"]}`, "ArgumentError", `argument 2: want int, got "x"`},
		{`{"class":"add","args":[1,null]}`, "ArgumentError", "argument 2: null is not a valid int"},
		{`{"class":"fail","args":["it"]}`, "Error", "refused it"},
		{`{"class":"boom","args":["now"]}`, "Panic", "kaboom now"},
	}
	for _, c := range cases {
		e.push("q", c.payload)
	}
	e.push("q", `{"class":"ok","args":[]}`)
	select {
	case <-ok:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker stopped serving after malformed jobs")
	}
	// A slot does not wait for a plain job's acknowledgement: the last
	// failed entry may still be on its way when "ok" runs.
	e.eventually("every failed entry is written", func() bool { return e.llen(e.keys.Failed()) >= int64(len(cases)) })
	entries, err := e.rdb.LRange(e.ctx, e.keys.Failed(), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(cases) {
		t.Fatalf("%d failed entries, want %d: %q", len(entries), len(cases), entries)
	}
	failedAt := regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \S+$`)
	for i, c := range cases {
		var f struct {
			FailedAt  string         `json:"failed_at"`
			Payload   jsontext.Value `json:"payload"`
			Exception string         `json:"exception"`
			Error     string         `json:"error"`
			Backtrace []string       `json:"backtrace"`
			Worker    string         `json:"worker"`
			Queue     string         `json:"queue"`
		}
		if err := json.Unmarshal([]byte(entries[i]), &f); err != nil {
			t.Fatalf("entry %q: %v", entries[i], err)
		}
		want := []string{"failed_at", "payload", "exception", "error", "backtrace", "worker", "queue"}
		if names := objectNames(t, entries[i]); !slices.Equal(names, want) {
			t.Errorf("entry keys %v, want Ruby's order %v", names, want)
		}
		if f.Exception != c.exception || !strings.Contains(f.Error, c.error) || f.Queue != "q" ||
			!failedAt.MatchString(f.FailedAt) || !strings.HasPrefix(f.Worker, "hostf:") {
			t.Errorf("payload %s: entry %+v, want exception %s with %q", c.payload, f, c.exception, c.error)
		}
		if c.exception == "Panic" && (len(f.Backtrace) < 2 || !strings.Contains(strings.Join(f.Backtrace, "\n"), "resque_test.go:")) {
			t.Errorf("panic backtrace does not point at the function: %q", f.Backtrace)
		}
		if wantPayload := c.payload; jsontext.Value(wantPayload).IsValid() && string(f.Payload) != wantPayload {
			t.Errorf("entry payload %s, want %s", f.Payload, wantPayload)
		}
	}
	if got := e.get(e.keys.Stat("failed")); got != fmt.Sprint(len(cases)) {
		t.Errorf("stat:failed = %s", got)
	}
	e.eventually("stat:processed counts failures too, as Ruby does", func() bool {
		return e.get(e.keys.Stat("processed")) == fmt.Sprint(len(cases)+1)
	})
}

func TestStrictQueueOrder(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("job")
	for i := range 5 {
		e.push("low", fmt.Sprintf(`{"class":"job","args":["low",%d]}`, i))
		e.push("high", fmt.Sprintf(`{"class":"job","args":["high",%d]}`, i))
	}
	cfg := e.config("hosts")
	cfg.Queues = []worker.Queue{{Name: "high"}, {Name: "low"}}
	cfg.Concurrency = 1
	e.run(cfg, reg)
	var order []string
	for range 10 {
		order = append(order, receive(t, calls).queue)
	}
	want := []string{"high", "high", "high", "high", "high", "low", "low", "low", "low", "low"}
	if !slices.Equal(order, want) {
		t.Errorf("order %v, want every high job before any low one", order)
	}
}

func TestWeightedQueueOrderServesEveryQueue(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("job")
	for i := range 40 {
		e.push("a", fmt.Sprintf(`{"class":"job","args":[%d]}`, i))
		e.push("b", fmt.Sprintf(`{"class":"job","args":[%d]}`, i))
	}
	cfg := e.config("hostw")
	qs, err := worker.ParseQueues("a=1,b=1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Queues = qs
	cfg.Concurrency = 1
	e.run(cfg, reg)
	seen := map[string]int{}
	for range 24 {
		seen[receive(t, calls).queue]++
	}
	// Strict order would give 24 × a. Weighted 1:1, all 24 from one queue
	// has probability 2⁻²³.
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("first 24 jobs by queue: %v; weighted order must interleave", seen)
	}
}

func TestIdleWorkerPicksUpAJobWithoutPolling(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("q1", "q2", "q3")
	cfg := e.config("hostb")
	cfg.Interval = 30 * time.Second // a polling worker would wait this long
	e.run(cfg, reg)
	// The worker listens on its three function queues; wait until it blocks
	// on all of them.
	e.eventually("the worker blocks on its 3 queues", func() bool { return blockedClients(t, e.rdb) == 3 })
	for _, q := range []string{"q3", "q1", "q2"} {
		start := time.Now()
		e.push(q, fmt.Sprintf(`{"class":%q,"args":[]}`, q))
		c := receive(t, calls)
		if took := time.Since(start); c.queue != q || took > time.Second {
			t.Errorf("job on %s ran on %s after %v; an idle worker must take it at once", q, c.queue, took)
		} else {
			t.Logf("pickup on %s: %v", q, took)
		}
		e.eventually("the worker blocks again", func() bool { return blockedClients(t, e.rdb) == 3 })
	}
}

func blockedClients(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "clients").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`blocked_clients:(\d+)`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("no blocked_clients in %q", info)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return n
}
