package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/client"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/gomap/gomap/worker/metrics"
	"github.com/gomap/gomap/worker/samples"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return string(body)
}

// A worker with metrics on runs a batch with a failing item, a plain job
// that succeeds and one that fails; /metrics counts them by function.
func TestMetricsCountItemsAndJobsByFunction(t *testing.T) {
	srv := redistest.Start(t)
	m := metrics.New()
	s, err := m.Serve("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	url := "http://" + s.Addr() + "/metrics"
	reg := worker.NewRegistry()
	samples.Register(reg)
	workertest.Run(t, worker.Config{URI: srv.URI, Hostname: "m", Concurrency: 2, Observer: m}, reg)

	c := client.New(srv.Client(), "")
	ctx := context.Background()
	items := []any{[]any{6, 3}, []any{1, 0}, []any{8, 2}}
	_, err = c.Map(ctx, "samplediv", items, &client.MapOptions{ChunkSize: 3})
	if te := (*client.TaskError)(nil); !errors.As(err, &te) || te.Kind != "error" {
		t.Fatalf("the batch: %v, want its item 1 to fail", err)
	}
	if err := c.Enqueue(ctx, "sampleupper", "sampleupper", "x"); err != nil {
		t.Fatal(err)
	}
	if err := c.Enqueue(ctx, "samplediv", "samplediv", 1, 0); err != nil {
		t.Fatal(err)
	}

	want := []string{
		`gomap_worker_items_processed_total{function="samplediv"} 3`,
		`gomap_worker_items_failed_total{function="samplediv",kind="error"} 1`,
		`gomap_worker_item_duration_seconds_count{function="samplediv"} 3`,
		`gomap_worker_item_duration_seconds_bucket{function="samplediv",le="+Inf"} 3`,
		`gomap_worker_jobs_processed_total{function="samplediv"} 2`, // the chunk and the plain job
		`gomap_worker_jobs_processed_total{function="sampleupper"} 1`,
		`gomap_worker_jobs_failed_total{function="samplediv",kind="Error"} 1`,
		`gomap_worker_chunks_in_flight{function="samplediv"} 0`,
		`gomap_worker_reserved_jobs_total 3`,
		`gomap_worker_reaper_requeued_jobs_total 0`,
	}
	var body string
	var missing []string
	ok := false
	t.Cleanup(func() {
		if !ok {
			t.Logf("/metrics lacks\n%s\nit has:\n%s", strings.Join(missing, "\n"), body)
		}
	})
	redistest.Eventually(t, 10*time.Second, "/metrics counts the batch and the jobs", func() bool {
		body = scrape(t, url)
		missing = missingLines(body, want)
		return len(missing) == 0
	})
	ok = true
	for _, absent := range []string{`gomap_worker_items_failed_total{function="sampleupper"`,
		`gomap_worker_jobs_failed_total{function="sampleupper"`} {
		if strings.Contains(body, absent) {
			t.Errorf("/metrics has %s, but nothing of sampleupper failed:\n%s", absent, body)
		}
	}
}

func missingLines(body string, want []string) []string {
	lines := map[string]bool{}
	for l := range strings.SplitSeq(body, "\n") {
		lines[l] = true
	}
	var missing []string
	for _, w := range want {
		if !lines[w] {
			missing = append(missing, w)
		}
	}
	return missing
}

// The reaper's requeues and chunks in flight reach the collector as they happen.
func TestCollectorCountsRequeuesAndChunksInFlight(t *testing.T) {
	m := metrics.New()
	m.Requeued(4)
	m.ChunkStarted("f")
	m.ChunkStarted("f")
	m.ChunkDone("f")
	rec := httptestGet(t, m.Handler())
	for _, w := range []string{`gomap_worker_reaper_requeued_jobs_total 4`, `gomap_worker_chunks_in_flight{function="f"} 1`} {
		if !strings.Contains(rec, w+"\n") {
			t.Errorf("/metrics lacks %s:\n%s", w, rec)
		}
	}
}

// A taken address is an error at once, which names the flag and the address.
func TestServeReportsATakenAddress(t *testing.T) {
	m := metrics.New()
	s, err := m.Serve("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	_, err = metrics.New().Serve(s.Addr(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "-metrics-addr "+s.Addr()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Serve on a taken address: %v", err)
	}
}

// The reaper of a worker with metrics puts a dead worker's jobs back on their
// queue, and /metrics counts them.
func TestMetricsCountTheReapersRequeues(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	keys := protocol.NewKeys("")
	dead := protocol.Process{ID: "ghost:1", Host: "ghost", PID: 1, Queues: []string{"sampleupper"},
		Functions: []string{"sampleupper"}, Slots: []string{"ghost:1-0:sampleupper"}, Concurrency: 1}
	rec, err := protocol.Marshal(dead)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, keys.Processes(), dead.ID, rec).Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b"} {
		if err := rdb.RPush(ctx, keys.Inflight("sampleupper", dead.ID), `{"class":"sampleupper","args":["`+s+`"]}`).Err(); err != nil {
			t.Fatal(err)
		}
	}
	m := metrics.New()
	reg := worker.NewRegistry()
	samples.Register(reg)
	workertest.Run(t, worker.Config{URI: srv.URI, Hostname: "r", Concurrency: 1, Observer: m,
		Heartbeat: 50 * time.Millisecond, DeadAfter: 250 * time.Millisecond}, reg)
	want := []string{`gomap_worker_reaper_requeued_jobs_total 2`, `gomap_worker_jobs_processed_total{function="sampleupper"} 2`}
	redistest.Eventually(t, 10*time.Second, "/metrics counts the requeued jobs", func() bool {
		return len(missingLines(httptestGet(t, m.Handler()), want)) == 0
	})
}

// A worker whose connections are cut reconnects, and /metrics shows it.
func TestMetricsCountReconnects(t *testing.T) {
	srv := redistest.Start(t)
	m := metrics.New()
	reg := worker.NewRegistry()
	samples.Register(reg)
	workertest.Run(t, worker.Config{URI: srv.URI, Hostname: "mr", Concurrency: 1, Heartbeat: 50 * time.Millisecond,
		DeadAfter: time.Second, Observer: m}, reg)
	admin := srv.Client()
	if err := admin.ClientKillByFilter(context.Background(), "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 10*time.Second, "the worker reconnected and /metrics counts it", func() bool {
		return !strings.Contains(httptestGet(t, m.Handler()), "\n"+metrics.Dials+" 0\n")
	})
}
