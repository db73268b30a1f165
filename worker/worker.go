package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/rconn"
	"github.com/redis/go-redis/v9"
)

// Worker is one worker process's runtime: it reserves jobs from its queues,
// runs them with Concurrency slots, and keeps its Resque registration and
// heartbeat. Build it with New and start it with Run.
type Worker struct {
	cfg      Config
	reg      *Registry
	keys     protocol.Keys
	log      *slog.Logger
	proc     string // process id "host:pid": in-flight keys and the gomap registry
	pid      int
	started  time.Time
	slots    []string            // Resque worker ids "host:pid-N:queues", one per slot
	bases    []string            // queue names in configured order
	queues   []string            // what it takes jobs from: the shards of each base queue, in order (Run sets them)
	baseOf   map[string]string   // shard → its base queue
	shardsOf map[string][]string // base queue → its shards
	shards   int                 // shards per base queue

	rdb      redis.UniversalClient // commands
	ownsRDB  bool
	cluster  bool                  // rdb is a Redis Cluster: a pipeline runs on several nodes at once
	blockRDB redis.UniversalClient // blocking reserves; a pool of its own

	// Used by the fetch loop only.
	rng         *rand.Rand
	blockers    map[string]*blocker // one blocking connection per queue
	waitResults chan waitResult     // what armed waits brought
	stash       []reserved          // jobs reserved, not yet handed to a slot
	held        *holdings           // jobs reserved, not yet acknowledged (see orphans.go)
	paused      map[string]bool     // queues it takes no job from (pause.go)

	pause *pauses // the pause keys the heartbeat read, for the fetch loop

	tokens   chan struct{} // one per idle slot
	jobs     chan reserved
	running  atomic.Int64
	detached sync.WaitGroup // chunks that freed their slot while their items run (runChunk)
	ran      atomic.Bool
	commits  commits // the slots' Redis writes, sent together (process.go)

	rtt     ewma // round trip to Redis (heartbeats); prefetch.go
	jobTime ewma // time a slot spends on a job

	runaways *runaways               // abandoned calls that still run
	stopRun  context.CancelCauseFunc // ends Run's context; set by Run before any job runs
}

// reserved is a job taken from a queue into this process's in-flight list.
type reserved struct {
	queue   string
	payload string
	// size > 0 marks a job bigger than MaxPayload: payload holds only its
	// first bytes, and disposed is closed once it is acknowledged.
	size     int
	disposed chan struct{}
}

// New checks cfg, fills its defaults and returns a worker for the functions
// of reg. It does not connect; Run does.
func New(cfg Config, reg *Registry) (*Worker, error) {
	if reg == nil {
		return nil, configError("nil Registry")
	}
	cfg, err := cfg.normalize(reg)
	if err != nil {
		return nil, err
	}
	if cfg.Redis == nil {
		// Catch a malformed URI now rather than in Run's retry loop.
		if _, err := rconn.Parse(redisOptions(cfg)); err != nil {
			return nil, configError("%v", err)
		}
	}
	w := &Worker{
		cfg:      cfg,
		reg:      reg,
		keys:     protocol.NewKeys(cfg.Namespace),
		log:      cfg.Logger,
		pid:      os.Getpid(),
		rng:      rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		blockers: map[string]*blocker{},
		tokens:   make(chan struct{}, cfg.Concurrency),
		jobs:     make(chan reserved),
		held:     newHoldings(),
		pause:    newPauses(),
	}
	w.proc = cfg.Hostname + ":" + strconv.Itoa(w.pid)
	w.runaways = newRunaways(cfg.MaxRunaways, cfg.RunawayGrace, w.overRunaways)
	for _, q := range cfg.Queues {
		w.bases = append(w.bases, q.Name)
	}
	w.setShards(1)
	qs := strings.Join(w.bases, ",")
	for i := range cfg.Concurrency {
		w.slots = append(w.slots, fmt.Sprintf("%s-%d:%s", w.proc, i, qs))
	}
	return w, nil
}

func redisOptions(cfg Config) rconn.Options {
	return rconn.Options{URI: cfg.URI, TLSCertPath: cfg.TLSCertPath, InsecureTLS: cfg.InsecureTLS,
		TLSClientCert: cfg.TLSClientCertPath, TLSClientKey: cfg.TLSClientKeyPath, Connections: cfg.Connections}
}

// ID is the worker's process id, "host:pid".
func (w *Worker) ID() string { return w.proc }

