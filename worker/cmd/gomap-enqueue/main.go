// Command gomap-enqueue sends jobs to gomap's workers from the command line:
//
//	gomap-enqueue -queue sampleadd -class sampleadd 1 2       # one plain Resque job: sampleadd(1, 2)
//	gomap-enqueue -map -class sampleadd '[1,2]' '[3,4]'       # a batch; prints 3 and 7
//
// Each argument is read as JSON (1, "a", [1,2], {"k":1}); one that is not
// JSON is taken as a string.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/client"
	"github.com/gomap/gomap/worker/internal/rconn"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gomap-enqueue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	queue := fs.String("queue", "", "the `queue` to push to (default: the class)")
	class := fs.String("class", "", "the `class` (function) to run; required")
	batch := fs.Bool("map", false, "run the function once per argument as a gomap batch and print the results in order")
	uri := fs.String("uri", "", "the `URI` of the Redis server (default: $REDIS_PROVIDER's variable, else $REDIS_URL, else "+worker.DefaultURI+")")
	namespace := fs.String("namespace", "goworker:", "the Redis key `prefix`")
	timeout := fs.Duration("timeout", time.Minute, "with -map, how long to wait for the results")
	tlsCert := fs.String("tls-cert", "", "`path` to a PEM file of CA certificates to trust (rediss:// only)")
	insecureTLS := fs.Bool("insecure-tls", false, "skip verification of the server's TLS certificate (rediss:// only)")
	tlsClientCert := fs.String("tls-client-cert", "",
		"`path` to a PEM file of the client certificate to present to the server, with -tls-client-key (rediss:// only)")
	tlsClientKey := fs.String("tls-client-key", "", "`path` to the PEM file of the key of -tls-client-cert")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: gomap-enqueue -class NAME [-queue NAME] [-map] [args…]\n\n"+
			"Without -map, pushes one Resque job {\"class\": NAME, \"args\": [args…]} (as Ruby's Resque.enqueue does).\n"+
			"With -map, runs NAME once per argument as a gomap batch (an argument that is a JSON array\n"+
			"is one call's positional arguments) and prints each result as a JSON line, in order.\n"+
			"Arguments are JSON; one that is not JSON is a string.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *class == "" {
		fmt.Fprintln(stderr, "gomap-enqueue: -class is required (see -help)")
		return 2
	}
	if *queue == "" {
		*queue = *class
	}
	if *uri == "" {
		*uri = worker.EnvURI(getenv)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := client.Dial(ctx, client.Options{URI: *uri, Namespace: *namespace, TLSCertPath: *tlsCert, InsecureTLS: *insecureTLS,
		TLSClientCertPath: *tlsClientCert, TLSClientKeyPath: *tlsClientKey})
	if err != nil {
		fmt.Fprintf(stderr, "gomap-enqueue: %v%s\n", err, fix(err))
		return 1
	}
	vals := parseArgs(fs.Args())
	if *batch {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		err = mapAndPrint(ctx, c, *class, *queue, vals, stdout)
	} else {
		err = c.Enqueue(ctx, *queue, *class, vals...)
	}
	err = errors.Join(err, c.Close())
	if err != nil {
		fmt.Fprintf(stderr, "gomap-enqueue: %v%s\n", err, fix(err))
		return 1
	}
	return 0
}

// fix is what to do about err when Redis rejected the command for good (a
// wrong password, a missing ACL permission, a TLS certificate refused), as
// ": …", else "".
func fix(err error) string {
	if f := rconn.Rejection(err); f != "" {
		return ": " + f
	}
	return ""
}

func mapAndPrint(ctx context.Context, c *client.Client, class, queue string, items []any, stdout io.Writer) error {
	results, err := c.Map(ctx, class, items, &client.MapOptions{Queue: queue})
	if err != nil {
		return err
	}
	for _, r := range results {
		if _, err := fmt.Fprintf(stdout, "%s\n", r); err != nil {
			return err
		}
	}
	return nil
}

// parseArgs reads each argument as JSON, kept verbatim (so big integers stay
// exact), falling back to the plain string.
func parseArgs(args []string) []any {
	vals := make([]any, len(args))
	for i, a := range args {
		if v := jsontext.Value(a); v.IsValid() {
			vals[i] = v
		} else {
			vals[i] = a
		}
	}
	return vals
}
