package worker

import (
	"context"
	"strconv"
	"testing"

	"github.com/gomap/gomap/worker/internal/protocol"
)

// W1's chunk on the worker: 10,000 sampleadd pairs as the Python client
// sends them (a = i, b = i·7919 mod 1,000,003), decoded, run and encoded,
// with no Redis. go test -run '^$' -bench W1 -benchmem . shows the cost
// of one item in each step (ns/op over 10,000 items).

const w1Items = 10_000

func w1Payload(tb testing.TB) []byte {
	items := []byte{'['}
	for i := range w1Items {
		if i > 0 {
			items = append(items, ',')
		}
		items = append(items, '[')
		items = strconv.AppendInt(items, int64(i), 10)
		items = append(items, ',')
		items = strconv.AppendInt(items, int64(i)*7919%1_000_003, 10)
		items = append(items, ']')
	}
	items = append(items, ']')
	p, err := protocol.AppendChunk(nil, "sampleadd", "0123456789abcdef0123456789abcdef", 0, items, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// w1Add is samples.Add's integer path (the samples package imports this one).
func w1Add(_ context.Context, args Args, dst []byte) ([]byte, error) {
	if args.Len() != 2 {
		return dst, arityError(2, args.Len())
	}
	x, err := strconv.ParseInt(string(args.Raw(0)), 10, 64)
	if err != nil {
		return dst, &ArgumentError{Index: 0, Err: err}
	}
	y, err := strconv.ParseInt(string(args.Raw(1)), 10, 64)
	if err != nil {
		return dst, &ArgumentError{Index: 1, Err: err}
	}
	return strconv.AppendInt(dst, x+y, 10), nil
}

func w1Worker(tb testing.TB) *Worker {
	reg := NewRegistry()
	reg.Handle("sampleadd", HandlerFunc(w1Add))
	w, err := New(Config{URI: "redis://127.0.0.1:1/", Queues: []Queue{{Name: "sampleadd"}}}, reg)
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

func BenchmarkW1DecodeChunk(b *testing.B) {
	payload := w1Payload(b)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		p, err := protocol.DecodePayloadMax(payload, 1_000_000)
		if err != nil || len(p.Chunk.Items) != w1Items {
			b.Fatal(err)
		}
	}
}

// BenchmarkW1RunChunk runs the items (runItems, on GOMAXPROCS goroutines)
// and encodes the outcome, as a worker does between reserving a chunk and
// writing its result.
func BenchmarkW1RunChunk(b *testing.B) {
	w := w1Worker(b)
	p, err := protocol.DecodePayloadMax(w1Payload(b), 1_000_000)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		out, _, _ := w.chunkOutcome(ctx, "sampleadd", p, nil)
		if len(out) < 2*w1Items {
			b.Fatalf("outcome of %d bytes", len(out))
		}
	}
}

// BenchmarkW1Calls is the floor: the handler alone, item after item on one
// goroutine, with arguments split beforehand.
func BenchmarkW1Calls(b *testing.B) {
	args := make([]Args, w1Items)
	for i := range args {
		args[i] = benchArgs(strconv.Itoa(i), strconv.Itoa(i*7919%1_000_003))
	}
	ctx := context.Background()
	dst := make([]byte, 0, 32)
	b.ReportAllocs()
	for b.Loop() {
		for _, a := range args {
			if _, err := w1Add(ctx, a, dst[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
