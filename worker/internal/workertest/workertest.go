// Package workertest runs in-process workers for tests: started, waited for,
// and stopped (checking that Run returned nil) when the test ends, with their
// log shown if the test fails.
package workertest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
)

// LockedBuffer is a bytes.Buffer safe to write and read from different goroutines.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Run starts a worker with cfg and reg and returns it once it is registered.
// stop (also called at cleanup) ends it and checks that Run returned nil.
func Run(t testing.TB, cfg worker.Config, reg *worker.Registry) (w *worker.Worker, stop func()) {
	t.Helper()
	logs := &LockedBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	started := make(chan struct{})
	cfg.OnStart = func(*worker.Worker) { close(started) }
	w, err := worker.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of worker %s:\n%s", w.ID(), logs.String())
		}
	})
	select {
	case <-started:
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before starting: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("worker did not start within 30s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

// SocketDir is a new temporary directory, removed when the test ends, whose
// path is short enough to hold a unix socket (t.TempDir's may not be).
func SocketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gomap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}
