//go:build unix

package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gomap/gomap/worker/client"
	"github.com/gomap/gomap/worker/internal/redistest"
)

// Redis freezes (SIGSTOP) for 5s mid-batch, longer than go-redis' read
// timeouts: Map, without a deadline, rides it out and completes, whether or
// not go-redis retries too.
func TestMapRidesOutARedisStall(t *testing.T) {
	for _, mode := range []string{"Dial", "New without go-redis retries"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			runWorker(t, srv.URI)
			c := clientModes(t, srv.URI)[mode]
			// Three times as many chunks as the worker has slots: some run
			// through the stall, and the worker reserves more while Redis is
			// frozen, losing those replies (it finds such jobs in its
			// in-flight list and runs them: worker/orphans.go).
			items := append([]any{0.0}, repeat(1.0, 11)...)
			res := mapAsync(context.Background(), c, "samplesleep", items, &client.MapOptions{ChunkSize: 1, StallTolerance: 20 * time.Second})
			waitTaken(t, srv, "samplesleep", len(items))
			srv.Pause()
			select {
			case r := <-res:
				t.Fatalf("Map returned while Redis was frozen: %v", r.err)
			case <-time.After(5 * time.Second): // the stall
			}
			srv.Resume()
			r := await(t, res, 20*time.Second)
			if r.err != nil {
				t.Fatal(r.err)
			}
			checkSleeps(t, "after a stall", r.out, items)
			assertNoBatchKeys(t, srv)
		})
	}
}

// Redis freezes for 3s mid-batch; Map has a deadline of 1s: it returns the
// context's error by the deadline, not when Redis wakes up.
func TestMapReturnsByItsDeadlineWhileRedisStalls(t *testing.T) {
	srv := redistest.Start(t)
	runWorker(t, srv.URI)
	c := dial(t, srv.URI)
	items := repeat(1.5, 8)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res := mapAsync(ctx, c, "samplesleep", items, &client.MapOptions{ChunkSize: 1})
	waitTaken(t, srv, "samplesleep", len(items))
	r, returned := returnDuringStall(t, srv, res, 3*time.Second)
	took := returned.Sub(start)
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", r.err)
	}
	if took > 1300*time.Millisecond {
		t.Errorf("Map returned %v after it started, with a deadline of 1s", took)
	}
	t.Logf("returned after %v: %v", took.Round(time.Millisecond), r.err)
}

// Redis freezes for longer than StallTolerance and Map has no deadline: it
// gives up, saying so, about StallTolerance after the stall began.
func TestMapGivesUpAfterStallTolerance(t *testing.T) {
	srv := redistest.Start(t)
	runWorker(t, srv.URI)
	c, err := client.Dial(context.Background(), client.Options{URI: srv.URI})
	if err != nil {
		t.Fatal(err)
	}
	items := repeat(1.5, 8)
	res := mapAsync(context.Background(), c, "samplesleep", items, &client.MapOptions{ChunkSize: 1, StallTolerance: 2 * time.Second})
	waitTaken(t, srv, "samplesleep", len(items))
	paused := time.Now()
	r, returned := returnDuringStall(t, srv, res, 6*time.Second)
	took := returned.Sub(paused)
	if r.err == nil || !strings.Contains(r.err.Error(), "Redis kept failing for") || !strings.Contains(r.err.Error(), "MapOptions.StallTolerance") ||
		errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", r.err)
	}
	// The tolerance counts from the start of the round trip the stall caught,
	// up to a second (a take's block) before the stall itself.
	if took < time.Second || took > 2500*time.Millisecond {
		t.Errorf("Map gave up %v into the stall, with a StallTolerance of 2s", took)
	}
	t.Logf("gave up %v into the stall: %v", took.Round(time.Millisecond), r.err)
	// Its cancel, retried in the background for StallTolerance too, failed:
	// Close says so.
	if err := c.Close(); err == nil || !strings.Contains(err.Error(), "cancelling in the background") {
		t.Errorf("Close: %v", err)
	} else {
		t.Logf("Close: %v", err)
	}
}

// returnDuringStall freezes Redis for d and returns what Map returned during
// the stall, and when; it fails the test if Map did not return before Redis
// resumed.
func returnDuringStall(t *testing.T, srv *redistest.Server, res <-chan mapResult, d time.Duration) (mapResult, time.Time) {
	t.Helper()
	srv.Pause()
	stall := time.After(d)
	var r mapResult
	select {
	case r = <-res:
	case <-stall:
		srv.Resume()
		t.Fatal("Map did not return while Redis was frozen")
	}
	returned := time.Now()
	<-stall
	srv.Resume()
	return r, returned
}
