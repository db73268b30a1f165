package workercmd

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
)

// -metrics-addr serves /metrics from the worker process while it runs, says
// where in the ready line, and stops serving when the worker stops.
func TestMetricsAddrServesMetricsWhileTheWorkerRuns(t *testing.T) {
	stdin, lifeline := io.Pipe()
	stdout, logs := &workertest.LockedBuffer{}, &workertest.LockedBuffer{}
	args := []string{"-redis-server", redistest.Binary(t), "-redis-dir", workertest.SocketDir(t), "-lifeline",
		"-shutdown-timeout", "1s", "-metrics-addr", "127.0.0.1:0"}
	code := make(chan int, 1)
	go func() {
		code <- Run("gomap-worker", sampleRegistry(), args, Env{Stdin: stdin, Stdout: stdout, Stderr: logs})
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			if err := lifeline.Close(); err != nil {
				t.Error(err)
			}
			<-code
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	redistest.Eventually(t, 10*time.Second, "the worker writes its ready line", func() bool {
		return strings.HasSuffix(stdout.String(), "\n")
	})
	var ready struct{ Metrics string }
	if err := json.Unmarshal([]byte(stdout.String()), &ready); err != nil || !strings.HasPrefix(ready.Metrics, "http://127.0.0.1:") {
		t.Fatalf("ready line %q has no metrics URL on 127.0.0.1: %v", stdout.String(), err)
	}
	resp, err := http.Get(ready.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("\ngomap_worker_reserved_jobs_total 0\n")) {
		t.Fatalf("GET %s: %s\n%s", ready.Metrics, resp.Status, body)
	}

	stopped = true
	if err := lifeline.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("the worker exited %d, want 0", c)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not stop after its lifeline closed")
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(ready.Metrics, "http://"), "/metrics")
	if conn, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("%s still accepts connections after the worker stopped", addr)
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	}
}

// A -metrics-addr that is taken stops the worker at start, with a message
// that names it.
func TestMetricsAddrTakenIsReportedAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ln.Close(); err != nil {
			t.Error(err)
		}
	}()
	srv := redistest.Start(t)
	var stderr workertest.LockedBuffer
	code := Run("gomap-worker", sampleRegistry(), []string{"-uri", srv.URI, "-metrics-addr", ln.Addr().String()},
		Env{Stdout: io.Discard, Stderr: &stderr})
	want := "gomap-worker: -metrics-addr " + ln.Addr().String() + ": cannot serve the metrics there"
	if code != 2 || !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "address already in use") {
		t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), want)
	}
}
