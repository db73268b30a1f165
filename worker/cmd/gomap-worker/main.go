// Command gomap-worker runs gomap's Go workers: it takes Resque jobs and
// chunks of gomap batches from Redis and runs the sample functions compiled
// into it, with goworker's command-line flags (see -help, and package
// workercmd, which holds the command line every gomap worker binary shares).
package main

import (
	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/samples"
	"github.com/gomap/gomap/worker/workercmd"
)

func main() {
	reg := worker.NewRegistry()
	samples.Register(reg)
	workercmd.Main(reg)
}
