// Command myworker is a gomap worker with functions of its own besides the
// samples, and the command line of every gomap worker (goworker's flags, and
// what Python's LocalCluster passes; see package workercmd).
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/samples"
	"github.com/gomap/gomap/worker/workercmd"
)

// Shout is a typed function: gomap.map("shout", [("hi", 2)]) returns ["HI!!"].
func Shout(s string, times int) (string, error) {
	if times < 0 {
		return "", errors.New("times must not be negative")
	}
	return strings.ToUpper(s) + strings.Repeat("!", times), nil
}

// Fetch waits on the network rather than computing: registered with
// worker.Concurrent, many of its items run at once.
func Fetch(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, resp.Body.Close()
}

// Archive is a goworker job function, ported by changing its import.
func Archive(queue string, args ...interface{}) error {
	fmt.Printf("archiving %v from queue %s\n", args, queue)
	return nil
}

func main() {
	reg := worker.NewRegistry()
	samples.Register(reg)
	reg.Handle("shout", worker.Func2(Shout))
	reg.Handle("fetch", worker.Reflect(Fetch), worker.Concurrent(256))
	reg.Register("Archive", Archive)
	// goworker's flags and gomap's, signals, -help listing the functions:
	// the same command line as gomap-worker's.
	workercmd.Main(reg)
}
