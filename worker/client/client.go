// Package client tasks gomap's workers from Go: Enqueue sends a plain Resque
// job, byte for byte what Ruby's Resque.enqueue sends, and Map runs a
// registered function over a slice as a gomap batch and returns the results
// in order.
package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/go-json-experiment/json"
	"github.com/gomap/gomap/worker/internal/protocol"
	"github.com/gomap/gomap/worker/internal/rconn"
	"github.com/redis/go-redis/v9"
)

// Options say how to reach Redis.
type Options struct {
	// URI of the Redis server: redis://, rediss:// or unix://. A server in
	// cluster mode is used as a Redis Cluster. default: redis://localhost:6379/
	URI string
	// Namespace is the key prefix; a missing trailing colon is added.
	// default: "goworker:"
	Namespace string
	// TLSCertPath is a PEM file of CA certificates to trust for rediss://.
	TLSCertPath string
	// InsecureTLS skips verification of the server's certificate.
	InsecureTLS bool
	// TLSClientCertPath and TLSClientKeyPath are PEM files of a certificate
	// and its key to present to the server (rediss://, for a server with
	// tls-auth-clients yes). Both or neither.
	TLSClientCertPath string
	TLSClientKeyPath  string
}

// Client enqueues jobs and maps functions over slices.
type Client struct {
	rdb  redis.UniversalClient
	keys protocol.Keys
	owns bool
	bg   *background
}

// Dial connects to the server of o. Every command's socket deadlines follow
// its context's deadline, so a call with a deadline returns by it even while
// Redis stalls.
func Dial(ctx context.Context, o Options) (*Client, error) {
	if o.URI == "" {
		o.URI = "redis://localhost:6379/"
	}
	rdb, err := rconn.Open(ctx, rconn.Options{URI: o.URI, TLSCertPath: o.TLSCertPath, InsecureTLS: o.InsecureTLS,
		TLSClientCert: o.TLSClientCertPath, TLSClientKey: o.TLSClientKeyPath, ContextTimeout: true})
	if err != nil {
		return nil, err
	}
	return &Client{rdb: rdb, keys: protocol.NewKeys(o.Namespace), owns: true, bg: newBackground()}, nil
}

// New returns a client on rdb (which it does not close) for namespace. Give
// rdb ContextTimeoutEnabled for Map to return by its ctx's deadline while
// Redis stalls.
func New(rdb redis.UniversalClient, namespace string) *Client {
	return &Client{rdb: rdb, keys: protocol.NewKeys(namespace), bg: newBackground()}
}

// Close stops the cancels Map left to run in the background, returning the
// errors of those that failed, and closes the connection Dial opened.
func (c *Client) Close() error {
	err := c.bg.close()
	if c.owns {
		return errors.Join(err, c.rdb.Close())
	}
	return err
}

// Enqueue pushes a plain Resque job as Ruby's Resque.enqueue does: SADD the
// queue to "queues", RPUSH {"class":…,"args":[…]} to the queue.
func (c *Client) Enqueue(ctx context.Context, queue, class string, args ...any) error {
	if err := protocol.CheckQueueName(queue); err != nil {
		return err
	}
	if class == "" {
		return errors.New("client: Enqueue needs a class")
	}
	payload, err := protocol.EncodeJob(class, args)
	if err != nil {
		return fmt.Errorf("client: arguments of %s: %w", class, err)
	}
	_, err = c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.SAdd(ctx, c.keys.Queues(), queue)
		pipe.RPush(ctx, c.keys.Queue(queue), payload)
		return nil
	})
	return err
}

// EnqueueSpread is Enqueue for a busy plain queue on a Redis Cluster: the job
// goes to a random shard of queue among those every live gomap worker on it
// serves (docs/protocol.md, "Sharded queues"), so that the queue's traffic
// is shared by the masters. On a single Redis, or with no live worker on the
// queue, it is Enqueue. Only gomap workers serve the other shards.
func (c *Client) EnqueueSpread(ctx context.Context, queue, class string, args ...any) error {
	if _, cluster := c.rdb.(*redis.ClusterClient); cluster {
		procs, err := c.Workers(ctx, queue)
		if err != nil {
			return err
		}
		if len(procs) > 0 {
			n := protocol.MaxShards
			for _, p := range procs {
				n = min(n, max(p.Shards, 1))
			}
			shards := c.keys.Shards(queue, n)
			queue = shards[rand.IntN(len(shards))]
		}
	}
	return c.Enqueue(ctx, queue, class, args...)
}

// QueueLength is the number of jobs waiting on queue.
func (c *Client) QueueLength(ctx context.Context, queue string) (int64, error) {
	return c.rdb.LLen(ctx, c.keys.Queue(queue)).Result()
}

// Workers returns the live gomap worker processes that take jobs from queue
// (every live process when queue is "").
func (c *Client) Workers(ctx context.Context, queue string) ([]protocol.Process, error) {
	recs, err := c.rdb.HGetAll(ctx, c.keys.Processes()).Result()
	if err != nil {
		return nil, err
	}
	var procs []protocol.Process
	alive := map[string]*redis.IntCmd{}
	_, err = c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, rec := range recs {
			var p protocol.Process
			if json.Unmarshal([]byte(rec), &p) != nil || (queue != "" && !slices.Contains(p.Queues, queue)) {
				continue
			}
			procs = append(procs, p)
			alive[p.ID] = pipe.Exists(ctx, c.keys.Alive(p.ID))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	live := procs[:0]
	for _, p := range procs {
		if alive[p.ID].Val() > 0 {
			live = append(live, p)
		}
	}
	return live, nil
}
