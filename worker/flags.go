package worker

import (
	"flag"
	"time"
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
	heartbeat       time.Duration
	deadAfter       time.Duration
	shutdownTimeout time.Duration
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
	fs.DurationVar(&f.heartbeat, "heartbeat", DefaultHeartbeat, "how often the worker proves it is alive and looks for dead workers")
	fs.DurationVar(&f.deadAfter, "dead-after", DefaultDeadAfter,
		"how long a worker may miss heartbeats before its in-flight jobs go back to their queues")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout,
		"on SIGTERM/SIGINT, how long running jobs may finish before they go back to their queues (a second signal exits at once)")
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
		Queues:          qs,
		Interval:        time.Duration(f.interval * float64(time.Second)),
		Concurrency:     f.concurrency,
		Connections:     f.connections,
		URI:             f.uri,
		Namespace:       f.namespace,
		ExitOnComplete:  f.exitOnComplete,
		UseNumber:       f.useNumber,
		TLSCertPath:     f.tlsCert,
		InsecureTLS:     f.insecureTLS,
		Heartbeat:       f.heartbeat,
		DeadAfter:       f.deadAfter,
		ShutdownTimeout: f.shutdownTimeout,
		Hostname:        f.hostname,
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
