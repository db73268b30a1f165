// Command gomap-worker runs gomap's Go workers: it takes Resque jobs and
// chunks of gomap batches from Redis and runs the sample functions compiled
// into it, with goworker's command-line flags (see -help, and package
// workercmd, which holds the command line every gomap worker binary shares).
package main

import (
	"fmt"
	"os"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/samples"
	"github.com/gomap/gomap/worker/workercmd"
)

// version is the gomap release this binary comes from: a platform wheel's build stamps it with
// -ldflags "-X main.version=…" (hatch_build.py); a build from source says "dev". A package
// variable because -X can set nothing else.
var version = "dev"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		fmt.Println("gomap-worker", version)
		return
	}
	reg := worker.NewRegistry()
	samples.Register(reg)
	workercmd.Main(reg)
}
