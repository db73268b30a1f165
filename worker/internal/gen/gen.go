// Package gen is gomap-gen's logic: it turns a directory of a user's Go
// source (one "unit" of gomap.compile in Python) into an importable package
// whose GomapRegister function registers every exported top-level function
// with a worker.Registry, under its Go name and with its signature.
//
// Python writes each user file with a //line directive, so every position
// gen reports (parse errors, the file and line of each function) names the
// user's own file or notebook cell and line rather than the copy on disk.
package gen

import (
	"errors"
	"fmt"
	"go/scanner"
	"go/token"
	"os"
	"path/filepath"
	"strings"
)

const (
	// RegisterFunc is the function the generated file declares; the unit's
	// own code may not declare that name.
	RegisterFunc = "GomapRegister"
	// OutputFile is the file Run writes into the unit directory.
	OutputFile = "gomap_register.go"

	workerPath  = "github.com/gomap/gomap/worker"
	workerAlias = "gomapworker" // the generated file's name for workerPath, chosen to be unlikely in user code
)

// ErrNoGoFiles is returned for a unit directory without Go source files.
var ErrNoGoFiles = errors.New("no Go source files")

// Config says which unit to generate for.
type Config struct {
	Dir     string // the unit directory, holding the user's .go files
	Package string // the package name every file gets, e.g. "u1a2b3c"
}

// Result describes what Run registered and what it skipped. It is what
// gomap-gen prints, so its JSON field names are a contract with Python.
type Result struct {
	Package   string     `json:"package"`
	Functions []Function `json:"functions"`
	Skipped   []Skipped  `json:"skipped"`
}

// Function is one registered function.
type Function struct {
	Name     string  `json:"name"`
	Params   []Param `json:"params"`   // without a leading context.Context
	Result   string  `json:"result"`   // the result type as written; "" when there is none
	Error    bool    `json:"error"`    // it also returns an error
	Variadic bool    `json:"variadic"` // the last param is ...Type
	Context  bool    `json:"context"`  // it takes a leading context.Context, which the worker passes
	Doc      string  `json:"doc"`
	File     string  `json:"file"` // where the declaration is, as the //line directives map it
	Line     int     `json:"line"`
}

// Param is one parameter of a Function.
type Param struct {
	Name string `json:"name"` // "" when the source leaves it unnamed (or calls it _)
	Type string `json:"type"` // as the source writes it; for ...T, T
}

// Skipped is an exported function that cannot be registered, and why.
type Skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
	File   string `json:"file"`
	Line   int    `json:"line"`
}

// NoFunctionsError is Run's error for a unit with nothing to register.
type NoFunctionsError struct {
	Skipped []Skipped
}

func (e *NoFunctionsError) Error() string {
	var b strings.Builder
	b.WriteString("no function to register: gomap registers top-level functions whose names start " +
		"with a capital letter (e.g. func Double(x int) int), and found none")
	if len(e.Skipped) > 0 {
		b.WriteString(" it can register; skipped:")
		for _, s := range e.Skipped {
			fmt.Fprintf(&b, "\n\t%s:%d: %s: %s", s.File, s.Line, s.Name, s.Reason)
		}
	}
	return b.String()
}

// CheckPackageName reports whether name can be a unit's package name: an
// identifier other than _ and main, since the worker's main package imports it.
func CheckPackageName(name string) error {
	if !token.IsIdentifier(name) || name == "_" || name == "main" {
		return fmt.Errorf("invalid package name %q: want an identifier other than _ and main", name)
	}
	return nil
}

// Run parses the unit in cfg.Dir, renames every file's package to
// cfg.Package (in place, on the package clause's own line, so no line moves)
// and writes OutputFile. Problems in the user's source come back as a
// scanner.ErrorList (each with its //line-mapped position) or a
// *NoFunctionsError; in either case no file has been changed.
func Run(cfg Config) (Result, error) {
	if err := CheckPackageName(cfg.Package); err != nil {
		return Result{}, err
	}
	u, err := parseUnit(cfg.Dir)
	if err != nil {
		return Result{}, err
	}
	res, err := analyze(u, cfg.Package)
	if err != nil {
		return Result{}, err
	}
	src, err := registerSource(res)
	if err != nil {
		return Result{}, err
	}
	if err := u.renamePackage(cfg.Package); err != nil {
		return Result{}, err
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, OutputFile), src, 0o644); err != nil {
		return Result{}, err
	}
	return res, nil
}

// sourceErrors turns errs into Run's error: nil when empty, sorted by position.
func sourceErrors(errs scanner.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	errs.Sort()
	return errs
}
