// Command gomap-gen prepares one unit of Python's gomap.compile for the
// worker build:
//
//	gomap-gen -unit DIR -package NAME
//
// It renames the package of every .go file in DIR to NAME (in place), writes
// DIR/gomap_register.go with func GomapRegister(reg *worker.Registry), which
// registers each exported top-level function under its Go name, and prints a
// JSON description of what it registered and skipped. Problems in the source
// are printed as file:line:col: message, positions following the files'
// //line directives, and exit with status 1; bad usage exits with 2.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/scanner"
	"io"
	"os"

	"github.com/gomap/gomap/worker/internal/gen"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gomap-gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg gen.Config
	fs.StringVar(&cfg.Dir, "unit", "", "the unit `directory` holding the user's .go files; required")
	fs.StringVar(&cfg.Package, "package", "", "the package `name` to give the unit; required")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := checkUsage(fs, cfg); err != nil {
		fmt.Fprintf(stderr, "gomap-gen: %v\n", err)
		return 2
	}
	res, err := gen.Run(cfg)
	if err != nil {
		report(stderr, err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		fmt.Fprintf(stderr, "gomap-gen: %v\n", err)
		return 1
	}
	return 0
}

func checkUsage(fs *flag.FlagSet, cfg gen.Config) error {
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q (flags only; see -help)", fs.Args())
	case cfg.Dir == "" || cfg.Package == "":
		return errors.New("-unit and -package are required (see -help)")
	}
	return gen.CheckPackageName(cfg.Package)
}

// report prints err. Problems in the user's source go out bare, one per
// line, since Python shows them to the user as they are.
func report(w io.Writer, err error) {
	var list scanner.ErrorList
	var none *gen.NoFunctionsError
	switch {
	case errors.As(err, &list):
		scanner.PrintError(w, list)
	case errors.As(err, &none):
		fmt.Fprintln(w, none)
	default:
		fmt.Fprintf(w, "gomap-gen: %v\n", err)
	}
}
