// Package protocol holds the wire contract of docs/protocol.md that the worker
// runtime and the Go client share: key names, payload shapes, result encoding,
// Lua scripts and Ruby-compatible time formats. It has no state of its own.
package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultNamespace is the recipe's key prefix.
const DefaultNamespace = "goworker:"

// Version is the newest gomap protocol version this side reads, as a worker
// record's "version" says. Version 2 adds columnar chunks ("columns"); chunk
// payloads of items still carry "v":1, and workers still run them.
const Version = 2

// NormalizeNamespace returns ns with exactly one trailing colon, or the default
// namespace when ns is empty. goworker took the raw prefix ("resque:"), so a
// namespace given with its colon keeps its meaning; one given without gets it.
func NormalizeNamespace(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	if !strings.HasSuffix(ns, ":") {
		ns += ":"
	}
	return ns
}

// ErrBadQueueName is returned for a queue name that cannot be used.
var ErrBadQueueName = errors.New("bad queue name")

// CheckQueueName rejects names that would break key hashing in a Redis
// Cluster: a brace would move the queue key into another slot than its
// in-flight lists.
func CheckQueueName(q string) error {
	if q == "" {
		return fmt.Errorf("%w: empty", ErrBadQueueName)
	}
	if strings.ContainsAny(q, "{}") {
		return fmt.Errorf("%w %q: braces are not allowed (they change Redis Cluster hash slots)", ErrBadQueueName, q)
	}
	return nil
}

// Keys builds every key name of one namespace.
type Keys struct {
	NS string // namespace with its trailing colon
}

// NewKeys returns the keys of namespace ns (normalised).
func NewKeys(ns string) Keys { return Keys{NS: NormalizeNamespace(ns)} }

// Queues is the Resque set of known queue names.
func (k Keys) Queues() string { return k.NS + "queues" }

// Queue is the Resque list of a queue's pending payloads.
func (k Keys) Queue(q string) string { return k.NS + "queue:" + q }

// Workers is the Resque set of worker ids.
func (k Keys) Workers() string { return k.NS + "workers" }

// Worker holds what worker id is working on (absent when idle).
func (k Keys) Worker(id string) string { return k.NS + "worker:" + id }

// WorkerStarted holds when worker id started.
func (k Keys) WorkerStarted(id string) string { return k.NS + "worker:" + id + ":started" }

// Heartbeat is Resque's hash of worker id to last heartbeat.
func (k Keys) Heartbeat() string { return k.NS + "workers:heartbeat" }

// Stat is a Resque counter: "processed", "failed", or either with ":<worker id>".
func (k Keys) Stat(name string) string { return k.NS + "stat:" + name }

// Failed is the Resque list of failed-job entries.
func (k Keys) Failed() string { return k.NS + "failed" }

// Processes is gomap's hash of worker process id to its JSON record.
func (k Keys) Processes() string { return k.NS + "gomap:workers" }

// Alive exists while process proc is alive (it expires when heartbeats stop).
func (k Keys) Alive(proc string) string { return k.NS + "gomap:alive:" + proc }

// Inflight is the list of payloads process proc has reserved from queue q.
// Its hash tag is the queue key, so it lives in the queue's cluster slot and
// LMOVE between the two is a single-slot command.
func (k Keys) Inflight(q, proc string) string {
	return k.NS + "gomap:inflight:{" + k.Queue(q) + "}:" + proc
}

// Requeues is the hash of how often each payload of queue q went back to it
// (field: the payload's SHA-1 in hex). Its hash tag is the queue key.
func (k Keys) Requeues(q string) string { return k.NS + "gomap:requeues:{" + k.Queue(q) + "}" }

// Poison is the list of queue q's payloads that went back to it too often,
// until a worker moves them to the failed list. Its hash tag is the queue key.
func (k Keys) Poison(q string) string { return k.NS + "gomap:poison:{" + k.Queue(q) + "}" }

// Paused exists while queue q is paused: gomap workers take no new job from
// it (see docs/protocol.md, "Pausing a queue"). Its value is when it was
// paused (RFC 3339). Its hash tag is the queue key.
func (k Keys) Paused(q string) string { return k.NS + "gomap:paused:{" + k.Queue(q) + "}" }

// Counter is one of gomap's counters of the pool's life: "requeued" (jobs
// the reaper put back on their queues) and "pruned" (Resque worker ids it
// removed from the registry because their heartbeat stopped).
func (k Keys) Counter(name string) string { return k.NS + "gomap:stat:" + name }

// ReaperLock is held by the one worker that reaps dead workers this round.
func (k Keys) ReaperLock() string { return k.NS + "gomap:reaper" }

// BatchMeta exists while batch is alive; workers skip chunks of a batch without it.
func (k Keys) BatchMeta(batch string) string { return k.NS + "gomap:{" + batch + "}:meta" }

// BatchResults is the hash of chunk start index to chunk outcome.
func (k Keys) BatchResults(batch string) string { return k.NS + "gomap:{" + batch + "}:results" }

// BatchDone is the list a client blocks on: one chunk start index per completed chunk.
func (k Keys) BatchDone(batch string) string { return k.NS + "gomap:{" + batch + "}:done" }

// BatchTaken holds the start a client's BLMOVE took off the done list until
// the collect script right behind it reads it.
func (k Keys) BatchTaken(batch string) string { return k.NS + "gomap:{" + batch + "}:taken" }
