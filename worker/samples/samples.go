// Package samples holds the functions every gomap worker build ships: a
// trivial one (sampleadd), a CPU-bound one (countprimes), ones that return
// strings and records, and ones that fail, sleep or echo, for trying errors,
// timeouts and the wire.
package samples

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gomap/gomap/worker"
)

// Register adds every sample function to reg, each described with its
// parameters' names and a line of documentation, as clients show them.
func Register(reg *worker.Registry) {
	reg.Handle("sampleadd", worker.Describe(worker.HandlerFunc(Add), worker.Signature{
		Params: []worker.Param{{Name: "a", Type: "number"}, {Name: "b", Type: "number"}}, Result: "number", Error: true,
		Doc: "a + b: integers stay integers (an int64 overflow is an error), otherwise floats.",
	}))
	reg.Handle("countprimes", worker.Describe(worker.Func1(CountPrimes), worker.Signature{
		Params: []worker.Param{{Name: "n"}}, Doc: "How many primes are at most n, by trial division: a CPU-bound benchmark.",
	}))
	reg.Handle("samplewords", worker.Describe(worker.Func1(Words), worker.Signature{
		Params: []worker.Param{{Name: "text"}}, Doc: "A record of the text's word and character counts and its upper-case form.",
	}))
	reg.Handle("sampleupper", worker.Describe(worker.Func1(Upper), worker.Signature{
		Params: []worker.Param{{Name: "s"}}, Doc: "s in upper case.",
	}))
	reg.Handle("samplediv", worker.Describe(worker.Func2(Div), worker.Signature{
		Params: []worker.Param{{Name: "a"}, {Name: "b"}}, Doc: "a / b rounded toward zero; an error when b is 0.",
	}))
	// It waits rather than computes, as an HTTP or database call does: many of its items run at once.
	reg.Handle("samplesleep", worker.Describe(worker.Reflect(Sleep), worker.Signature{
		Params: []worker.Param{{Name: "seconds"}}, Doc: "Waits, then returns seconds; stops early when the job is cancelled.",
	}), worker.Concurrent(SleepConcurrency))
	reg.Handle("samplepanic", worker.Describe(worker.Func1(Panic), worker.Signature{
		Params: []worker.Param{{Name: "message"}}, Doc: "Panics with message: the panic becomes an error with a stack.",
	}))
	reg.Handle("sampleecho", worker.Describe(worker.HandlerFunc(Echo), worker.Signature{
		Params: []worker.Param{{Name: "args", Type: "any"}}, Variadic: true, Result: "[]any",
		Doc: "Its arguments as a JSON array, exactly as they arrived.",
	}))
}

// Add is sampleadd(a, b) = a + b for two numbers. Integers stay integers
// (an integer or a sum beyond int64 is an error, never a silent wrap or a
// float); otherwise both are added as floats. It reads the JSON numbers directly, allocation-free,
// because it is the benchmark of per-item overhead.
func Add(_ context.Context, args worker.Args, dst []byte) ([]byte, error) {
	if args.Len() != 2 {
		return dst, &worker.ArgumentError{Index: -1, Err: fmt.Errorf("takes 2 arguments, got %d", args.Len())}
	}
	a, b := args.Raw(0), args.Raw(1)
	if isInt(a) && isInt(b) {
		x, errA := strconv.ParseInt(string(a), 10, 64)
		y, errB := strconv.ParseInt(string(b), 10, 64)
		if errA == nil && errB == nil {
			s := x + y
			if (s > x) != (y > 0) {
				return dst, fmt.Errorf("%d + %d overflows int64", x, y)
			}
			return strconv.AppendInt(dst, s, 10), nil
		}
		// An integer beyond int64 is refused, not added as floats: that would lose digits.
		i, raw := 0, a
		if errA == nil {
			i, raw = 1, b
		}
		return dst, &worker.ArgumentError{Index: i, Err: fmt.Errorf(
			"the integer %s is beyond int64 (-9223372036854775808 to 9223372036854775807); pass a float to add as floats", raw)}
	}
	x, err := number(a, 0)
	if err != nil {
		return dst, err
	}
	y, err := number(b, 1)
	if err != nil {
		return dst, err
	}
	out, err := worker.AppendFloat(dst, x+y)
	if err != nil {
		return dst, &worker.ResultError{Err: err}
	}
	return out, nil
}

func isInt(raw []byte) bool {
	if len(raw) == 0 {
		return false
	}
	for i, c := range raw {
		if (c < '0' || c > '9') && (i > 0 || c != '-') {
			return false
		}
	}
	return true
}

func number(raw []byte, i int) (float64, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, &worker.ArgumentError{Index: i, Err: fmt.Errorf("want a number, got %s", raw)}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, &worker.ArgumentError{Index: i, Err: err}
	}
	return f, nil
}

// CountPrimes is countprimes(n): how many p in [2, n] have no divisor d with
// 2 ≤ d and d·d ≤ p, trying every d = 2, 3, 4, … and stopping at the first
// divisor. No sieve and no skipping: this exact loop is a benchmark workload.
func CountPrimes(n int64) (int64, error) {
	var count int64
	for p := int64(2); p <= n; p++ {
		prime := true
		for d := int64(2); d*d <= p; d++ {
			if p%d == 0 {
				prime = false
				break
			}
		}
		if prime {
			count++
		}
	}
	return count, nil
}

// WordStats is what samplewords returns: a record.
type WordStats struct {
	Text  string `json:"text"`
	Words int    `json:"words"`
	Chars int    `json:"chars"`
	Upper string `json:"upper"`
}

// Words is samplewords(text): a record of the text's word and character
// counts and its upper-case form.
func Words(text string) (WordStats, error) {
	return WordStats{
		Text:  text,
		Words: len(strings.FieldsFunc(text, unicode.IsSpace)),
		Chars: len([]rune(text)),
		Upper: strings.ToUpper(text),
	}, nil
}

// Upper is sampleupper(s): s in upper case.
func Upper(s string) (string, error) { return strings.ToUpper(s), nil }

// ErrDivisionByZero is samplediv's error for b == 0.
var ErrDivisionByZero = errors.New("division by zero")

// Div is samplediv(a, b): a / b, rounded toward zero; an error when b is 0.
func Div(a, b int64) (int64, error) {
	if b == 0 {
		return 0, ErrDivisionByZero
	}
	if a == math.MinInt64 && b == -1 {
		return 0, fmt.Errorf("%d / -1 overflows int64", a)
	}
	return a / b, nil
}

// SleepConcurrency is how many samplesleep items run at once in a worker
// process (worker.Concurrent).
const SleepConcurrency = 1024

// Sleep is samplesleep(seconds): it waits, returning early with an error if
// the job is cancelled (the worker is shutting down), and returns seconds.
func Sleep(ctx context.Context, seconds float64) (float64, error) {
	t := time.NewTimer(time.Duration(seconds * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return seconds, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Panic is samplepanic(message): it panics with message, to show that a
// panic becomes an error with a stack and the worker carries on.
func Panic(message string) (int, error) { panic(message) }

// Echo is sampleecho(args…): it returns its arguments as a JSON array,
// exactly as they arrived, to show what crosses the wire.
func Echo(_ context.Context, args worker.Args, dst []byte) ([]byte, error) {
	dst = append(dst, '[')
	for i := range args.Len() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, args.Raw(i)...)
	}
	return append(dst, ']'), nil
}
