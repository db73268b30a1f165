package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/samples"
)

// BenchmarkPlainJobs drains b.N pre-loaded Ruby-format sampleadd jobs with
// one worker of 25 slots (gomap-worker's default), for profiles of the
// reserve and acknowledge paths:
//
//	go test -run '^$' -bench PlainJobs -benchtime 100000x -cpuprofile cpu.out
func BenchmarkPlainJobs(b *testing.B) {
	srv := redistest.Start(b)
	rdb := srv.Client()
	keys := protocol.NewKeys("resque:")
	ctx := context.Background()
	const group = 5000
	for lo := 0; lo < b.N; lo += group {
		var ps []any
		for i := lo; i < min(b.N, lo+group); i++ {
			ps = append(ps, fmt.Sprintf(`{"class":"sampleadd","args":[%d,%d]}`, i, i))
		}
		if err := rdb.RPush(ctx, keys.Queue("sampleadd"), ps...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	reg := worker.NewRegistry()
	samples.Register(reg)
	w, err := worker.New(worker.Config{URI: srv.URI, Namespace: "resque:", Queues: []worker.Queue{{Name: "sampleadd"}},
		Concurrency: benchConcurrency(), ExitOnComplete: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Interval: time.Second}, reg)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if err := w.Run(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if got := rdb.Get(ctx, keys.Stat("processed")).Val(); got != fmt.Sprint(b.N) {
		b.Fatalf("stat:processed = %s, want %d", got, b.N)
	}
}

// benchConcurrency is BenchmarkPlainJobs' slots: $GOMAP_BENCH_CONCURRENCY, or 25.
func benchConcurrency() int {
	if n, err := strconv.Atoi(os.Getenv("GOMAP_BENCH_CONCURRENCY")); err == nil && n > 0 {
		return n
	}
	return 25
}
