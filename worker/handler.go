package worker

import (
	"context"
	"errors"
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

// typed describes a function of Func0 … Func3: its parameters' types, its
// result's, and the error every such function returns.
func typed[R any](params ...reflect.Type) Signature {
	sig := Signature{Params: make([]Param, len(params)), Result: typeName(reflect.TypeFor[R]()), Error: true}
	for i, t := range params {
		sig.Params[i].Type = typeName(t)
	}
	return sig
}

// Func0 registers a function of no arguments.
func Func0[R any](fn func() (R, error)) Handler {
	enc := encoderFor[R]()
	return describe(typed[R](), func(_ context.Context, args Args, dst []byte) ([]byte, error) {
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
	sig := typed[R](reflect.TypeFor[A]())
	return describe(sig, func(_ context.Context, args Args, dst []byte) ([]byte, error) {
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
	sig := typed[R](reflect.TypeFor[A](), reflect.TypeFor[B]())
	return describe(sig, func(_ context.Context, args Args, dst []byte) ([]byte, error) {
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
	sig := typed[R](reflect.TypeFor[A](), reflect.TypeFor[B](), reflect.TypeFor[C]())
	return describe(sig, func(_ context.Context, args Args, dst []byte) ([]byte, error) {
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

// goworkerHandler runs a goworker job function: the queue name, then the
// arguments decoded as encoding/json decodes into interface{} values. It
// returns no result (null). The queue is no argument, so its signature is
// any number of arguments of any type, and an error.
func goworkerHandler(fn func(string, ...interface{}) error) Handler {
	sig := Signature{Params: []Param{{Type: typeName(reflect.TypeFor[any]())}}, Variadic: true, Error: true}
	return describe(sig, func(ctx context.Context, args Args, dst []byte) ([]byte, error) {
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
