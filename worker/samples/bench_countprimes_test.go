package samples_test

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gomap/gomap/worker/samples"
)

// BenchmarkCountPrimesNoBroker is the bound for W2 of benchmarks/bench.py: countprimes over the
// inputs in GOMAP_BENCH_COUNTPRIMES (comma-separated; default 200000..200047), run as a worker
// runs a chunk's items (GOMAXPROCS goroutines taking the next input), with no Redis and no
// encoding. It reports the sum of the counts as primes/op, which bench.py checks against gomap's.
func BenchmarkCountPrimesNoBroker(b *testing.B) {
	inputs, err := countPrimesInputs(os.Getenv("GOMAP_BENCH_COUNTPRIMES"))
	if err != nil {
		b.Fatal(err)
	}
	var sum int64
	for b.Loop() {
		sum = countPrimesParallel(b, inputs)
	}
	b.ReportMetric(float64(sum), "primes/op")
}

func countPrimesInputs(spec string) ([]int64, error) {
	if spec == "" {
		inputs := make([]int64, 48)
		for i := range inputs {
			inputs[i] = 200_000 + int64(i)
		}
		return inputs, nil
	}
	var inputs []int64
	for _, s := range strings.Split(spec, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, n)
	}
	return inputs, nil
}

func countPrimesParallel(b *testing.B, inputs []int64) int64 {
	var next, sum atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(inputs)); i = next.Add(1) - 1 {
				c, err := samples.CountPrimes(inputs[i])
				if err != nil {
					b.Error(err)
					return
				}
				sum.Add(c)
			}
		})
	}
	wg.Wait()
	return sum.Load()
}
