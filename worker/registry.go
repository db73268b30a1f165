package worker

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// Registry maps class names (Resque's word; gomap calls them functions) to
// the handlers that run them. Build one with NewRegistry, fill it, and give it
// to New; it may still grow while workers run.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]entry
}

// entry is one registered function: its handler and its options.
type entry struct {
	h       Handler
	timeout time.Duration // WithTimeout; 0 for none
	// Concurrent: the most items of the function that run at once in this
	// process, across all the chunks it holds (0: CPU-bound, a chunk's items
	// run on GOMAXPROCS goroutines), and the semaphore that counts them.
	concurrent int
	inFlight   chan struct{}
}

// Option sets how a registered function runs. Pass options to Handle or
// Register.
type Option func(*entry)

// WithTimeout limits every call of the function to d: a plain job, or one
// item of a batch's chunk.
//
//	reg.Handle("resize", worker.Func1(Resize), worker.WithTimeout(30*time.Second))
//	reg.Register("Archive", archive, worker.WithTimeout(time.Minute))
//
// The worker's own limits (Config.JobTimeout, Config.ItemTimeout) and a
// batch's limit apply too: a call gets the smallest of those that are set.
// The call's context carries the deadline. A call still running at the
// deadline is abandoned, whether it watches its context or not: an item
// fails with kind "timeout", a plain job goes to the failed list with
// exception TimeoutError. A d of 0 sets no limit; a negative d panics.
func WithTimeout(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("worker: WithTimeout(%v): the limit must not be negative", d))
	}
	return func(e *entry) { e.timeout = d }
}

// Concurrent marks the function as waiting rather than computing (an HTTP
// call, a database query, a sleep): up to n of its items run at once in a
// worker process, across all the chunks it holds, each on a goroutine of its
// own, whatever GOMAXPROCS is. Without it, a chunk's items run on GOMAXPROCS
// goroutines, right for functions that keep a core busy.
//
//	reg.Handle("fetch", worker.Func1(Fetch), worker.Concurrent(256))
//
// A chunk of such a function frees its slot once all of its items are
// running, so the worker takes another job while they wait (docs/design.md,
// "Slots, cores and items in flight"). Plain jobs of the function are not
// affected. n must be positive.
func Concurrent(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("worker: Concurrent(%d): n must be positive", n))
	}
	return func(e *entry) { e.concurrent = n }
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{handlers: map[string]entry{}} }

// Register adds a goworker job function under class, so goworker code ports
// by changing its import:
//
//	reg.Register("MyClass", func(queue string, args ...interface{}) error { … })
//
// Options such as WithTimeout set how it runs. Like http.Handle, it panics on
// an empty class, a nil function or a class registered twice: those are
// programming errors.
func (r *Registry) Register(class string, fn func(queue string, args ...interface{}) error, opts ...Option) {
	if fn == nil {
		panic(fmt.Sprintf("worker: Register(%q) with a nil function", class))
	}
	r.Handle(class, goworkerHandler(fn), opts...)
}

// Handle adds h under class, e.g.
//
//	reg.Handle("sampleadd", worker.Func2(func(a, b int) (int, error) { return a + b, nil }))
//
// Options such as WithTimeout set how it runs. It panics on an empty class, a
// nil handler or a class registered twice.
func (r *Registry) Handle(class string, h Handler, opts ...Option) {
	if class == "" || h == nil {
		panic(fmt.Sprintf("worker: Handle(%q, %v): empty class or nil handler", class, h))
	}
	e := entry{h: h}
	for _, o := range opts {
		o(&e)
	}
	if e.concurrent > 0 {
		e.inFlight = make(chan struct{}, e.concurrent)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[class]; dup {
		panic(fmt.Sprintf("worker: class %q registered twice", class))
	}
	r.handlers[class] = e
}

// Lookup returns the handler of class.
func (r *Registry) Lookup(class string) (Handler, bool) {
	e, ok := r.lookup(class)
	return e.h, ok
}

// lookup returns the handler of class with its options.
func (r *Registry) lookup(class string) (entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.handlers[class]
	return e, ok
}

// Names returns the registered classes, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.handlers))
	for n := range r.handlers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Signatures returns the signature of every registered function that
// describes one (see Described), by name. Workers advertise them in their
// record, so clients can list what a pool runs and how to call it.
func (r *Registry) Signatures() map[string]Signature {
	r.mu.RLock()
	defer r.mu.RUnlock()
	sigs := make(map[string]Signature, len(r.handlers))
	for name, e := range r.handlers {
		if sig, ok := SignatureOf(e.h); ok {
			sigs[name] = sig
		}
	}
	return sigs
}