// Run works until ctx ends (or, with ExitOnComplete, until the queues are
// empty), then shuts down: it stops reserving, lets running jobs finish for up
// to ShutdownTimeout, puts unfinished jobs back on their queues and
// unregisters. Redis errors never end Run: it retries with backoff. The one
// exception is at start: when Redis rejects the worker (a wrong password, a
// missing ACL permission, a TLS certificate refused) for RejectTimeout, Run
// returns a *RejectedError. It returns nil after a clean shutdown. A Worker
// runs once.
//
// When more than Config.MaxRunaways abandoned calls still run (see
// Config.ItemTimeout), Run shuts down the same way by itself and returns an
// error that wraps ErrRestart: only a new process frees their CPU.
func (w *Worker) Run(ctx context.Context) error {
	if !w.ran.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice; build a new Worker with New")
	}
	parent := ctx
	ctx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	w.stopRun = stopRun
	defer w.runaways.stop()
	if err := w.connect(ctx); err != nil {
		return err
	}
	defer func() {
		if err := w.closeClients(); err != nil {
			w.log.Warn("closing redis clients", "err", err)
		}
	}()
	if err := w.retryStart(ctx, "register", w.register); err != nil {
		return err
	}
	w.log.Info("worker started", "id", w.proc, "queues", w.bases, "shards", w.shards, "concurrency", w.cfg.Concurrency,
		"functions", w.reg.Names(), "uri", rconn.Redacted(w.cfg.URI))

	// Heartbeats and reaping go on through the shutdown, until unregistering.
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	var bgWG sync.WaitGroup
	bgWG.Go(func() { w.heartbeatLoop(bg) })
	bgWG.Go(func() { w.reaperLoop(bg) })
	stopBackground := sync.OnceFunc(func() { stopBg(); bgWG.Wait() })
	defer stopBackground()

	// Jobs keep their context through the grace period.
	jobCtx, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJobs()
	for range w.cfg.Concurrency {
		w.tokens <- struct{}{}
	}
	var slotsWG sync.WaitGroup
	for i := range w.cfg.Concurrency {
		slotsWG.Go(func() { w.slotLoop(jobCtx, i) })
	}

	if w.cfg.OnStart != nil {
		w.cfg.OnStart(w)
	}
	w.fetchLoop(ctx)
	close(w.jobs)
	w.drain(ctx, &slotsWG, stopJobs)
	w.closeBlockers()

	end, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	n, err := w.requeue(end, w.proc, w.queues, "at the shutdown of "+w.proc)
	if n > 0 {
		w.log.Info("put unfinished jobs back on their queues", "jobs", n)
	}
	// No heartbeat may run after this: a late one would register the process again.
	stopBackground()
	err = errors.Join(err, w.unregister(end))
	if cause := context.Cause(ctx); errors.Is(cause, ErrRestart) && parent.Err() == nil {
		return errors.Join(cause, err)
	}
	return err
}

// overRunaways ends Run when too many abandoned calls still run.
func (w *Worker) overRunaways(n int, oldest string) {
	w.log.Error("too many abandoned calls still run: stopping so that the process restarts", "runaways", n,
		"bound", w.cfg.MaxRunaways, "grace", w.cfg.RunawayGrace, "oldest", oldest)
	w.stopRun(restartCause(n, w.cfg.MaxRunaways, oldest))
}

