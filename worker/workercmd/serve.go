package workercmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/embedded"
	"github.com/gomap/gomap/worker/internal/rconn"
	"github.com/gomap/gomap/worker/metrics"
)

// serve runs the worker (or, with -redis-only, only the private Redis) until
// a signal, the lifeline or the worker itself ends it.
func serve(cfg worker.Config, reg *worker.Registry, o options, env Env) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer handleSignals(ctx, cancel, cfg.Logger)()
	if o.lifeline {
		go watchLifeline(env.Stdin, cfg.Logger, cancel)
	}
	var metricsURL string
	if o.metricsAddr != "" {
		m := metrics.New()
		srv, err := m.Serve(o.metricsAddr, cfg.Logger)
		if err != nil {
			return &startError{err}
		}
		// Deferred first, so it runs last: the metrics stay up until the worker has stopped.
		defer func() {
			if err := srv.Close(); err != nil {
				cfg.Logger.Error("stopping the metrics server", "err", err)
			}
		}()
		cfg.Observer = m
		metricsURL = "http://" + srv.Addr() + "/metrics"
	}
	if o.redisServer == "" {
		return work(ctx, cfg, reg, nil, o.lifeline, env.Stdout, metricsURL)
	}
	r, err := startRedis(ctx, o)
	if err != nil {
		return err
	}
	// Deferred, so that it runs after the worker has unregistered, or after
	// the keeper has waited for the workers to.
	defer func() {
		if err := r.Stop(); err != nil {
			cfg.Logger.Error("stopping redis-server", "err", err)
		}
	}()
	cfg.URI = r.URI
	if o.redisOnly {
		return keep(ctx, cfg, r, env.Stdout)
	}
	return work(ctx, cfg, reg, r, true, env.Stdout, metricsURL)
}

// startError is what keeps the command from starting, with a message for
// its user (an address to serve the metrics on that is taken).
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// watchLifeline ends the command once stdin closes: the parent holds the
// other end, so this happens when the parent exits, however it exits.
func watchLifeline(stdin io.Reader, log *slog.Logger, stop context.CancelFunc) {
	_, err := io.Copy(io.Discard, stdin)
	log.Info("standard input closed: shutting down", "err", err)
	stop()
}

// work runs a worker; with ready it writes the ready line once the worker
// takes jobs. r is the private Redis, if there is one; metricsURL, if not
// empty, where the metrics are served (the ready line says it).
func work(ctx context.Context, cfg worker.Config, reg *worker.Registry, r *embedded.Redis, ready bool, stdout io.Writer,
	metricsURL string) error {
	if ready {
		// The parent reads this line to learn where to connect and that jobs are taken.
		cfg.OnStart = func(w *worker.Worker) {
			line := map[string]any{"event": "ready", "id": w.ID(), "uri": rconn.Redacted(cfg.URI), "pid": os.Getpid()}
			if r != nil {
				line["redis_pid"] = r.PID()
			}
			if metricsURL != "" {
				line["metrics"] = metricsURL
			}
			if err := writeReady(stdout, line); err != nil {
				cfg.Logger.Error("writing the ready line", "err", err)
			}
		}
	}
	if r != nil && cfg.MaxRunaways >= 0 {
		// A restart would lose the private Redis and every batch in it.
		cfg.Logger.Debug("-max-runaways is off: this worker runs its own Redis, which a restart would lose")
		cfg.MaxRunaways = -1
	}
	w, err := worker.New(cfg, reg)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

func writeReady(stdout io.Writer, fields map[string]any) error {
	line, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}

func startRedis(ctx context.Context, o options) (*embedded.Redis, error) {
	dir := o.redisDir
	if dir == "" {
		d, err := os.MkdirTemp("", "gomap-redis-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	return embedded.StartRedis(ctx, o.redisServer, dir)
}

// handleSignals ends the shutdown's context on the first SIGINT or SIGTERM
// (graceful shutdown, via cancel); a signal once ctx has ended, for whatever
// reason, exits at once. Jobs then still in flight stay in Redis, where the
// reaper of another worker finds them. release stops listening.
func handleSignals(ctx context.Context, cancel context.CancelFunc, log *slog.Logger) (release func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	released := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			log.Info("shutting down; a second signal exits at once", "signal", s.String())
			cancel()
		case <-ctx.Done():
		case <-released:
			return
		}
		select {
		case s := <-sigs:
			log.Warn("exiting at once", "signal", s.String())
			os.Exit(1)
		case <-released:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(released)
	}
}
