package gen

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/scanner"
	"go/token"
	"os"
	"path/filepath"
	"strings"
)

// unit is a parsed unit directory.
type unit struct {
	dir   string
	fset  *token.FileSet
	files []*sourceFile
}

type sourceFile struct {
	name  string // base name in dir
	src   []byte
	ast   *ast.File
	built bool // the go command compiles it for this GOOS/GOARCH and these build tags
}

// parseUnit parses every non-test .go file of dir, in name order.
func parseUnit(dir string) (*unit, error) {
	names, err := goFiles(dir)
	if err != nil {
		return nil, err
	}
	u := &unit{dir: dir, fset: token.NewFileSet()}
	var errs scanner.ErrorList
	for _, name := range names {
		f, err := u.parseFile(name)
		var list scanner.ErrorList
		switch {
		case errors.As(err, &list):
			for _, e := range list {
				errs.Add(withColumn(e.Pos, f.src), e.Msg)
			}
		case err != nil:
			return nil, err
		default:
			u.files = append(u.files, f)
		}
	}
	if err := sourceErrors(errs); err != nil {
		return nil, err
	}
	return u, nil
}

// goFiles lists the .go files of dir that belong to the unit: not tests, and
// not a previous run's OutputFile.
func goFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if name == OutputFile {
			generated, err := isGenerated(filepath.Join(dir, name))
			if err != nil {
				return nil, err
			}
			if generated {
				continue // ours, from an earlier run: it is about to be rewritten
			}
			return nil, fmt.Errorf("%s: the file name %s is reserved for gomap's generated code; rename the file", filepath.Join(dir, name), OutputFile)
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoGoFiles)
	}
	return names, nil
}

// isGenerated reports whether the file at path says it is generated code, as
// the file Run writes does.
func isGenerated(path string) (bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		return false, err
	}
	return ast.IsGenerated(f), nil
}

func (u *unit) parseFile(name string) (*sourceFile, error) {
	src, err := os.ReadFile(filepath.Join(u.dir, name))
	if err != nil {
		return nil, err
	}
	// The parser gets the bare name, not the path: go/scanner joins a
	// relative //line file name (Python's "//line cell:1") to the directory
	// of the file it scans, and the user's cell is not in our directory.
	f, err := parser.ParseFile(u.fset, name, src, parser.ParseComments)
	if err != nil {
		// src comes along for withColumn.
		return &sourceFile{name: name, src: src}, err
	}
	built, err := build.Default.MatchFile(u.dir, name)
	if err != nil {
		return nil, err
	}
	return &sourceFile{name: name, src: src, ast: f, built: built}, nil
}

// withColumn fills in the column of p, a //line-mapped position in src,
// where the directive did not give one ("//line cell:1" rather than
// "//line cell:1:1"; go/token then leaves columns unknown). Python copies the
// user's lines unchanged, so the column in src is the user's column.
func withColumn(p token.Position, src []byte) token.Position {
	if p.Column == 0 && p.Line > 0 && p.Offset <= len(src) {
		p.Column = p.Offset - bytes.LastIndexByte(src[:p.Offset], '\n')
	}
	return p
}

// renamePackage rewrites each file's package clause to say pkg. Only the
// name's bytes change, so every line keeps its number.
func (u *unit) renamePackage(pkg string) error {
	for _, f := range u.files {
		if f.ast.Name.Name == pkg {
			continue
		}
		start := u.fset.File(f.ast.Package).Offset(f.ast.Name.Pos())
		end := start + len(f.ast.Name.Name)
		src := make([]byte, 0, len(f.src)-(end-start)+len(pkg))
		src = append(append(append(src, f.src[:start]...), pkg...), f.src[end:]...)
		if err := os.WriteFile(filepath.Join(u.dir, f.name), src, 0o644); err != nil {
			return err
		}
	}
	return nil
}
