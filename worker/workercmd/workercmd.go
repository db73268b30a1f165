// Package workercmd is the command line of a gomap worker: goworker's flags
// plus gomap's (-redis-server, -redis-dir, -redis-only, -lifeline,
// -log-level), signals, and the ready line a parent process waits for. A
// worker binary is a registry and one call:
//
//	func main() {
//		reg := worker.NewRegistry()
//		samples.Register(reg)
//		reg.Handle("shout", worker.Func2(Shout))
//		workercmd.Main(reg)
//	}
//
// cmd/gomap-worker and examples/myworker are built this way, so every worker
// binary takes the flags that Python's LocalCluster passes.
package workercmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/gomap/gomap/worker"
	"github.com/redis/go-redis/v9"
)

// Env is what Run takes from its process. Main passes the real ones; a test
// passes its own. A nil Getenv is an empty environment, a nil Stdin an input
// that is closed at once, and a nil Stdout or Stderr discards what is
// written. Stdin is read only with -lifeline, by a goroutine that ends when
// Stdin does, so an in-process caller closes it after Run.
type Env struct {
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer // the ready line
	Stderr io.Writer // usage, errors and the log
}

// Main runs the command with the functions of reg, as the process os.Args
// describes, and exits with Run's code. It is the whole of a worker's main.
func Main(reg *worker.Registry) {
	if os.Getenv("GOGC") == "" {
		// A worker's live heap is small and its garbage is chunk buffers, so a
		// rarer collection costs little memory and buys throughput: with the
		// default of 100, one process on two cores ran trivial items 10–15%
		// slower than two single-core processes; with 400, as fast
		// (benchmarks/local_cluster.py).
		debug.SetGCPercent(400)
	}
	name := filepath.Base(os.Args[0])
	code := Run(name, reg, os.Args[1:], Env{Getenv: os.Getenv, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	if code == ExitRestart {
		code = reexec(os.Stderr)
	}
	os.Exit(code)
}

// Run parses args (the flags, without the program name), runs until told to
// stop, and returns the exit code: 0 after a clean shutdown or -help, 1 when
// the worker failed, 2 for a bad command line or configuration, ExitRestart
// (3) when it stopped to restart (Main then re-executes the process). name is the program's name in
// messages. While Run runs, the first SIGINT or SIGTERM shuts down gracefully;
// a second one exits the process at once (os.Exit(1)), leaving jobs in flight
// to the reaper.
func Run(name string, reg *worker.Registry, args []string, env Env) int {
	env = env.withDefaults()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fl := worker.BindFlags(fs)
	o := bindOptions(fs)
	fs.Usage = func() { usage(fs, name, reg) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has said why
	}
	cfg, err := configure(fs, fl, o, env.Getenv)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	// go-redis' own lines (a pool that cannot dial, …) go through the same logger, not raw to stderr.
	redis.SetLogger(redisLogger{cfg.Logger})
	err = serve(cfg, reg, *o, env)
	switch {
	case errors.Is(err, worker.ErrConfig): // what the flags said is wrong, found by worker.New
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 2
	case errors.As(err, new(*startError)): // a metrics address that is taken
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 2
	case errors.As(err, new(*worker.RejectedError)): // a password, an ACL or a certificate to fix
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	case errors.Is(err, worker.ErrRestart): // abandoned calls hold CPU that only a new process frees
		cfg.Logger.Warn(name+" stopped to restart", "err", err)
		return ExitRestart
	case err != nil:
		cfg.Logger.Error(name+" failed", "err", err)
		return 1
	}
	return 0
}

func (e Env) withDefaults() Env {
	if e.Getenv == nil {
		e.Getenv = func(string) string { return "" }
	}
	if e.Stdin == nil {
		e.Stdin = strings.NewReader("")
	}
	if e.Stdout == nil {
		e.Stdout = io.Discard
	}
	if e.Stderr == nil {
		e.Stderr = io.Discard
	}
	return e
}

// options are the flags of the command itself, besides the worker's.
type options struct {
	redisServer string
	redisDir    string
	redisOnly   bool
	lifeline    bool
	logLevel    slog.Level
	metricsAddr string
}

func bindOptions(fs *flag.FlagSet) *options {
	o := &options{}
	fs.StringVar(&o.redisServer, "redis-server", "",
		"start a private redis-server from this `path` on a unix socket and work on it (gomap's embedded default)")
	fs.StringVar(&o.redisDir, "redis-dir", "", "`directory` for the private redis-server's socket and log (default: a new temporary one)")
	fs.BoolVar(&o.redisOnly, "redis-only", false,
		"with -redis-server: run only the private redis-server, no worker, for worker processes started apart (-uri from the ready line);\n"+
			"on shutdown, wait until they have unregistered (at most -shutdown-timeout + 10s) before stopping it")
	fs.BoolVar(&o.lifeline, "lifeline", false, "shut down when standard input closes, so a parent process never leaves workers behind")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "",
		"serve Prometheus metrics at http://`host:port`/metrics (items, jobs, chunks in flight, reservations, requeues);\n"+
			"listens only there, e.g. 127.0.0.1:9100 (default: empty, no metrics)")
	return o
}

// configure checks the parsed command line and returns the worker's config.
func configure(fs *flag.FlagSet, fl *worker.Flags, o *options, getenv func(string) string) (worker.Config, error) {
	if fs.NArg() > 0 {
		return worker.Config{}, fmt.Errorf("unexpected arguments %q (flags only; see -help)", fs.Args())
	}
	cfg, err := fl.Config(getenv)
	switch {
	case err != nil:
		return cfg, err
	case o.redisServer != "" && flagSet(fs, "uri"):
		return cfg, errors.New("-uri and -redis-server exclude each other: -redis-server starts its own Redis")
	case o.redisOnly && o.redisServer == "":
		return cfg, errors.New("-redis-only needs -redis-server: it runs the private Redis and nothing else")
	case o.redisOnly && o.metricsAddr != "":
		return cfg, errors.New("-metrics-addr needs a worker, and -redis-only runs none: give it to the worker processes")
	}
	return cfg, nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func usage(fs *flag.FlagSet, name string, reg *worker.Registry) {
	fmt.Fprintf(fs.Output(), `Usage: %[1]s [flags]

%[1]s takes jobs from Redis queues and runs the Go functions compiled
into it: plain Resque jobs ({"class": …, "args": […]}, as Ruby's Resque.enqueue
writes them) and chunks of gomap batches (Python's gomap(…), Go's client.Map).
Without -queues it listens on one queue per function, named after it.

Functions: %[2]s

On SIGTERM or SIGINT it stops taking jobs, lets running jobs finish for
-shutdown-timeout, puts the rest back on their queues and unregisters; a
second signal exits at once (other workers recover its jobs after -dead-after).

A call past its time limit (-item-timeout, -job-timeout, or the batch's) is
abandoned: its item fails with kind timeout, or its job as TimeoutError. When
more than -max-runaways abandoned calls still run, it shuts down the same way
and restarts in place (same pid), or exits with status 3 if it cannot.

Flags:
`, name, strings.Join(reg.Names(), ", "))
	fs.PrintDefaults()
}

// redisLogger passes go-redis' log lines to the worker's logger, as warnings.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
