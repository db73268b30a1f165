package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
)

// procStatus reads a field of /proc/<pid>/status in bytes (VmRSS, VmHWM).
func procStatus(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc/<pid>/status here (%v): the memory test needs Linux", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("%s: %q: %v", field, line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// The hostile case of issue 8: eight 50 MB payloads that are not JSON,
// pushed to a queue of a worker with the default concurrency (25) and max
// payload (16 MiB). Before the max payload, the worker peaked above 1.2 GB
// and kept it. Now a wait reads at most one such job at a time and keeps 64
// KiB of it, and polls read 64 KiB of each: the peak stays near the baseline
// plus one job, and the memory goes back to the OS.
func TestHostilePayloadsKeepTheWorkerSmall(t *testing.T) {
	const (
		jobs     = 8
		jobSize  = 50_000_000
		maxPeak  = 200 << 20 // bytes of VmHWM
		maxAfter = 40 << 20  // bytes of VmRSS above the baseline, once done
	)
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	keys := protocol.NewKeys("")
	w := start(t, "-uri", srv.URI, "-hostname", "mem", "-queues", "sampleadd")
	pid := w.cmd.Process.Pid
	redistest.Eventually(t, 10*time.Second, "the worker registers", func() bool { return registered(t, rdb, procID("mem", w)) })
	baseline := procStatus(t, pid, "VmRSS")

	junk := bytes.Repeat([]byte("x"), jobSize)
	for range jobs {
		if err := rdb.RPush(ctx, keys.Queue("sampleadd"), junk).Err(); err != nil {
			t.Fatal(err)
		}
	}
	redistest.Eventually(t, 30*time.Second, "every job is in the failed list", func() bool {
		return rdb.LLen(ctx, keys.Failed()).Val() == jobs
	})
	peak := procStatus(t, pid, "VmHWM")
	t.Logf("worker RSS: %d MB at rest, peak %d MB while it failed %d jobs of %d MB", baseline>>20, peak>>20, jobs, jobSize/1_000_000)
	if peak > maxPeak {
		t.Errorf("the worker's RSS peaked at %d MB, want at most %d MB", peak>>20, maxPeak>>20)
	}
	redistest.Eventually(t, 5*time.Second, fmt.Sprintf("the worker's RSS back within %d MB of its %d MB at rest", maxAfter>>20, baseline>>20),
		func() bool { return procStatus(t, pid, "VmRSS") <= baseline+maxAfter })

	entries, err := rdb.LRange(ctx, keys.Failed(), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var f struct {
			Payload   string `json:"payload"`
			Exception string `json:"exception"`
			Error     string `json:"error"`
		}
		if err := json.Unmarshal([]byte(e), &f); err != nil {
			t.Fatalf("entry %.200q: %v", e, err)
		}
		if len(e) > protocol.FailedTextLimit+1024 || f.Exception != "PayloadTooLarge" ||
			!strings.HasSuffix(f.Payload, fmt.Sprintf("…[truncated: %d bytes in all]", jobSize)) ||
			!strings.Contains(f.Error, fmt.Sprintf("the payload is %d bytes", jobSize)) {
			t.Errorf("entry of %d bytes: %s %q, payload ending %q", len(e), f.Exception, f.Error, f.Payload[max(0, len(f.Payload)-50):])
		}
	}
	if n := rdb.LLen(ctx, keys.Inflight("sampleadd", procID("mem", w))).Val(); n != 0 {
		t.Errorf("%d jobs left in flight", n)
	}
	log := w.stderr.String()
	for line := range strings.SplitSeq(log, "\n") {
		if len(line) > 2048 {
			t.Errorf("a log line of %d bytes: %.200s…", len(line), line)
		}
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// A chunk of millions of tiny items, under the max payload: 16 MiB holds
// 5.5 million "[]". Each would fail (sampleadd takes two arguments), and the
// worker went past 3 GB building an error and an outcome per item. Now a
// chunk over -max-chunk-items (1,000,000) keeps no items: one error stands
// for all, and the peak stays near the payload's size.
func TestChunkOfMillionsOfItemsKeepsTheWorkerSmall(t *testing.T) {
	const (
		items   = 5_500_000
		maxPeak = 300 << 20 // bytes of VmHWM
	)
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	keys := protocol.NewKeys("")
	w := start(t, "-uri", srv.URI, "-hostname", "memitems", "-queues", "sampleadd")
	redistest.Eventually(t, 10*time.Second, "the worker registers", func() bool { return registered(t, rdb, procID("memitems", w)) })
	if err := rdb.HSet(ctx, keys.BatchMeta("millions"), "function", "sampleadd").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.PExpire(ctx, keys.BatchMeta("millions"), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	list := bytes.Repeat([]byte("[],"), items)
	list = append(append([]byte{'['}, list[:len(list)-1]...), ']')
	payload, err := protocol.AppendChunk(nil, "sampleadd", "millions", 0, list, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.RPush(ctx, keys.Queue("sampleadd"), payload).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 30*time.Second, "the chunk's outcome", func() bool {
		return rdb.Exists(ctx, keys.BatchDone("millions")).Val() == 1
	})
	peak := procStatus(t, w.cmd.Process.Pid, "VmHWM")
	t.Logf("payload %d MB, peak %d MB", len(payload)>>20, peak>>20)
	if peak > maxPeak {
		t.Errorf("peak RSS %d MB, want at most %d MB", peak>>20, maxPeak>>20)
	}
	var out protocol.ChunkResult
	if err := json.Unmarshal([]byte(rdb.HGet(ctx, keys.BatchResults("millions"), "0").Val()), &out); err != nil {
		t.Fatal(err)
	}
	if out.Values != nil || len(out.Errors) != 1 || out.Errors[0].Count != items || out.Errors[0].Kind != protocol.KindTooMany {
		t.Errorf("outcome %+v, want values null and one chunk_too_large error for %d items", out, items)
	}
}
