package worker_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/redistest"
)

// The reply of an acknowledgement is lost (Redis ran it, the connection
// dropped): the worker must not send it again blindly. Its LREM would take
// the in-flight entry of another running job with the same payload, which
// would then be lost if the worker died, and its counters would count the
// job twice.
func TestLostAckReplyTakesNoOtherJobsEntry(t *testing.T) {
	e := newEnv(t)
	proxy := redistest.StartProxy(t, e.srv)
	second := make(chan struct{})
	release := make(chan struct{})
	var n atomic.Int32
	reg := worker.NewRegistry()
	reg.Register("same", func(string, ...interface{}) error {
		switch n.Add(1) {
		case 1:
			<-second // finish only once the other copy is in flight and running
		case 2:
			close(second)
			<-release
		}
		return nil
	})
	cfg := e.config("hostack")
	cfg.URI = proxy.URI
	cfg.Queues = []worker.Queue{{Name: "same"}}
	cfg.Concurrency = 2
	w, stop := e.run(cfg, reg)
	proxy.DropReplyTo(func(args []string) bool { return strings.EqualFold(args[0], "lrem") })
	job := `{"class":"same","args":[]}`
	e.push("same", job, job)
	inflight := e.keys.Inflight("same", w.ID())
	e.eventually("the first copy is acknowledged, its reply lost", func() bool {
		return proxy.Drops() == 1 && e.get(e.keys.Stat("processed")) == "1"
	})
	// Whatever the worker does after the lost reply (a retry comes after a
	// backoff of at most a few hundred ms), the second copy's entry must stay
	// in flight while it runs: watch it for five heartbeats.
	deadline := time.Now().Add(5 * cfg.Heartbeat)
	for time.Now().Before(deadline) {
		if got := e.llen(inflight); got != 1 {
			t.Fatalf("%d entries in flight while the second copy runs, want 1: the retried ack took its entry", got)
		}
		time.Sleep(cfg.Heartbeat / 10)
	}
	close(release)
	e.eventually("the second copy is acknowledged", func() bool { return e.llen(inflight) == 0 })
	stop()
	if got := e.get(e.keys.Stat("processed")); got != "2" {
		t.Errorf("stat:processed = %s, want 2: an acknowledgement was counted twice", got)
	}
}
