package worker

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"sync"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomap/gomap/worker/internal/protocol"
)

// Reflect registers a function of any signature: an optional leading
// context.Context, then the arguments (the last may be variadic), returning
// nothing, error, a result, or a result and an error. It panics if fn is not
// such a function. The handler describes fn's signature (parameter and
// result types; names need Describe).
//
// Generated registrations use it for functions of any arity, so the per-call
// work is planned once, here: every parameter gets a decoder chosen by its
// kind (ints, uints, floats, strings and bools parse with strconv straight
// into the argument; other kinds decode as encoding/json does), the result an
// encoder likewise, and the arguments of a call are decoded into a pooled
// frame. What remains per call is reflect.Value.Call itself.
func Reflect(fn any) Handler {
	v := reflect.ValueOf(fn)
	t := v.Type()
	if t.Kind() != reflect.Func {
		panic(fmt.Sprintf("worker.Reflect: %v is not a function", t))
	}
	h := &reflectHandler{fn: v}
	h.hasResult, h.hasErr = resultShape(t)
	h.withCtx = t.NumIn() > 0 && t.In(0) == reflect.TypeFor[context.Context]()
	h.planParams(t)
	if h.hasResult {
		h.enc = resultEncoder(t.Out(0))
	}
	h.sig = reflectSignature(t, h.withCtx, h.hasResult, h.hasErr)
	h.frames.New = func() any { return h.newFrame() }
	return h
}

// reflectHandler calls a function through reflection with the decoders and
// the encoder Reflect chose for it.
type reflectHandler struct {
	fn        reflect.Value
	variadic  bool
	withCtx   bool
	hasResult bool
	hasErr    bool
	params    []argDecoder // the fixed parameters after the context, in order
	rest      argDecoder   // the element of the variadic parameter
	restType  reflect.Type // the variadic parameter's slice type
	frameType reflect.Type // struct{ [ctx,] fixed parameters }
	enc       valueEncoder // nil without a result
	sig       Signature
	frames    sync.Pool // of *frame
}

// argDecoder decodes one JSON argument into dst, a settable value of the
// parameter's type.
type argDecoder func(raw []byte, dst reflect.Value, useNumber bool) error

type valueEncoder func(dst []byte, v reflect.Value) ([]byte, error)

// frame holds the arguments of one call: a struct with a field per fixed
// parameter (the context first, if fn takes one), and the reflect.Values of
// those fields as Call takes them. Reusing frames leaves the decoding of
// scalars without allocations. The callee gets copies of the fields, so a
// frame can be reused once zeroed.
type frame struct {
	fields reflect.Value    // the struct, addressable
	in     []reflect.Value  // its fields, then (variadic) the rest slice
	ctx    *context.Context // its first field, when fn takes a context
}

func (h *reflectHandler) planParams(t reflect.Type) {
	h.variadic = t.IsVariadic()
	first, fixed := 0, t.NumIn()
	if h.withCtx {
		first = 1
	}
	if h.variadic {
		fixed--
		h.restType = t.In(fixed)
		h.rest = decoderOf(h.restType.Elem())
	}
	fields := make([]reflect.StructField, 0, fixed)
	for i := range fixed {
		fields = append(fields, reflect.StructField{Name: "F" + strconv.Itoa(i), Type: t.In(i)})
		if i >= first {
			h.params = append(h.params, decoderOf(t.In(i)))
		}
	}
	h.frameType = reflect.StructOf(fields)
}

func (h *reflectHandler) newFrame() *frame {
	f := &frame{fields: reflect.New(h.frameType).Elem()}
	n := h.frameType.NumField()
	f.in = make([]reflect.Value, n, n+1)
	for i := range n {
		f.in[i] = f.fields.Field(i)
	}
	if h.variadic {
		f.in = append(f.in, reflect.Value{})
	}
	if h.withCtx {
		f.ctx = f.fields.Field(0).Addr().Interface().(*context.Context)
	}
	return f
}

// Signature describes the function Reflect was given.
func (h *reflectHandler) Signature() Signature { return cloneSignature(h.sig) }

// Call decodes args into a frame, calls the function and encodes its result.
func (h *reflectHandler) Call(ctx context.Context, args Args, dst []byte) ([]byte, error) {
	n := len(h.params)
	if args.Len() < n || (!h.variadic && args.Len() != n) {
		return dst, arityError(n, args.Len())
	}
	f := h.frames.Get().(*frame)
	out, err := h.call(ctx, f, args)
	// Zeroed before it goes back, so the pool holds no argument alive. A
	// panicking call never gets here: its frame is garbage, never reused.
	f.fields.SetZero()
	if h.variadic {
		f.in[len(f.in)-1] = reflect.Value{}
	}
	h.frames.Put(f)
	if err != nil {
		return dst, err
	}
	return h.result(out, dst)
}

func (h *reflectHandler) call(ctx context.Context, f *frame, args Args) ([]reflect.Value, error) {
	first := 0
	if h.withCtx {
		first = 1
		*f.ctx = ctx
	}
	for i, p := range h.params {
		if err := p(args.vals[i], f.in[first+i], args.useNumber); err != nil {
			return nil, &ArgumentError{Index: i, Err: err}
		}
	}
	if !h.variadic {
		return h.fn.Call(f.in), nil
	}
	rest, err := h.decodeRest(args)
	if err != nil {
		return nil, err
	}
	f.in[len(f.in)-1] = rest
	return h.fn.CallSlice(f.in), nil
}

