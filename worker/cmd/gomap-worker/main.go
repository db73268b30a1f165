// Command gomap-worker runs gomap's Go workers: it takes Resque jobs and
// chunks of gomap batches from Redis and runs the functions compiled into it,
// with goworker's command-line flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/embedded"
	"github.com/gomap/gomap/worker/samples"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// A worker's live heap is small and its garbage is chunk buffers, so a
		// rarer collection costs little memory and buys throughput: with the
		// default of 100, one process on two cores ran trivial items 10–15%
		// slower than two single-core processes; with 400, as fast
		// (benchmarks/local_cluster.py).
		debug.SetGCPercent(400)
	}
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

type options struct {
	redisServer string
	redisDir    string
	lifeline    bool
	logLevel    slog.Level
}

func run(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	reg := worker.NewRegistry()
	samples.Register(reg)

	fs := flag.NewFlagSet("gomap-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fl := worker.BindFlags(fs)
	var o options
	fs.StringVar(&o.redisServer, "redis-server", "",
		"start a private redis-server from this `path` on a unix socket and work on it (gomap's embedded default)")
	fs.StringVar(&o.redisDir, "redis-dir", "", "`directory` for the private redis-server's socket and log (default: a new temporary one)")
	fs.BoolVar(&o.lifeline, "lifeline", false, "shut down when standard input closes, so a parent process never leaves workers behind")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	fs.Usage = func() { usage(fs, reg) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gomap-worker: unexpected arguments %q (flags only; see -help)\n", fs.Args())
		return 2
	}
	cfg, err := fl.Config(getenv)
	if err == nil && o.redisServer != "" && flagSet(fs, "uri") {
		err = errors.New("-uri and -redis-server exclude each other: -redis-server starts its own Redis")
	}
	if err != nil {
		fmt.Fprintf(stderr, "gomap-worker: %v\n", err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	if err := work(cfg, reg, o, stdin, stdout); err != nil {
		cfg.Logger.Error("gomap-worker failed", "err", err)
		return 1
	}
	return 0
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func work(cfg worker.Config, reg *worker.Registry, o options, stdin io.Reader, stdout io.Writer) error {
	ctx, stop := signalContext(cfg.Logger)
	defer stop()
	if o.lifeline {
		go func() {
			_, err := io.Copy(io.Discard, stdin)
			cfg.Logger.Info("standard input closed: shutting down", "err", err)
			stop()
		}()
	}
	if o.redisServer != "" {
		r, err := startRedis(ctx, o)
		if err != nil {
			return err
		}
		defer func() {
			if err := r.Stop(); err != nil {
				cfg.Logger.Error("stopping redis-server", "err", err)
			}
		}()
		cfg.URI = r.URI
	}
	if o.lifeline || o.redisServer != "" {
		// The parent reads this line to learn where to connect and that jobs are taken.
		cfg.OnStart = func(w *worker.Worker) {
			line, err := json.Marshal(map[string]any{"event": "ready", "id": w.ID(), "uri": cfg.URI, "pid": os.Getpid()})
			if err == nil {
				_, err = fmt.Fprintf(stdout, "%s\n", line)
			}
			if err != nil {
				cfg.Logger.Error("writing the ready line", "err", err)
			}
		}
	}
	w, err := worker.New(cfg, reg)
	if err != nil {
		return err
	}
	return w.Run(ctx)
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

// signalContext ends its context on the first SIGINT or SIGTERM (graceful
// shutdown); a signal after that exits at once. Jobs then still in flight
// stay in Redis, where the reaper of another worker finds them.
func signalContext(log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sigs:
			log.Info("shutting down; a second signal exits at once", "signal", s.String())
			cancel()
		case <-ctx.Done():
		}
		s := <-sigs
		log.Warn("exiting at once", "signal", s.String())
		os.Exit(1)
	}()
	return ctx, cancel
}

func usage(fs *flag.FlagSet, reg *worker.Registry) {
	w := fs.Output()
	fmt.Fprintf(w, `Usage: gomap-worker [flags]

gomap-worker takes jobs from Redis queues and runs the Go functions compiled
into it: plain Resque jobs ({"class": …, "args": […]}, as Ruby's Resque.enqueue
writes them) and chunks of gomap batches (Python's gomap(…), Go's client.Map).
Without -queues it listens on one queue per function, named after it.

Functions: %s

On SIGTERM or SIGINT it stops taking jobs, lets running jobs finish for
-shutdown-timeout, puts the rest back on their queues and unregisters; a
second signal exits at once (other workers recover its jobs after -dead-after).

Flags:
`, strings.Join(reg.Names(), ", "))
	fs.PrintDefaults()
}
