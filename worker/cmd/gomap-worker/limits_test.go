package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gomap/gomap/worker/client"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/redistest"
)

// readyLines reads the process's standard output, one ready line after
// another, for a test that expects more than one.
func (p *proc) readyLines() <-chan map[string]any {
	out := make(chan map[string]any, 4)
	go func() {
		defer close(out)
		for {
			line, err := p.stdout.ReadString('\n')
			if err != nil {
				return
			}
			var ready map[string]any
			if json.Unmarshal([]byte(line), &ready) == nil && ready["event"] == "ready" {
				out <- ready
			}
		}
	}()
	return out
}

func nextReady(t *testing.T, lines <-chan map[string]any, d time.Duration, what string) map[string]any {
	t.Helper()
	select {
	case r, ok := <-lines:
		if !ok {
			t.Fatalf("%s: standard output closed", what)
		}
		return r
	case <-time.After(d):
		t.Fatalf("%s: no ready line within %v", what, d)
		return nil
	}
}

// Items that ignore their context and run past their limit are abandoned,
// but keep their CPU. Past -max-runaways of them, the worker shuts down
// cleanly (the other running job finishes) and re-executes itself: the same
// pid, the same lifeline on standard input, registered again.
func TestRunawaysRestartTheProcessInPlace(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	keys := protocol.NewKeys("")
	ctx := context.Background()
	w := start(t, append(workerArgs(srv.URI, "rs", "-queues", "countprimes,samplesleep", "-concurrency", "2",
		"-max-runaways", "1", "-runaway-grace", "300ms", "-shutdown-timeout", "10s"), "-lifeline")...)
	lines := w.readyLines()
	pid := float64(w.cmd.Process.Pid)
	if r := nextReady(t, lines, 10*time.Second, "start"); r["pid"] != pid {
		t.Fatalf("ready line %v, want pid %v", r, pid)
	}

	// Other work that runs through the restart.
	job := `{"class":"samplesleep","args":[1.5]}`
	if err := rdb.RPush(ctx, keys.Queue("samplesleep"), job).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 10*time.Second, "the job runs", func() bool { return running(t, rdb, procID("rs", w)) })

	// Two items that run for hours and ignore their context.
	c := client.New(rdb, "")
	_, err := c.Map(ctx, "countprimes", []any{int64(1e13), int64(1e13)}, &client.MapOptions{ItemTimeout: 100 * time.Millisecond, ChunkSize: 2})
	var te *client.TaskError
	if !errors.As(err, &te) || te.Kind != "timeout" || !strings.Contains(te.Message, "exceeded the 100ms limit") {
		t.Fatalf("Map of runaway items: %v, want a timeout", err)
	}

	again := nextReady(t, lines, 30*time.Second, "restart")
	if again["pid"] != pid {
		t.Errorf("after the restart the ready line says pid %v, want the same %v", again["pid"], pid)
	}
	select {
	case err := <-w.exited:
		t.Fatalf("the process exited (%v) instead of restarting in place", err)
	default:
	}
	log := w.stderrText()
	for _, want := range []string{"too many abandoned calls still run", "stopped to restart", "restarting in place"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q", want)
		}
	}
	if !registered(t, rdb, procID("rs", w)) {
		t.Error("the restarted process is not registered")
	}
	// The job finished before the restart: done once, not failed, not queued.
	if n := rdb.Get(ctx, keys.Stat("processed")).Val(); n != "2" || rdb.LLen(ctx, keys.Failed()).Val() != 0 ||
		rdb.LLen(ctx, keys.Queue("samplesleep")).Val() != 0 {
		t.Errorf("processed %s, failed %d, queued %d: want the job and the chunk done once", n,
			rdb.LLen(ctx, keys.Failed()).Val(), rdb.LLen(ctx, keys.Queue("samplesleep")).Val())
	}
	// The lifeline still works: closing standard input ends the new process.
	if err := w.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if code := w.wait(15 * time.Second); code != 0 {
		t.Errorf("exit %d after the lifeline closed", code)
	}
}