// decodeRest makes the variadic slice of a call: a new one every call, as Go
// makes one, since the callee may keep it.
func (h *reflectHandler) decodeRest(args Args) (reflect.Value, error) {
	n := len(h.params)
	k := args.Len() - n
	if k == 0 {
		return reflect.Zero(h.restType), nil
	}
	rest := reflect.MakeSlice(h.restType, k, k)
	for j := range k {
		if err := h.rest(args.vals[n+j], rest.Index(j), args.useNumber); err != nil {
			return reflect.Value{}, &ArgumentError{Index: n + j, Err: err}
		}
	}
	return rest, nil
}

// result appends the JSON of what the function returned, or returns its error.
func (h *reflectHandler) result(out []reflect.Value, dst []byte) ([]byte, error) {
	if h.hasErr {
		if e := out[len(out)-1]; !e.IsNil() {
			return dst, e.Interface().(error)
		}
	}
	if !h.hasResult {
		return append(dst, "null"...), nil
	}
	n := len(dst)
	b, err := h.enc(dst, out[0])
	if err != nil {
		return dst[:n], &ResultError{Err: err}
	}
	return b, nil
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

func reflectSignature(t reflect.Type, withCtx, hasResult, hasErr bool) Signature {
	sig := Signature{Variadic: t.IsVariadic(), Error: hasErr, Params: []Param{}}
	for i := range t.NumIn() {
		if i == 0 && withCtx {
			continue
		}
		pt := t.In(i)
		if sig.Variadic && i == t.NumIn()-1 {
			pt = pt.Elem() // as the source writes it: xs ...int
		}
		sig.Params = append(sig.Params, Param{Type: typeName(pt)})
	}
	if hasResult {
		sig.Result = typeName(t.Out(0))
	}
	return sig
}

// plainType says whether values of t encode and decode as their kind does:
// t has no methods, so neither json.Marshaler nor encoding.TextMarshaler (nor
// their Unmarshal sides, on *t) can change its JSON form.
func plainType(t reflect.Type) bool {
	return t.NumMethod() == 0 && reflect.PointerTo(t).NumMethod() == 0
}

// decoderOf chooses the decoder of parameters of type t.
func decoderOf(t reflect.Type) argDecoder {
	if !plainType(t) {
		return jsonArg(t)
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := t.Bits()
		return func(raw []byte, dst reflect.Value, _ bool) error {
			v, err := parseInt(raw, bits, t)
			if err != nil {
				return err
			}
			dst.SetInt(v)
			return nil
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		bits := t.Bits()
		return func(raw []byte, dst reflect.Value, _ bool) error {
			v, err := parseUint(raw, bits, t)
			if err != nil {
				return err
			}
			dst.SetUint(v)
			return nil
		}
	case reflect.Float32, reflect.Float64:
		bits := t.Bits()
		return func(raw []byte, dst reflect.Value, _ bool) error {
			v, err := parseFloat(raw, bits, t)
			if err != nil {
				return err
			}
			dst.SetFloat(v)
			return nil
		}
	case reflect.String:
		return func(raw []byte, dst reflect.Value, _ bool) error {
			v, err := parseString(raw, t)
			if err != nil {
				return err
			}
			dst.SetString(v)
			return nil
		}
	case reflect.Bool:
		return func(raw []byte, dst reflect.Value, _ bool) error {
			v, err := parseBool(raw, t)
			if err != nil {
				return err
			}
			dst.SetBool(v)
			return nil
		}
	}
	return jsonArg(t)
}

// jsonArg decodes as encoding/json does, refusing null where it would
// silently leave a zero value.
func jsonArg(t reflect.Type) argDecoder {
	nullable := nullableKind(t.Kind())
	return func(raw []byte, dst reflect.Value, useNumber bool) error {
		if !nullable && isNull(raw) {
			return nullError(t)
		}
		return decodeJSON(raw, dst.Addr().Interface(), useNumber)
	}
}

// resultEncoder chooses the encoder of results of type t.
func resultEncoder(t reflect.Type) valueEncoder {
	if !plainType(t) {
		return marshalValue()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(dst []byte, v reflect.Value) ([]byte, error) { return strconv.AppendInt(dst, v.Int(), 10), nil }
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return func(dst []byte, v reflect.Value) ([]byte, error) { return strconv.AppendUint(dst, v.Uint(), 10), nil }
	case reflect.Float32, reflect.Float64:
		bits := t.Bits()
		return func(dst []byte, v reflect.Value) ([]byte, error) { return protocol.AppendFloat(dst, v.Float(), bits) }
	case reflect.String:
		return func(dst []byte, v reflect.Value) ([]byte, error) { return jsontext.AppendQuote(dst, v.String()) }
	case reflect.Bool:
		return func(dst []byte, v reflect.Value) ([]byte, error) { return strconv.AppendBool(dst, v.Bool()), nil }
	}
	return marshalValue()
}

// marshalValue encodes as protocol.Marshal does, with its options built once
// rather than per call.
func marshalValue() valueEncoder {
	opts := protocol.MarshalOptions()
	return func(dst []byte, v reflect.Value) ([]byte, error) {
		b, err := json.Marshal(v.Interface(), opts)
		if err != nil {
			return dst, err
		}
		return append(dst, b...), nil
	}
}
