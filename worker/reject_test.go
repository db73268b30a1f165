package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/tlstest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/gomap/gomap/worker/samples"
)

const testPassword = "S3cr3t-pw"

// runUntil runs a worker with cfg until it returns or d passes, and returns
// how long it ran, its log and Run's error.
func runUntil(t *testing.T, cfg worker.Config, d time.Duration) (time.Duration, string, error) {
	t.Helper()
	reg := worker.NewRegistry()
	samples.Register(reg)
	logs := &workertest.LockedBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	cfg.Hostname = "reject"
	w, err := worker.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	err = w.Run(ctx)
	return time.Since(start), logs.String(), err
}

// TestRejectionsEndRun: a wrong password, a missing permission on the
// startup commands, and a server certificate of an unknown CA end Run with a
// *RejectedError after RejectTimeout, with a message that says what to fix
// and never shows the password.
func TestRejectionsEndRun(t *testing.T) {
	certs := tlstest.NewCerts(t)
	srv := tlstest.Start(t, tlstest.Options{Password: testPassword,
		// May connect (INFO, CLIENT ID…) but not register.
		Args: []string{"--user", "noregister", "on", ">" + testPassword, "~*", "+@all", "-hset"}})
	tlsSrv := tlstest.Start(t, tlstest.Options{TLS: certs})
	for _, c := range []struct {
		name    string
		cfg     worker.Config
		op, fix string
	}{
		{"wrong password", worker.Config{URI: "redis://:wrong-" + testPassword + "@" + srv.Addr + "/"}, "connect", "password"},
		{"no permission to register", worker.Config{URI: "redis://noregister:" + testPassword + "@" + srv.Addr + "/"},
			"register", "ACL"},
		{"unknown CA", worker.Config{URI: tlsSrv.URI, TLSCertPath: certs.OtherCA}, "connect", "CA"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.RejectTimeout = 300 * time.Millisecond
			took, logs, err := runUntil(t, c.cfg, 20*time.Second)
			var rej *worker.RejectedError
			if !errors.As(err, &rej) {
				t.Fatalf("Run returned %v after %v, want a *RejectedError; log:\n%s", err, took, logs)
			}
			if rej.Op != c.op || !strings.Contains(rej.Fix, c.fix) || took < c.cfg.RejectTimeout || took > 10*time.Second {
				t.Errorf("after %v: %v; want op %s, a fix about %q, after %v", took, err, c.op, c.fix, c.cfg.RejectTimeout)
			}
			if strings.Contains(err.Error()+logs, testPassword) {
				t.Errorf("the password shows: %v\n%s", err, logs)
			}
		})
	}
}

// TestRejectionWithinRejectTimeoutIsRiddenOut: a Redis that does not know
// the worker's user yet (still loading its ACLs) and knows it a moment later
// is waited for.
func TestRejectionWithinRejectTimeoutIsRiddenOut(t *testing.T) {
	srv := tlstest.Start(t, tlstest.Options{Password: testPassword})
	admin := srv.Admin(t)
	reg := worker.NewRegistry()
	samples.Register(reg)
	logs := &workertest.LockedBuffer{}
	started := make(chan struct{})
	w, err := worker.New(worker.Config{URI: "redis://late:" + testPassword + "@" + srv.Addr + "/", Hostname: "late",
		RejectTimeout: 20 * time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		OnStart: func(*worker.Worker) { close(started) }}, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	redistest.Eventually(t, 10*time.Second, "the worker has been rejected", func() bool {
		return strings.Contains(logs.String(), "WRONGPASS")
	})
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "late", "on", ">"+testPassword, "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Run returned %v; log:\n%s", err, logs.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("the worker did not start within 15s of its user being created; log:\n%s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestRefusedConnectionsAreRetriedWithoutEnd: a Redis that is not there is
// not a rejection; Run retries past RejectTimeout until its context ends.
func TestRefusedConnectionsAreRetriedWithoutEnd(t *testing.T) {
	took, log, err := runUntil(t, worker.Config{URI: "redis://:" + testPassword + "@127.0.0.1:1/", RejectTimeout: 100 * time.Millisecond},
		1500*time.Millisecond)
	tlstest.AwaitDialProbes(t)
	if _, rejected := errors.AsType[*worker.RejectedError](err); rejected || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run returned %v after %v; want it to retry until its context ended", err, took)
	}
	if !strings.Contains(log, "connection refused") || strings.Contains(log+err.Error(), testPassword) {
		t.Errorf("log:\n%s", log)
	}
}
