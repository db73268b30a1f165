package worker

import (
	"flag"
	"time"

	"github.com/gomap/gomap/worker/internal/protocol"
)

// Flags are goworker's command-line flags (plus a few of gomap's), bound to a
// FlagSet the caller owns and parses. The library registers nothing globally
// and reads no environment: the caller passes its getenv to Config.
//
//	fs := flag.NewFlagSet("gomap-worker", flag.ContinueOnError)
//	fl := worker.BindFlags(fs)
//	if err := fs.Parse(os.Args[1:]); err != nil { … }
//	cfg, err := fl.Config(os.Getenv)
type Flags struct {
	queues          string
	interval        float64
	concurrency     int
	connections     int
	uri             string
	namespace       string
	exitOnComplete  bool
	useNumber       bool
	tlsCert         string
	insecureTLS     bool
	tlsClientCert   string
	tlsClientKey    string
	rejectTimeout   time.Duration
	heartbeat       time.Duration
	progress        time.Duration
	deadAfter       time.Duration
	pruneAfter      time.Duration
	shards          int
	prefetch        int
	shutdownTimeout time.Duration
	itemTimeout     time.Duration
	jobTimeout      time.Duration
	maxRunaways     int
	runawayGrace    time.Duration
	maxRequeues     int
	maxPayload      int
	maxChunkItems   int
	hostname        string
}

