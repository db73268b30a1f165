package worker

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/gomap/gomap/worker/internal/protocol"
)

// Handler runs a registered function on the arguments of one call. Build one
// with Func0 … Func3 (typed, fastest), Reflect (any signature) or
// Registry.Register (goworker's shape), or implement it for full control.
type Handler interface {
	// Call runs the function on args and appends the JSON of its result to
	// dst. A returned *ArgumentError or *ResultError is reported as such;
	// any other error is the function's own.
	Call(ctx context.Context, args Args, dst []byte) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, args Args, dst []byte) ([]byte, error)

// Call calls f.
func (f HandlerFunc) Call(ctx context.Context, args Args, dst []byte) ([]byte, error) {
	return f(ctx, args, dst)
}

func encodeResult[R any](enc encodeFunc[R], dst []byte, r *R) ([]byte, error) {
	n := len(dst)
	out, err := enc(dst, r)
	if err != nil {
		return dst[:n], &ResultError{Err: err}
	}
	return out, nil
}

func decodeArg[T any](dec decodeFunc[T], args Args, i int, dst *T) error {
	if err := dec(args.vals[i], dst, args.useNumber); err != nil {
		return &ArgumentError{Index: i, Err: err}
	}
	return nil
}

// Func0 registers a function of no arguments.
func Func0[R any](fn func() (R, error)) Handler {
	enc := encoderFor[R]()
	return HandlerFunc(func(_ context.Context, args Args, dst []byte) ([]byte, error) {
		if args.Len() != 0 {
			return dst, arityError(0, args.Len())
		}
		r, err := fn()
		if err != nil {
			return dst, err
		}
		return encodeResult(enc, dst, &r)
	})
}

// Func1 registers a function of one argument, e.g. func(n int) (int, error).
func Func1[A, R any](fn func(A) (R, error)) Handler {
	da, enc := decoderFor[A](), encoderFor[R]()
	return HandlerFunc(func(_ context.Context, args Args, dst []byte) ([]byte, error) {
		if args.Len() != 1 {
			return dst, arityError(1, args.Len())
		}
		var a A
		if err := decodeArg(da, args, 0, &a); err != nil {
			return dst, err
		}
		r, err := fn(a)
		if err != nil {
			return dst, err
		}
		return encodeResult(enc, dst, &r)
	})
}

// Func2 registers a function of two arguments, e.g. func(a, b int) (int, error).
func Func2[A, B, R any](fn func(A, B) (R, error)) Handler {
	da, db, enc := decoderFor[A](), decoderFor[B](), encoderFor[R]()
	return HandlerFunc(func(_ context.Context, args Args, dst []byte) ([]byte, error) {
		if args.Len() != 2 {
			return dst, arityError(2, args.Len())
		}
		var a A
		var b B
		if err := decodeArg(da, args, 0, &a); err != nil {
			return dst, err
		}
		if err := decodeArg(db, args, 1, &b); err != nil {
			return dst, err
		}
		r, err := fn(a, b)
		if err != nil {
			return dst, err
		}
		return encodeResult(enc, dst, &r)
	})
}

// Func3 registers a function of three arguments.
func Func3[A, B, C, R any](fn func(A, B, C) (R, error)) Handler {
	da, db, dc, enc := decoderFor[A](), decoderFor[B](), decoderFor[C](), encoderFor[R]()
	return HandlerFunc(func(_ context.Context, args Args, dst []byte) ([]byte, error) {
		if args.Len() != 3 {
			return dst, arityError(3, args.Len())
		}
		var a A
		var b B
		var c C
		if err := decodeArg(da, args, 0, &a); err != nil {
			return dst, err
		}
		if err := decodeArg(db, args, 1, &b); err != nil {
			return dst, err
		}
		if err := decodeArg(dc, args, 2, &c); err != nil {
			return dst, err
		}
		r, err := fn(a, b, c)
		if err != nil {
			return dst, err
		}
		return encodeResult(enc, dst, &r)
	})
}

