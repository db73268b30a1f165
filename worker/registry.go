package worker

import (
	"fmt"
	"slices"
	"sync"
)

// Registry maps class names (Resque's word; gomap calls them functions) to
// the handlers that run them. Build one with NewRegistry, fill it, and give it
// to New; it may still grow while workers run.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{handlers: map[string]Handler{}} }

// Register adds a goworker job function under class, so goworker code ports
// by changing its import:
//
//	reg.Register("MyClass", func(queue string, args ...interface{}) error { … })
//
// Like http.Handle, it panics on an empty class, a nil function or a class
// registered twice: those are programming errors.
func (r *Registry) Register(class string, fn func(queue string, args ...interface{}) error) {
	if fn == nil {
		panic(fmt.Sprintf("worker: Register(%q) with a nil function", class))
	}
	r.Handle(class, goworkerHandler(fn))
}

// Handle adds h under class, e.g.
//
//	reg.Handle("sampleadd", worker.Func2(func(a, b int) (int, error) { return a + b, nil }))
//
// It panics on an empty class, a nil handler or a class registered twice.
func (r *Registry) Handle(class string, h Handler) {
	if class == "" || h == nil {
		panic(fmt.Sprintf("worker: Handle(%q, %v): empty class or nil handler", class, h))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[class]; dup {
		panic(fmt.Sprintf("worker: class %q registered twice", class))
	}
	r.handlers[class] = h
}

// Lookup returns the handler of class.
func (r *Registry) Lookup(class string) (Handler, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.handlers[class]
	return h, ok
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
	for name, h := range r.handlers {
		if sig, ok := SignatureOf(h); ok {
			sigs[name] = sig
		}
	}
	return sigs
}
