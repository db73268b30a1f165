package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
)

func TestShutdownPutsUnfinishedJobsBack(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	returned := make(chan struct{})
	reg := worker.NewRegistry()
	reg.Register("stuck", func(string, ...interface{}) error {
		started <- struct{}{}
		<-release // ignores its context, as a careless function may
		close(returned)
		return nil
	})
	cfg := e.config("hostd")
	cfg.Concurrency = 1
	cfg.ShutdownTimeout = 100 * time.Millisecond
	w, stop := e.run(cfg, reg)
	e.push("stuck", `{"class":"stuck","args":[1]}`, `{"class":"stuck","args":[2]}`)
	<-started
	e.eventually("the second job waits in the queue", func() bool { return e.llen(e.keys.Queue("stuck")) == 1 })

	t0 := time.Now()
	stop()
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("shutdown took %v with a 100ms timeout", took)
	}
	got, err := e.rdb.LRange(e.ctx, e.keys.Queue("stuck"), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"class":"stuck","args":[1]}`, `{"class":"stuck","args":[2]}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("queue after shutdown %q, want the unfinished job back at the head: %q", got, want)
	}
	if n := e.llen(e.keys.Inflight("stuck", w.ID())); n != 0 {
		t.Errorf("%d jobs left in flight", n)
	}
	if e.get(e.keys.Stat("processed")) != "" || e.exists(e.keys.Failed()) != 0 {
		t.Error("an unfinished job must be neither processed nor failed")
	}
	close(release)
	<-returned
	// The job that finished after the timeout must not ack the requeued copy.
	if n := e.llen(e.keys.Queue("stuck")); n != 2 {
		t.Errorf("queue holds %d jobs after the late finish, want 2", n)
	}
}

func TestShutdownWaitsForJobsThatFinishInTime(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	reg := worker.NewRegistry()
	reg.Handle("slow", worker.Func1(func(n int) (int, error) {
		started <- struct{}{}
		<-release
		return n, nil
	}))
	cfg := e.config("hostg")
	cfg.Concurrency = 2 // one slot runs the job, the other keeps a wait armed until shutdown
	_, stop := e.run(cfg, reg)
	e.push("slow", `{"class":"slow","args":[1]}`)
	<-started
	e.eventually("the idle slot waits on the queue", func() bool { return blockedClients(t, e.rdb) == 1 })
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	// The worker stops reserving (its blocking connections are woken) and
	// waits for the running job; finish the job only then.
	e.eventually("the worker stops blocking on its queue", func() bool { return blockedClients(t, e.rdb) == 0 })
	close(release)
	<-stopped
	if e.get(e.keys.Stat("processed")) != "1" || e.llen(e.keys.Queue("slow")) != 0 {
		t.Error("a job that finishes within the shutdown timeout must complete, not be requeued")
	}
}

func TestReaperRecoversADeadWorkersJobs(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("job")
	// A worker that died: its record and in-flight jobs, but no alive key.
	dead := protocol.Process{ID: "ghost:1", Host: "ghost", PID: 1, Queues: []string{"job"},
		Slots: []string{"ghost:1-0:job"}, Version: 1}
	rec, err := protocol.Marshal(dead)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(e.ctx, e.keys.Processes(), dead.ID, rec).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.SAdd(e.ctx, e.keys.Workers(), dead.Slots[0]).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := e.rdb.RPush(e.ctx, e.keys.Inflight("job", dead.ID), fmt.Sprintf(`{"class":"job","args":[%d]}`, i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := e.config("hostr")
	cfg.Concurrency = 1
	e.run(cfg, reg)
	for i := range 3 {
		c := receive(t, calls)
		if fmt.Sprint(c.args) != fmt.Sprintf("[%d]", i) {
			t.Errorf("recovered job %d ran with %v; recovered jobs must keep their order", i, c.args)
		}
	}
	e.eventually("the dead worker is unregistered", func() bool {
		return e.exists(e.keys.Inflight("job", dead.ID)) == 0 &&
			e.rdb.HExists(e.ctx, e.keys.Processes(), dead.ID).Val() == false &&
			e.rdb.SIsMember(e.ctx, e.keys.Workers(), dead.Slots[0]).Val() == false
	})
}

func TestRestartedProcessRecoversItsPredecessorsJobs(t *testing.T) {
	// A container restarts with the same host name and pid: the new process
	// finds the old record under its own id and recovers its jobs first.
	e := newEnv(t)
	reg, calls := recorder("job")
	proc := fmt.Sprintf("same:%d", os.Getpid())
	rec, err := protocol.Marshal(protocol.Process{ID: proc, Queues: []string{"job"}, Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(e.ctx, e.keys.Processes(), proc, rec).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.RPush(e.ctx, e.keys.Inflight("job", proc), `{"class":"job","args":["left over"]}`).Err(); err != nil {
		t.Fatal(err)
	}
	cfg := e.config("same")
	cfg.DeadAfter = time.Hour // the reaper would not get to it in time
	e.run(cfg, reg)
	if c := receive(t, calls); fmt.Sprint(c.args) != "[left over]" {
		t.Errorf("ran %v", c.args)
	}
}

func TestWorkerSurvivesARedisRestart(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("job")
	cfg := e.config("hostx")
	e.run(cfg, reg)
	e.push("job", `{"class":"job","args":["before"]}`)
	receive(t, calls)

	e.srv.Kill()
	e.srv.Restart()
	e.push("job", `{"class":"job","args":["after"]}`)
	if c := receive(t, calls); fmt.Sprint(c.args) != "[after]" {
		t.Errorf("ran %v", c.args)
	}
	e.eventually("the worker registers again on the new server", func() bool {
		return e.rdb.HExists(context.Background(), e.keys.Processes(), "hostx:"+fmt.Sprint(os.Getpid())).Val()
	})
}

func TestExitOnComplete(t *testing.T) {
	e := newEnv(t)
	reg, calls := recorder("job")
	for i := range 5 {
		e.push("job", fmt.Sprintf(`{"class":"job","args":[%d]}`, i))
	}
	cfg := e.config("hoste")
	cfg.ExitOnComplete = true
	cfg.Logger = slog.New(slog.DiscardHandler)
	w, err := worker.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil || len(calls) != 5 {
		t.Errorf("Run returned after %d of 5 jobs (ctx: %v)", len(calls), ctx.Err())
	}
}