// Reflect registers a function of any signature: an optional leading
// context.Context, then the arguments (the last may be variadic), returning
// nothing, error, a result, or a result and an error. It costs a reflective
// call per item; Func0 … Func3 do not. It panics if fn is not such a function.
func Reflect(fn any) Handler {
	v := reflect.ValueOf(fn)
	t := v.Type()
	if t.Kind() != reflect.Func {
		panic(fmt.Sprintf("worker.Reflect: %v is not a function", t))
	}
	withCtx := t.NumIn() > 0 && t.In(0) == reflect.TypeFor[context.Context]()
	first := 0
	if withCtx {
		first = 1
	}
	hasResult, hasErr := resultShape(t)
	return HandlerFunc(func(ctx context.Context, args Args, dst []byte) ([]byte, error) {
		in, err := reflectArgs(t, first, args)
		if err != nil {
			return dst, err
		}
		if withCtx {
			in[0] = reflect.ValueOf(ctx)
		}
		out := v.Call(in)
		if hasErr {
			if e := out[len(out)-1]; !e.IsNil() {
				return dst, e.Interface().(error)
			}
		}
		if !hasResult {
			return append(dst, "null"...), nil
		}
		b, err := protocol.Marshal(out[0].Interface())
		if err != nil {
			return dst, &ResultError{Err: err}
		}
		return append(dst, b...), nil
	})
}

func resultShape(t reflect.Type) (hasResult, hasErr bool) {
	errorType := reflect.TypeFor[error]()
	switch {
	case t.NumOut() == 0:
		return false, false
	case t.NumOut() == 1 && t.Out(0) == errorType:
		return false, true
	case t.NumOut() == 1:
		return true, false
	case t.NumOut() == 2 && t.Out(1) == errorType:
		return true, true
	}
	panic(fmt.Sprintf("worker.Reflect: %v must return (), error, R or (R, error)", t))
}

// reflectArgs decodes args into the parameters of t from parameter first on.
func reflectArgs(t reflect.Type, first int, args Args) ([]reflect.Value, error) {
	fixed := t.NumIn() - first
	if t.IsVariadic() {
		fixed--
	}
	if args.Len() < fixed || (!t.IsVariadic() && args.Len() != fixed) {
		return nil, arityError(fixed, args.Len())
	}
	in := make([]reflect.Value, first+args.Len())
	for i := range args.Len() {
		pt := paramType(t, first+i)
		p := reflect.New(pt)
		if isNull(args.vals[i]) && !nullableKind(pt.Kind()) {
			return nil, &ArgumentError{Index: i, Err: fmt.Errorf("null is not a valid %v (None and NaN travel as null; use a pointer type to accept it)", pt)}
		}
		if err := args.Decode(i, p.Interface()); err != nil {
			return nil, err
		}
		in[first+i] = p.Elem()
	}
	return in, nil
}

func paramType(t reflect.Type, i int) reflect.Type {
	if t.IsVariadic() && i >= t.NumIn()-1 {
		return t.In(t.NumIn() - 1).Elem()
	}
	return t.In(i)
}

func nullableKind(k reflect.Kind) bool {
	switch k {
	case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
		return true
	}
	return false
}

// goworkerHandler runs a goworker job function: the queue name, then the
// arguments decoded as encoding/json decodes into interface{} values. It
// returns no result (null).
func goworkerHandler(fn func(string, ...interface{}) error) Handler {
	return HandlerFunc(func(ctx context.Context, args Args, dst []byte) ([]byte, error) {
		vals := make([]interface{}, args.Len())
		for i := range vals {
			if err := args.Decode(i, &vals[i]); err != nil {
				return dst, err
			}
		}
		if err := fn(JobFrom(ctx).Queue, vals...); err != nil {
			return dst, err
		}
		return append(dst, "null"...), nil
	})
}

// Job describes the job a function runs in; JobFrom reads it from the context.
type Job struct {
	Queue string // the queue the job came from
	Class string // the function's registered name
	Batch string // the gomap batch id, empty for a plain Resque job
}

type jobKey struct{}

func withJob(ctx context.Context, j Job) context.Context { return context.WithValue(ctx, jobKey{}, j) }

// JobFrom returns the job that ctx belongs to (zero outside a job).
func JobFrom(ctx context.Context) Job {
	j, _ := ctx.Value(jobKey{}).(Job)
	return j
}

func errorKind(err error) string {
	var ae *ArgumentError
	var re *ResultError
	switch {
	case errors.As(err, &ae):
		return protocol.KindArguments
	case errors.As(err, &re):
		return protocol.KindResult
	}
	return protocol.KindError
}

// CallJSON runs h on arguments given as JSON texts, as a worker would, and
// returns the JSON of the result. It is meant for testing functions.
func CallJSON(ctx context.Context, h Handler, args ...string) ([]byte, error) {
	vals := make([][]byte, len(args))
	for i, a := range args {
		vals[i] = []byte(a)
	}
	return h.Call(ctx, Args{vals: vals}, nil)
}
