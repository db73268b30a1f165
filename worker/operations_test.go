package worker_test

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
)

// What operators see of the pool (gomap status, the dashboard, docs/protocol.md
// "Pausing a queue" and "Liveness, the reaper, shutdown").

func TestMetaCountsDoneAndFailedItems(t *testing.T) {
	e := newEnv(t)
	reg := worker.NewRegistry()
	reg.Handle("pos", worker.Func1(func(n int) (int, error) {
		if n < 0 {
			return 0, errors.New("negative")
		}
		return n, nil
	}))
	e.run(e.config("hostm"), reg)
	e.startBatch("cnt")
	e.pushChunk("pos", "pos", "cnt", 0, "[1,-1,2]")
	e.waitChunk("cnt")
	e.pushChunk("pos", "pos", "cnt", 3, "[-4,-5]")
	e.waitChunk("cnt")
	meta := e.keys.BatchMeta("cnt")
	if got := e.rdb.HMGet(e.ctx, meta, "done", "failed").Val(); fmt.Sprint(got) != "[5 3]" {
		t.Fatalf("meta done, failed = %v, want [5 3]", got)
	}
	// The first chunk runs again (its worker was declared dead after it
	// wrote the outcome): its items are not counted twice.
	e.pushChunk("pos", "pos", "cnt", 0, "[1,-1,2]")
	e.waitChunk("cnt")
	if got := e.rdb.HMGet(e.ctx, meta, "done", "failed").Val(); fmt.Sprint(got) != "[5 3]" {
		t.Fatalf("after a rerun, meta done, failed = %v, want [5 3]", got)
	}
}

func TestReaperCountsTheJobsItRequeues(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("job")
	dead := protocol.Process{ID: "gone:1", Host: "gone", PID: 1, Queues: []string{"job"}, Slots: []string{"gone:1-0:job"}, Version: 1}
	rec, err := protocol.Marshal(dead)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(e.ctx, e.keys.Processes(), dead.ID, rec).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.RPush(e.ctx, e.keys.Inflight("job", dead.ID), `{"class":"job","args":[1]}`, `{"class":"job","args":[2]}`).Err(); err != nil {
		t.Fatal(err)
	}
	e.run(e.config("hostc"), reg)
	receive(t, calls)
	receive(t, calls)
	e.eventually("gomap:stat:requeued = 2", func() bool { return e.get(e.keys.Counter("requeued")) == "2" })
}

