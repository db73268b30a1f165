package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/redis/go-redis/v9"
)

// Queue is one queue a worker takes jobs from.
type Queue struct {
	Name   string
	Weight int // 0 for all queues: strict order; > 0 for all: weighted order
}

// Config configures a Worker. Every field has a default, filled by New; the
// command-line flags of cmd/gomap-worker map onto it one to one.
type Config struct {
	// Queues to take jobs from. Without weights they are polled strictly in
	// this order, as Ruby Resque does; with weights (goworker's
	// "high=2,low=1") each poll takes them in a random order in which a queue
	// comes first with probability proportional to its weight.
	// default: one queue per registered function, named after it, sorted.
	Queues []Queue

	// Interval is the longest a worker waits between two polls of its queues
	// while they are empty. An idle worker blocks on Redis, so a new job is
	// picked up at once; Interval only bounds one blocking wait.
	// default: 5s (goworker's -interval)
	Interval time.Duration

	// Concurrency is the number of jobs (plain jobs or chunks) run at once.
	// The items of one chunk run in parallel besides, on all CPUs.
	// default: 25
	Concurrency int

	// Connections caps the pool of connections for commands. Reserving jobs
	// uses one more connection per queue, outside this pool, because an idle
	// worker blocks on each of its queues. default: 2
	Connections int

	// URI of the Redis server: redis://[user:pass@]host:port[/db],
	// rediss://… (TLS) or unix://[user:pass@]/path.sock[?db=N]. A server in
	// cluster mode is detected and used as a Redis Cluster.
	// default: redis://localhost:6379/
	URI string

	// Redis is a client to use instead of dialling URI. The worker does not
	// close it. default: nil (dial URI)
	Redis redis.UniversalClient

	// Namespace is the prefix of every key; a missing trailing colon is added.
	// default: "goworker:"
	Namespace string

	// ExitOnComplete makes Run return once every queue is empty and no job is
	// running. default: false
	ExitOnComplete bool

	// UseNumber decodes numbers into interface{} arguments as json.Number
	// instead of float64 (exact for integers beyond 2^53). default: false
	UseNumber bool

	// TLSCertPath is a PEM file of CA certificates to trust for rediss://.
	// default: "" (the system pool)
	TLSCertPath string

	// InsecureTLS skips verification of the server's certificate.
	// default: false
	InsecureTLS bool

	// TLSClientCertPath and TLSClientKeyPath are PEM files of a certificate
	// and its key that the worker presents to the server (rediss://, for a
	// server with tls-auth-clients yes). Both or neither. default: "" (none)
	TLSClientCertPath string
	TLSClientKeyPath  string

	// RejectTimeout is how long Run retries at start while Redis rejects the
	// worker for a reason that retries do not cure (a wrong password, a
	// missing ACL permission, a TLS certificate one side does not accept);
	// then Run returns a *RejectedError. A Redis that is still loading its
	// ACLs gets this long. Errors that pass (a refused connection, a timeout)
	// are retried without end. default: 10s
	RejectTimeout time.Duration

	// Heartbeat is how often a worker proves it is alive, and how often
	// workers try to reap dead ones. default: 5s
	Heartbeat time.Duration

	// ProgressInterval is how often a chunk of a batch that is still
	// running records how many of its items are done (docs/protocol.md,
	// "Progress"), so the client's bar moves item by item; a chunk done
	// sooner records nothing. Negative: never; more than 1s counts as 1s
	// (the pace at which a running chunk looks for its batch's cancel).
	// default: 250ms
	ProgressInterval time.Duration

	// DeadAfter is how long a worker may miss heartbeats before another
	// worker declares it dead and puts its in-flight jobs back on their
	// queues. default: 30s
	DeadAfter time.Duration

	// Prefetch is how many jobs the worker reserves beyond its idle slots, so
	// that a slot that finishes a job finds the next one in memory instead of
	// waiting a round trip to Redis for it. 0: automatic, none while the round
	// trip to Redis averages under 0.5 ms (one machine, one rack), else the
	// round trip over the average job's time, rounded up, at most Concurrency.
	// Negative: never. default: 0
	Prefetch int

	// Shards is how many shards of each queue the worker serves (see
	// docs/protocol.md, "Sharded queues"): a queue q is served as q and the
	// shard queues q~k that spread a hot function over a Redis Cluster's
	// masters. 0: as many as the cluster has masters (1 on a single Redis).
	// default: 0
	Shards int

	// PruneAfter is how old a Resque worker id's heartbeat may be before the
	// reaper removes the id from Resque's registry, as Resque's
	// prune_dead_workers does (Resque's prune interval). Negative: never.
	// default: 5m
	PruneAfter time.Duration

	// ShutdownTimeout is how long running jobs may finish once Run's context
	// ends; jobs still running then are put back on their queues.
	// default: 20s
	ShutdownTimeout time.Duration

	// ItemTimeout limits each item of a chunk. A function's WithTimeout and
	// a batch's limit_ms limit items too; an item gets the smallest limit
	// that is set. The item's context carries the deadline, and an item still
	// running at the deadline is abandoned, whether it watches its context or
	// not: it fails with kind "timeout" and the chunk goes on.
	// default: 0 (no limit)
	ItemTimeout time.Duration

	// JobTimeout limits each plain Resque job, together with the function's
	// WithTimeout (the smaller one applies). A job still running at the
	// deadline is abandoned and goes to the failed list with exception
	// TimeoutError. default: 0 (no limit)
	JobTimeout time.Duration

	// MaxRunaways bounds the calls that were abandoned (past their limit, or
	// of a cancelled batch) and still run after RunawayGrace: Go cannot stop
	// a goroutine, so they keep their CPU. When more than MaxRunaways do, Run
	// shuts down as on a signal (running jobs finish or go back to their
	// queues) and returns an error that wraps ErrRestart; workercmd then
	// re-executes the process. Negative: no bound.
	// default: runtime.GOMAXPROCS(0)
	MaxRunaways int

	// RunawayGrace is how long an abandoned call may go on before it counts
	// against MaxRunaways; a call abandoned at a limit longer than this gets
	// that limit as its grace. default: 10s
	RunawayGrace time.Duration

	// MaxRequeues is how often a job may go back to its queue, by a shutdown
	// or by the reaper after its worker died, before it counts as poison: the
	// next time, a plain job goes to the failed list with exception
	// RequeueLimit, and every item of a chunk fails with kind
	// "requeue_limit". Negative: no limit. default: 3
	MaxRequeues int

	// MaxPayload is the largest payload, in bytes, the worker takes. It is
	// checked before the payload is read: a bigger job is never decoded nor
	// held in memory whole; it goes to the failed list with exception
	// PayloadTooLarge and its first 64 KiB. The worker record publishes it
	// as "max_payload", so clients refuse a bigger chunk before they send it.
	// default: protocol.DefaultMaxPayload (16 MiB)
	MaxPayload int

	// MaxChunkItems is the most items a chunk may have. A bigger chunk is
	// not run: its outcome is one error of kind "chunk_too_large" for all of
	// its items, in the compact form (values null, the error's "count"), so
	// a hostile chunk of millions of tiny items cannot make the worker build
	// an error per item. The worker record publishes it as
	// "max_chunk_items", so clients refuse a bigger chunksize first.
	// default: protocol.DefaultMaxChunkItems (1,000,000)
	MaxChunkItems int

	// Hostname is the host part of worker ids. default: os.Hostname()
	Hostname string

	// Logger receives the worker's log. default: slog.Default()
	Logger *slog.Logger

	// Observer, when set, hears what the worker does: items and jobs done,
	// chunks running, reservations, requeues (for metrics; see
	// package worker/metrics). default: nil (nothing observed, no cost)
	Observer Observer

	// OnStart, when set, is called once the worker is registered, just
	// before it takes its first job. default: nil
	OnStart func(w *Worker)
}