// drain waits for running jobs: without limit after ExitOnComplete, for
// ShutdownTimeout once ctx has ended.
func (w *Worker) drain(ctx context.Context, slots *sync.WaitGroup, stopJobs context.CancelFunc) {
	done := make(chan struct{})
	go func() { slots.Wait(); w.detached.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	if n := w.running.Load(); n > 0 {
		w.log.Info("shutting down: waiting for running jobs", "running", n, "timeout", w.cfg.ShutdownTimeout)
	}
	t := time.NewTimer(w.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		w.log.Warn("shutdown timeout: jobs still running go back to their queues", "running", w.running.Load())
		stopJobs()
	}
}

func (w *Worker) connect(ctx context.Context) error {
	if w.cfg.Redis != nil {
		w.rdb = w.cfg.Redis
	} else {
		err := w.retryStart(ctx, "connect", func(ctx context.Context) error {
			rdb, err := rconn.Open(ctx, redisOptions(w.cfg))
			w.rdb = rdb
			return err
		})
		if err != nil {
			return err
		}
		w.ownsRDB = true
	}
	_, w.cluster = w.rdb.(*redis.ClusterClient)
	n, err := w.shardCount(ctx)
	if err != nil {
		return errors.Join(err, w.closeClients())
	}
	w.setShards(n)
	blk, err := blockingClient(w.rdb, len(w.queues)+1)
	if err != nil {
		return errors.Join(err, w.closeClients())
	}
	w.blockRDB = blk
	w.measureRTT(ctx)
	if o, ok := w.cfg.Observer.(DialObserver); ok {
		observeDials(w.rdb, o)
		observeDials(w.blockRDB, o)
	}
	return nil
}

// blockingClient returns a client on the same server as rdb with a pool of n
// connections: one per queue to block on, one to unblock them. It does not
// retry: the fetch loop does, and a BLMOVE retried after a lost reply would
// reserve a second job while the first sat unseen in flight. It also lets a
// worker whose Redis has gone shut down promptly, instead of spending
// go-redis' retries, seconds each, on every wait and unblock.
func blockingClient(rdb redis.UniversalClient, n int) (redis.UniversalClient, error) {
	switch c := rdb.(type) {
	case *redis.Client:
		opt := *c.Options()
		opt.PoolSize, opt.MaxActiveConns, opt.MinIdleConns, opt.MaxIdleConns = n, n, 0, 0
		opt.MaxRetries = -1
		return redis.NewClient(&opt), nil
	case *redis.ClusterClient:
		opt := *c.Options()
		opt.PoolSize, opt.MaxActiveConns, opt.MinIdleConns, opt.MaxIdleConns = n, n, 0, 0
		return redis.NewClusterClient(&opt), nil
	}
	return nil, configError("Config.Redis must be a *redis.Client or *redis.ClusterClient, not %T", rdb)
}

func (w *Worker) closeClients() error {
	var errs []error
	if w.blockRDB != nil {
		errs = append(errs, w.blockRDB.Close())
	}
	if w.ownsRDB && w.rdb != nil {
		errs = append(errs, w.rdb.Close())
	}
	return errors.Join(errs...)
}

// retry runs op until it succeeds or ctx ends, backing off between failures.
func retry(ctx context.Context, log *slog.Logger, what string, op func(context.Context) error) error {
	var bo backoff
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (after %v)", what, ctx.Err(), err)
		}
		if _, rejected := errors.AsType[*RejectedError](err); rejected || errors.Is(err, ErrConfig) {
			return err
		}
		log.Warn("redis error, retrying", "op", what, "err", err)
		if !bo.wait(ctx) {
			return fmt.Errorf("%s: %w (after %v)", what, ctx.Err(), err)
		}
	}
}

// RejectedError is what Run returns when Redis kept rejecting the worker at
// start for RejectTimeout: a wrong password, a missing ACL permission, a
// TLS certificate one side does not accept.
type RejectedError struct {
	Op  string        // what the worker was doing: "connect" or "register"
	For time.Duration // how long it retried
	Err error         // the last error, its message free of the password
	Fix string        // what to do about it
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("redis rejected the worker on %s for %v: %v (%s)", e.Op, e.For.Round(10*time.Millisecond), e.Err, e.Fix)
}

func (e *RejectedError) Unwrap() error { return e.Err }

// retryStart is retry for the start of Run, where Redis may reject the
// worker for good (rconn.Rejection): such an error ends it with a
// *RejectedError once it has lasted RejectTimeout. A passing error in
// between starts the count again.
func (w *Worker) retryStart(ctx context.Context, what string, op func(context.Context) error) error {
	var since time.Time // when the current run of rejections began
	return retry(ctx, w.log, what, func(ctx context.Context) error {
		err := op(ctx)
		fix := rconn.Rejection(err)
		switch {
		case fix == "":
			since = time.Time{}
			return err
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= w.cfg.RejectTimeout:
			return &RejectedError{Op: what, For: time.Since(since), Err: err, Fix: fix}
		}
		return fmt.Errorf("%w (%s; retrying for up to %v in case Redis is still loading its ACLs)", err, fix, w.cfg.RejectTimeout)
	})
}

// backoff waits exponentially longer, with jitter, from 50ms up to 5s.
type backoff struct{ n int }

func (b *backoff) wait(ctx context.Context) bool {
	d := min(50*time.Millisecond<<min(b.n, 7), 5*time.Second)
	b.n++
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (b *backoff) reset() { b.n = 0 }