func TestReaperPrunesResqueWorkersWhoseHeartbeatStopped(t *testing.T) {
	e := newEnv(t)
	now, err := e.rdb.Time(e.ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Two Ruby workers: one that died 10 minutes ago in the middle of a job,
	// one alive (its heartbeat is a second old).
	deadID, liveID := "rubyhost:77:default", "rubyhost:78:default"
	job := `{"queue":"default","run_at":"2026-01-01T00:00:00Z","payload":{"class":"Archive","args":[7]}}`
	for _, w := range []struct {
		id  string
		age time.Duration
	}{{deadID, 10 * time.Minute}, {liveID, time.Second}} {
		if err := e.rdb.SAdd(e.ctx, e.keys.Workers(), w.id).Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.rdb.HSet(e.ctx, e.keys.Heartbeat(), w.id, protocol.HeartbeatTime(now.Add(-w.age))).Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.rdb.Set(e.ctx, e.keys.Worker(w.id), job, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.rdb.Set(e.ctx, e.keys.WorkerStarted(w.id), "2026-01-01 00:00:00 +0000", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	reg, _ := recorder("job")
	cfg := e.config("hostprune")
	cfg.PruneAfter = 5 * time.Minute
	e.run(cfg, reg)
	e.eventually("the dead Ruby worker is pruned", func() bool {
		return !e.rdb.SIsMember(e.ctx, e.keys.Workers(), deadID).Val()
	})
	for _, key := range []string{e.keys.Worker(deadID), e.keys.WorkerStarted(deadID)} {
		if e.exists(key) != 0 {
			t.Errorf("%s outlived the pruned worker", key)
		}
	}
	if e.rdb.HExists(e.ctx, e.keys.Heartbeat(), deadID).Val() {
		t.Error("the pruned worker's heartbeat is still there")
	}
	if !e.rdb.SIsMember(e.ctx, e.keys.Workers(), liveID).Val() || e.exists(e.keys.Worker(liveID)) != 1 {
		t.Error("the live Ruby worker was pruned too")
	}
	if got := e.get(e.keys.Counter("pruned")); got != "1" {
		t.Errorf("gomap:stat:pruned = %q, want 1", got)
	}
	entries := e.rdb.LRange(e.ctx, e.keys.Failed(), 0, -1).Val()
	if len(entries) != 1 {
		t.Fatalf("failed list %v, want the dead worker's job", entries)
	}
	var f struct {
		Exception, Error, Worker, Queue string
		Payload                         struct {
			Class string
			Args  []int
		}
	}
	if err := json.Unmarshal([]byte(entries[0]), &f, json.MatchCaseInsensitiveNames(true)); err != nil {
		t.Fatal(err)
	}
	if f.Exception != "Resque::PruneDeadWorkerDirtyExit" || f.Worker != deadID || f.Queue != "default" ||
		f.Payload.Class != "Archive" || fmt.Sprint(f.Payload.Args) != "[7]" || !strings.Contains(f.Error, "did not gracefully exit") {
		t.Errorf("failed entry %s", entries[0])
	}
}

// record is the worker record of the process with host name host in this test binary.
func (e *env) record(host string) protocol.Process {
	e.t.Helper()
	var p protocol.Process
	raw, err := e.rdb.HGet(e.ctx, e.keys.Processes(), fmt.Sprintf("%s:%d", host, os.Getpid())).Result()
	if err != nil {
		return p
	}
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func TestPausedQueueIsNotTakenFrom(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("a", "b")
	cfg := e.config("hostpause")
	cfg.Queues = []worker.Queue{{Name: "a"}, {Name: "b"}}
	e.run(cfg, reg)
	// The worker is idle: its waits on both queues are armed.
	if err := e.rdb.Set(e.ctx, e.keys.Paused("a"), "2026-01-01T00:00:00Z", 0).Err(); err != nil {
		t.Fatal(err)
	}
	e.eventually("the worker says it heard of the pause", func() bool {
		return slices.Equal(e.record("hostpause").Paused, []string{"a"})
	})
	e.push("a", `{"class":"a","args":["held"]}`)
	e.push("b", `{"class":"b","args":["runs"]}`)
	if c := receive(t, calls); c.class != "b" {
		t.Fatalf("ran %v from paused queue a", c)
	}
	if n := e.llen(e.keys.Queue("a")); n != 1 {
		t.Fatalf("paused queue a holds %d jobs, want 1", n)
	}
	select {
	case c := <-calls:
		t.Fatalf("ran %v while its queue was paused", c)
	default:
	}
	if err := e.rdb.Del(e.ctx, e.keys.Paused("a")).Err(); err != nil {
		t.Fatal(err)
	}
	if c := receive(t, calls); c.class != "a" || fmt.Sprint(c.args) != "[held]" {
		t.Fatalf("after resume, ran %v", c)
	}
	e.eventually("the record no longer lists a paused queue", func() bool { return len(e.record("hostpause").Paused) == 0 })
}

func TestWorkerStartedOnAPausedQueueWaitsForResume(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("a")
	if err := e.rdb.Set(e.ctx, e.keys.Paused("a"), "2026-01-01T00:00:00Z", 0).Err(); err != nil {
		t.Fatal(err)
	}
	e.push("a", `{"class":"a","args":[1]}`)
	cfg := e.config("hostpause2")
	cfg.Queues = []worker.Queue{{Name: "a"}}
	e.run(cfg, reg)
	e.eventually("the record lists the paused queue", func() bool {
		return slices.Equal(e.record("hostpause2").Paused, []string{"a"})
	})
	if n := e.llen(e.keys.Queue("a")); n != 1 {
		t.Fatalf("paused queue a holds %d jobs, want 1", n)
	}
	if err := e.rdb.Del(e.ctx, e.keys.Paused("a")).Err(); err != nil {
		t.Fatal(err)
	}
	receive(t, calls)
}

func TestPrefetchReservesJobsAheadOfTheSlots(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	reg := worker.NewRegistry()
	reg.Register("hold", func(string, ...any) error {
		started <- struct{}{}
		<-release
		return nil
	})
	cfg := e.config("hostpre")
	cfg.Queues = []worker.Queue{{Name: "hold"}}
	cfg.Concurrency = 1
	cfg.Prefetch = 2
	e.run(cfg, reg)
	for i := range 5 {
		e.push("hold", fmt.Sprintf(`{"class":"hold","args":[%d]}`, i))
	}
	<-started
	inflight := e.keys.Inflight("hold", fmt.Sprintf("hostpre:%d", os.Getpid()))
	e.eventually("one job runs and two more wait in memory", func() bool {
		return e.llen(inflight) == 3 && e.llen(e.keys.Queue("hold")) == 2
	})
	close(release)
	e.eventually("every job ran", func() bool { return e.llen(inflight) == 0 && e.llen(e.keys.Queue("hold")) == 0 })
}