// Defaults of Config.
const (
	DefaultInterval         = 5 * time.Second
	DefaultConcurrency      = 25
	DefaultConnections      = 2
	DefaultURI              = "redis://localhost:6379/"
	DefaultHeartbeat        = 5 * time.Second
	DefaultProgressInterval = 250 * time.Millisecond
	DefaultDeadAfter        = 30 * time.Second
	DefaultPruneAfter       = 5 * time.Minute
	DefaultShutdownTimeout  = 20 * time.Second
	DefaultRejectTimeout    = 10 * time.Second
	DefaultRunawayGrace     = 10 * time.Second
	DefaultMaxRequeues      = 3
)

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("worker config")

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// normalize returns c with defaults filled in, or why c is invalid.
func (c Config) normalize(reg *Registry) (Config, error) {
	if len(c.Queues) == 0 {
		for _, name := range reg.Names() {
			c.Queues = append(c.Queues, Queue{Name: name})
		}
		if len(c.Queues) == 0 {
			return c, configError("no queues given and no functions registered")
		}
	}
	if err := checkQueues(c.Queues); err != nil {
		return c, err
	}
	setDefault(&c.Interval, DefaultInterval)
	setDefault(&c.Concurrency, DefaultConcurrency)
	setDefault(&c.Connections, DefaultConnections)
	setDefault(&c.URI, DefaultURI)
	setDefault(&c.Heartbeat, DefaultHeartbeat)
	setDefault(&c.ProgressInterval, DefaultProgressInterval)
	setDefault(&c.DeadAfter, DefaultDeadAfter)
	setDefault(&c.PruneAfter, DefaultPruneAfter)
	setDefault(&c.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&c.RejectTimeout, DefaultRejectTimeout)
	if c.RejectTimeout < 0 {
		return c, configError("RejectTimeout (%v) must not be negative", c.RejectTimeout)
	}
	setDefault(&c.MaxRunaways, runtime.GOMAXPROCS(0))
	setDefault(&c.RunawayGrace, DefaultRunawayGrace)
	setDefault(&c.MaxRequeues, DefaultMaxRequeues)
	setDefault(&c.MaxPayload, protocol.DefaultMaxPayload)
	setDefault(&c.MaxChunkItems, protocol.DefaultMaxChunkItems)
	if c.Shards < 0 || c.Shards > protocol.MaxShards {
		return c, configError("Shards (%d) must be from 0 (as many as the cluster's masters) to %d", c.Shards, protocol.MaxShards)
	}
	if c.MaxChunkItems < 0 {
		return c, configError("MaxChunkItems (%d) must not be negative (0 means the default, %d)", c.MaxChunkItems, protocol.DefaultMaxChunkItems)
	}
	if c.MaxPayload < 0 {
		return c, configError("MaxPayload (%d) must not be negative (0 means the default, %d bytes)", c.MaxPayload, protocol.DefaultMaxPayload)
	}
	if c.ItemTimeout < 0 || c.JobTimeout < 0 || c.RunawayGrace < 0 {
		return c, configError("ItemTimeout, JobTimeout and RunawayGrace must not be negative (0 means no limit, or the default)")
	}
	c.Namespace = protocol.NormalizeNamespace(c.Namespace)
	if c.Interval < 0 || c.Concurrency < 0 || c.Connections < 0 || c.Heartbeat < 0 || c.DeadAfter < 0 || c.ShutdownTimeout < 0 {
		return c, configError("durations and counts must not be negative")
	}
	if c.DeadAfter < 2*c.Heartbeat {
		return c, configError("DeadAfter (%v) must be at least twice Heartbeat (%v)", c.DeadAfter, c.Heartbeat)
	}
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, configError("hostname: %v", err)
		}
		c.Hostname = h
	}
	if strings.Contains(c.Hostname, ":") {
		return c, configError("hostname %q contains ':', which worker ids use as separator", c.Hostname)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func checkQueues(qs []Queue) error {
	seen := map[string]bool{}
	weighted := qs[0].Weight > 0
	for _, q := range qs {
		if err := protocol.CheckQueueName(q.Name); err != nil {
			return configError("%v", err)
		}
		if strings.Contains(q.Name, ",") {
			return configError("queue name %q contains ',', which worker ids use as separator", q.Name)
		}
		if seen[q.Name] {
			return configError("queue %q is listed twice", q.Name)
		}
		seen[q.Name] = true
		if q.Weight < 0 || (q.Weight > 0) != weighted {
			return configError("queue weights must be all positive or all unset (queue %q)", q.Name)
		}
	}
	return nil
}

// ParseQueues reads goworker's -queues syntax: a comma-separated list,
// "high,low" for strict order, "high=2,low=1" for weights (a queue without a
// weight then weighs 1). Empty entries are skipped.
func ParseQueues(spec string) ([]Queue, error) {
	weighted := strings.Contains(spec, "=")
	var qs []Queue
	for entry := range strings.SplitSeq(spec, ",") {
		name, weight, hasWeight := strings.Cut(strings.TrimSpace(entry), "=")
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		q := Queue{Name: name}
		if weighted {
			q.Weight = 1
		}
		if hasWeight {
			w, err := strconv.Atoi(strings.TrimSpace(weight))
			if err != nil || w < 1 {
				return nil, configError("queue %q: the weight must be a whole number of at least 1, not %q", name, weight)
			}
			q.Weight = w
		}
		qs = append(qs, q)
	}
	if len(qs) == 0 && spec != "" {
		return nil, configError("-queues %q names no queue", spec)
	}
	return qs, nil
}
