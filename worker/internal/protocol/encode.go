package protocol

import (
	stdjson "encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// MarshalOptions are the JSON options of everything gomap writes: map keys
// sorted, nothing escaped that Ruby's JSON.generate leaves alone ("/", "<",
// non-ASCII), floats as Python's repr writes them (1.0 stays 1.0, so a float
// comes back to Python as a float), and encoding/json's Number and RawMessage
// written as the JSON they hold.
func MarshalOptions() json.Options {
	return json.JoinOptions(
		json.Deterministic(true),
		json.WithMarshalers(json.JoinMarshalers(
			json.MarshalToFunc(func(enc *jsontext.Encoder, f float64) error {
				b, err := AppendFloat(enc.AvailableBuffer(), f, 64)
				if err != nil {
					return err
				}
				return enc.WriteValue(b)
			}),
			json.MarshalToFunc(func(enc *jsontext.Encoder, f float32) error {
				b, err := AppendFloat(enc.AvailableBuffer(), float64(f), 32)
				if err != nil {
					return err
				}
				return enc.WriteValue(b)
			}),
			json.MarshalToFunc(func(enc *jsontext.Encoder, n stdjson.Number) error {
				if n == "" {
					n = "0" // as encoding/json writes the zero Number
				}
				return enc.WriteValue(jsontext.Value(n))
			}),
		)),
	)
}

// Marshal encodes v with MarshalOptions.
func Marshal(v any) ([]byte, error) { return json.Marshal(v, MarshalOptions()) }

// AppendFloat appends f as Python's repr writes it: the shortest digits that
// round-trip, positional from 1e-4 up to 1e16 with at least one decimal
// ("2.0"), scientific outside ("1e+16", "1.5e-05"). NaN and ±Inf have no
// JSON form and are an error.
func AppendFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, fmt.Errorf("%v cannot be written as JSON", f)
	}
	if a := math.Abs(f); a != 0 && (a < 1e-4 || a >= 1e16) {
		return strconv.AppendFloat(dst, f, 'e', -1, bits), nil
	}
	n := len(dst)
	dst = strconv.AppendFloat(dst, f, 'f', -1, bits)
	for _, c := range dst[n:] {
		if c == '.' {
			return dst, nil
		}
	}
	return append(dst, '.', '0'), nil
}

// EncodeJob returns the Resque payload {"class":…,"args":[…]}, byte for byte
// what Ruby's Resque.enqueue writes for the same arguments.
func EncodeJob(class string, args []any) ([]byte, error) {
	if args == nil {
		args = []any{}
	}
	return Marshal(struct {
		Class string `json:"class"`
		Args  []any  `json:"args"`
	}{class, args})
}

// AppendChunk appends the payload of one chunk: a Resque job whose class is
// the function and whose "gomap" object carries the batch, the index of the
// first item and the items (a JSON array, already encoded). A limitMS > 0 is
// each item's time limit in milliseconds, written as "limit_ms" after the
// items; 0 writes no limit.
func AppendChunk(dst []byte, class, batch string, start int64, items []byte, limitMS int64) ([]byte, error) {
	var err error
	dst = append(dst, `{"class":`...)
	if dst, err = jsontext.AppendQuote(dst, class); err != nil {
		return nil, err
	}
	dst = append(dst, `,"args":[],"gomap":{"v":1,"batch":`...)
	if dst, err = jsontext.AppendQuote(dst, batch); err != nil {
		return nil, err
	}
	dst = append(dst, `,"start":`...)
	dst = strconv.AppendInt(dst, start, 10)
	dst = append(dst, `,"items":`...)
	dst = append(dst, items...)
	if limitMS > 0 {
		dst = append(dst, `,"limit_ms":`...)
		dst = strconv.AppendInt(dst, limitMS, 10)
	}
	return append(dst, "}}"...), nil
}

// Item error kinds, the "kind" of an ItemError.
const (
	KindError        = "error"            // the function returned an error
	KindPanic        = "panic"            // the function panicked; Stack has the goroutine stack
	KindArguments    = "arguments"        // the item's arguments do not fit the function
	KindUnknown      = "unknown_function" // no function of that name is registered
	KindResult       = "result"           // the result has no JSON form (NaN, a channel, …)
	KindTimeout      = "timeout"          // the call ran past its time limit and was abandoned
	KindRequeueLimit = "requeue_limit"    // the chunk went back to its queue too often (see RequeueScript)
	KindTooMany      = "chunk_too_large"  // the chunk has more items than the worker's MaxChunkItems
)

// ItemError is the outcome of an item that failed.
type ItemError struct {
	Index int64  `json:"index"` // the item's index in the batch
	Kind  string `json:"kind"`
	Error string `json:"error"`
	Stack string `json:"stack,omitempty"`
	Count int64  `json:"count,omitempty"` // when > 1: the error holds for Count items from Index on
	// Arg is the position (from 0) of the argument that did not fit, for an
	// "arguments" error about one argument; nil otherwise (the argument count,
	// any other kind).
	Arg *int `json:"arg,omitempty"`
}

// ChunkResult is a chunk's outcome as a client decodes it.
type ChunkResult struct {
	Values []jsontext.Value `json:"values"` // one per item, null for a failed item; nil (JSON null): every item failed
	Errors []ItemError      `json:"errors"`
}

// AppendChunkResult appends {"values":<values>,"errors":[…]}; values is the
// JSON array of the items' results, already encoded.
func AppendChunkResult(dst, values []byte, errs []ItemError) ([]byte, error) {
	dst = append(dst, `{"values":`...)
	dst = append(dst, values...)
	dst = append(dst, `,"errors":`...)
	if len(errs) == 0 {
		dst = append(dst, "[]"...)
	} else {
		for i := range errs { // a panic value or error text may hold any bytes
			errs[i].Error = strings.ToValidUTF8(errs[i].Error, "\uFFFD")
			errs[i].Stack = strings.ToValidUTF8(errs[i].Stack, "\uFFFD")
		}
		b, err := Marshal(errs)
		if err != nil {
			return nil, err
		}
		dst = append(dst, b...)
	}
	return append(dst, '}'), nil
}

// DecodeChunkResult decodes a chunk outcome written by AppendChunkResult.
func DecodeChunkResult(b []byte) (ChunkResult, error) {
	var r ChunkResult
	err := json.Unmarshal(b, &r)
	return r, err
}
