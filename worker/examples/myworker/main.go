// Command myworker is a gomap worker with functions of its own besides the
// samples, and goworker's command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/samples"
)

// Shout is a typed function: gomap.map("shout", [("hi", 2)]) returns ["HI!!"].
func Shout(s string, times int) (string, error) {
	if times < 0 {
		return "", errors.New("times must not be negative")
	}
	return strings.ToUpper(s) + strings.Repeat("!", times), nil
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
	reg.Register("Archive", Archive)

	fs := flag.NewFlagSet("myworker", flag.ExitOnError)
	flags := worker.BindFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	cfg, err := flags.Config(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	w, err := worker.New(cfg, reg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
