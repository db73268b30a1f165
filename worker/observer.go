package worker

import "time"

// Observer hears what a worker does, for metrics (package
// github.com/gomap/gomap/worker/metrics implements it for Prometheus). The
// worker calls it from many goroutines at once, on its hot paths: a method
// must be safe for concurrent use and return at once. A nil Config.Observer
// costs one nil check per call site.
type Observer interface {
	// ItemDone: one item of a chunk of function has its outcome, after d;
	// kind is "" when it succeeded, else the item error's kind ("error",
	// "panic", "timeout", …).
	ItemDone(function string, d time.Duration, kind string)
	// JobDone: one job (a plain job or a chunk) of function is done, after
	// d; exception is "" when it succeeded, else the exception of its
	// failed entry. A chunk whose items failed is done, not failed.
	JobDone(function string, d time.Duration, exception string)
	// ChunkStarted and ChunkDone bracket a chunk of function that runs.
	ChunkStarted(function string)
	ChunkDone(function string)
	// Reserved: n jobs were taken off their queues.
	Reserved(n int)
	// Requeued: the reaper put n jobs of a dead worker back on their queues.
	Requeued(n int)
}