// BindFlags defines the worker's flags on fs.
func BindFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.queues, "queues", "",
		"the `queues` to take jobs from, comma-separated: high,low polls them strictly in that order, high=2,low=1 weights them\n"+
			"(default: one queue per registered function, named after it)")
	fs.Float64Var(&f.interval, "interval", DefaultInterval.Seconds(),
		"longest wait in `seconds` between two polls of empty queues (an idle worker blocks on Redis and takes a new job at once)")
	fs.IntVar(&f.concurrency, "concurrency", DefaultConcurrency,
		"the maximum `number` of jobs (plain jobs or chunks) run at once; the items of a chunk also run in parallel")
	fs.IntVar(&f.connections, "connections", DefaultConnections,
		"the maximum `number` of connections to Redis for commands (an idle worker blocks on one more per queue)")
	fs.StringVar(&f.uri, "uri", "",
		"the `URI` of the Redis server: redis://[user:pass@]host:port[/db], rediss://… (TLS) or unix://[user:pass@]/path.sock[?db=N]\n"+
			"(default: the variable named by $REDIS_PROVIDER, else $REDIS_URL, else "+DefaultURI+")")
	fs.StringVar(&f.namespace, "namespace", "goworker:", "the Redis key `prefix`")
	fs.BoolVar(&f.exitOnComplete, "exit-on-complete", false, "exit when the queues are empty and no job is running")
	fs.BoolVar(&f.useNumber, "use-number", false,
		"decode numbers in interface{} arguments as json.Number instead of float64 (exact beyond 2^53)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "`path` to a PEM file of CA certificates to trust (rediss:// only)")
	fs.BoolVar(&f.insecureTLS, "insecure-tls", false, "skip verification of the server's TLS certificate (rediss:// only)")
	fs.StringVar(&f.tlsClientCert, "tls-client-cert", "",
		"`path` to a PEM file of the client certificate to present to the server, with -tls-client-key (rediss:// only; for tls-auth-clients)")
	fs.StringVar(&f.tlsClientKey, "tls-client-key", "", "`path` to the PEM file of the key of -tls-client-cert")
	fs.DurationVar(&f.rejectTimeout, "reject-timeout", DefaultRejectTimeout,
		"at start, how long to retry while Redis rejects the worker (wrong password, missing ACL permission, TLS certificate refused)\n"+
			"before exiting with an error; a refused connection or a timeout is retried without end")
	fs.DurationVar(&f.heartbeat, "heartbeat", DefaultHeartbeat, "how often the worker proves it is alive and looks for dead workers")
	fs.DurationVar(&f.progress, "progress-interval", DefaultProgressInterval,
		"how often a running chunk of a batch reports how many of its items are done, for the client's progress bar\n"+
			"(only chunks that run longer report; a negative value turns it off)")
	fs.DurationVar(&f.deadAfter, "dead-after", DefaultDeadAfter,
		"how long a worker may miss heartbeats before its in-flight jobs go back to their queues")
	fs.IntVar(&f.prefetch, "prefetch", 0,
		"reserve this `number` of jobs beyond the idle slots, so that a slot finds its next job in memory (0: automatic,\n"+
			"by the round trip to Redis and the jobs' time, none under 0.5 ms; -1: never)")
	fs.IntVar(&f.shards, "shards", 0,
		"serve this `number` of shards of each queue (q, q~1, …: a hot function spread over a Redis Cluster's masters);\n"+
			"0: as many as the cluster has masters, 1 on a single Redis")
	fs.DurationVar(&f.pruneAfter, "prune-after", DefaultPruneAfter,
		"how old a Resque worker's heartbeat may be before it is pruned from Resque's registry as dead, as Resque does\n"+
			"(its running job goes to the failed list as Resque::PruneDeadWorkerDirtyExit; negative: never)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout,
		"on SIGTERM/SIGINT, how long running jobs may finish before they go back to their queues (a second signal exits at once)")
	fs.DurationVar(&f.itemTimeout, "item-timeout", 0,
		"the longest one item of a batch may run (0: no limit); past it the item fails with kind timeout and is abandoned,\n"+
			"even if it ignores its context (a function's WithTimeout and a batch's limit apply too; the smallest wins)")
	fs.DurationVar(&f.jobTimeout, "job-timeout", 0,
		"the longest one plain Resque job may run (0: no limit); past it the job goes to the failed list as TimeoutError")
	fs.IntVar(&f.maxRunaways, "max-runaways", 0,
		"restart the process when more than this `number` of abandoned calls (timed out, or of cancelled batches) still run\n"+
			"after -runaway-grace, since Go cannot stop them (0: the number of CPUs; -1: never)")
	fs.DurationVar(&f.runawayGrace, "runaway-grace", DefaultRunawayGrace,
		"how long an abandoned call may go on before it counts against -max-runaways (at least its own limit)")
	fs.IntVar(&f.maxRequeues, "max-requeues", DefaultMaxRequeues,
		"how often a job may go back to its queue (at a shutdown, or after its worker died) before it goes to the failed list\n"+
			"as RequeueLimit instead (-1: no limit)")
	fs.IntVar(&f.maxPayload, "max-payload", protocol.DefaultMaxPayload,
		"the largest job payload in `bytes` the worker takes; a bigger one goes to the failed list unread, as PayloadTooLarge")
	fs.IntVar(&f.maxChunkItems, "max-chunk-items", protocol.DefaultMaxChunkItems,
		"the most items a chunk may have; a bigger chunk is not run, all its items fail as chunk_too_large")
	fs.StringVar(&f.hostname, "hostname", "", "the host part of worker ids (default: the machine's hostname)")
	return f
}

// Config returns the Config the parsed flags describe. getenv (os.Getenv)
// resolves the default URI as goworker does: the variable named by
// $REDIS_PROVIDER if that is set, else $REDIS_URL.
func (f *Flags) Config(getenv func(string) string) (Config, error) {
	qs, err := ParseQueues(f.queues)
	if err != nil {
		return Config{}, err
	}
	if f.interval < 0 {
		return Config{}, configError("-interval %v is negative", f.interval)
	}
	cfg := Config{
		Queues:            qs,
		Interval:          time.Duration(f.interval * float64(time.Second)),
		Concurrency:       f.concurrency,
		Connections:       f.connections,
		URI:               f.uri,
		Namespace:         f.namespace,
		ExitOnComplete:    f.exitOnComplete,
		UseNumber:         f.useNumber,
		TLSCertPath:       f.tlsCert,
		InsecureTLS:       f.insecureTLS,
		TLSClientCertPath: f.tlsClientCert,
		TLSClientKeyPath:  f.tlsClientKey,
		RejectTimeout:     f.rejectTimeout,
		Heartbeat:         f.heartbeat,
		ProgressInterval:  f.progress,
		DeadAfter:         f.deadAfter,
		PruneAfter:        f.pruneAfter,
		Shards:            f.shards,
		Prefetch:          f.prefetch,
		ShutdownTimeout:   f.shutdownTimeout,
		ItemTimeout:       f.itemTimeout,
		JobTimeout:        f.jobTimeout,
		MaxRunaways:       f.maxRunaways,
		RunawayGrace:      f.runawayGrace,
		MaxRequeues:       f.maxRequeues,
		MaxPayload:        f.maxPayload,
		MaxChunkItems:     f.maxChunkItems,
		Hostname:          f.hostname,
	}
	if f.maxChunkItems < 1 {
		return Config{}, configError("-max-chunk-items %d: give a number of items, at least 1", f.maxChunkItems)
	}
	if f.maxPayload < 1 {
		return Config{}, configError("-max-payload %d: give a number of bytes, at least 1", f.maxPayload)
	}
	if f.maxRequeues == 0 || f.maxRequeues < -1 {
		return Config{}, configError("-max-requeues %d: give at least 1, or -1 for no limit", f.maxRequeues)
	}
	if f.maxRunaways < -1 {
		return Config{}, configError("-max-runaways %d: give at least 1, 0 for the number of CPUs, or -1 for no bound", f.maxRunaways)
	}
	if cfg.Concurrency < 1 || cfg.Connections < 1 {
		return Config{}, configError("-concurrency and -connections must be at least 1")
	}
	if cfg.URI == "" {
		cfg.URI = EnvURI(getenv)
	}
	return cfg, nil
}

// EnvURI is the Redis URI the environment names, as goworker reads it: the
// variable named by $REDIS_PROVIDER when that is set (and nothing else), else
// $REDIS_URL, else DefaultURI.
func EnvURI(getenv func(string) string) string {
	var uri string
	if p := getenv("REDIS_PROVIDER"); p != "" {
		uri = getenv(p)
	} else {
		uri = getenv("REDIS_URL")
	}
	if uri == "" {
		return DefaultURI
	}
	return uri
}
