package gen

import (
	"errors"
	"go/scanner"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// cell is how Python writes a notebook cell without a package clause.
func cell(body string) string { return "package main\n//line cell:1\n" + body }

// writeUnit lays out files (name → content) in a new unit directory.
func writeUnit(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFunctions(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    []Function
		skipped []Skipped
	}{{
		name: "doc comment",
		body: "// Double doubles x.\n//\n// It never fails.\nfunc Double(x int) int { return 2 * x }\n",
		want: []Function{{Name: "Double", Params: []Param{{"x", "int"}}, Result: "int",
			Doc: "Double doubles x.\n\nIt never fails.", File: "cell", Line: 4}},
	}, {
		name: "line directive is no doc",
		body: "func Double(x int) int { return 2 * x }\n",
		want: []Function{{Name: "Double", Params: []Param{{"x", "int"}}, Result: "int", File: "cell", Line: 1}},
	}, {
		name: "grouped and unnamed params",
		body: "func Haversine(lat1, lon1, lat2, lon2 float64) float64 { return 0 }\n" +
			"func Pair(int, []string) map[string]int { return nil }\n" +
			"func Blank(_ int, b *struct{ X int }) bool { return false }\n",
		want: []Function{
			{Name: "Haversine", Params: []Param{{"lat1", "float64"}, {"lon1", "float64"}, {"lat2", "float64"}, {"lon2", "float64"}},
				Result: "float64", File: "cell", Line: 1},
			{Name: "Pair", Params: []Param{{"", "int"}, {"", "[]string"}}, Result: "map[string]int", File: "cell", Line: 2},
			{Name: "Blank", Params: []Param{{"", "int"}, {"b", "*struct{X int}"}}, Result: "bool", File: "cell", Line: 3},
		},
	}, {
		name: "variadic",
		body: "func Sum(scale float64, xs ...float64) float64 { return 0 }\n",
		want: []Function{{Name: "Sum", Params: []Param{{"scale", "float64"}, {"xs", "float64"}}, Result: "float64",
			Variadic: true, File: "cell", Line: 1}},
	}, {
		name: "context first",
		body: "import (\n\t\"context\"\n\tctx2 \"context\"\n)\n\n" +
			"func Fetch(ctx context.Context, url string) (string, error) { return url, nil }\n" +
			"func Later(n int, ctx context.Context) int { return n }\n" +
			"func Only(context.Context) {}\n" +
			"func Aliased(c ctx2.Context, n int) int { return n }\n",
		want: []Function{
			{Name: "Fetch", Params: []Param{{"url", "string"}}, Result: "string", Error: true, Context: true, File: "cell", Line: 6},
			{Name: "Later", Params: []Param{{"n", "int"}, {"ctx", "context.Context"}}, Result: "int", File: "cell", Line: 7},
			{Name: "Only", Params: []Param{}, Context: true, File: "cell", Line: 8},
			{Name: "Aliased", Params: []Param{{"n", "int"}}, Result: "int", Context: true, File: "cell", Line: 9},
		},
	}, {
		name: "result shapes",
		body: "type Point struct{ X, Y float64 }\n" +
			"func Parse(s string) (Point, error) { return Point{}, nil }\n" +
			"func Check(s string) error { return nil }\n" +
			"func Log(s string) {}\n" +
			"func Named(s string) (n int, err error) { return 0, nil }\n" +
			"func Empty() () { }\n",
		want: []Function{
			{Name: "Parse", Params: []Param{{"s", "string"}}, Result: "Point", Error: true, File: "cell", Line: 2},
			{Name: "Check", Params: []Param{{"s", "string"}}, Error: true, File: "cell", Line: 3},
			{Name: "Log", Params: []Param{{"s", "string"}}, File: "cell", Line: 4},
			{Name: "Named", Params: []Param{{"s", "string"}}, Result: "int", Error: true, File: "cell", Line: 5},
			{Name: "Empty", Params: []Param{}, File: "cell", Line: 6},
		},
	}, {
		name: "skipped and ignored",
		body: "type T int\n" +
			"func (T) Method() int { return 0 }\n" +
			"func helper() int { return 0 }\n" +
			"func Map[T any](xs []T) []T { return xs }\n" +
			"func Two() (int, int) { return 0, 0 }\n" +
			"func Three() (a, b int, err error) { return }\n" +
			"func ErrFirst() (error, int) { return nil, 0 }\n" +
			"func Ok() {}\n",
		want: []Function{{Name: "Ok", Params: []Param{}, File: "cell", Line: 8}},
		skipped: []Skipped{
			{Name: "Map", Reason: "generic functions cannot be registered: each call needs concrete types; register a non-generic wrapper instead", File: "cell", Line: 4},
			{Name: "Two", Reason: "it returns (int, int); gomap registers functions that return nothing, error, one result, or (result, error)", File: "cell", Line: 5},
			{Name: "Three", Reason: "it returns (int, int, error); gomap registers functions that return nothing, error, one result, or (result, error)", File: "cell", Line: 6},
			{Name: "ErrFirst", Reason: "it returns (error, int); gomap registers functions that return nothing, error, one result, or (result, error)", File: "cell", Line: 7},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeUnit(t, map[string]string{"cell.go": cell(tt.body)})
			res, err := Run(Config{Dir: dir, Package: "u1"})
			if err != nil {
				t.Fatal(err)
			}
			if tt.skipped == nil {
				tt.skipped = []Skipped{}
			}
			if !reflect.DeepEqual(res.Functions, tt.want) {
				t.Errorf("functions:\n got %+v\nwant %+v", res.Functions, tt.want)
			}
			if !reflect.DeepEqual(res.Skipped, tt.skipped) {
				t.Errorf("skipped:\n got %+v\nwant %+v", res.Skipped, tt.skipped)
			}
		})
	}
}

func TestSnippetGetsPackageAndRegisterFile(t *testing.T) {
	src := cell("// Double doubles x.\nfunc Double(x int) int { return 2 * x }\n")
	dir := writeUnit(t, map[string]string{"cell.go": src})
	if _, err := Run(Config{Dir: dir, Package: "u1f00"}); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, filepath.Join(dir, "cell.go")), strings.Replace(src, "package main", "package u1f00", 1); got != want {
		t.Errorf("cell.go is now\n%s\nwant\n%s", got, want)
	}
	want := `// Code generated by gomap-gen. DO NOT EDIT.

package u1f00

import gomapworker "github.com/gomap/gomap/worker"

// GomapRegister registers the package's exported functions with reg, each under its Go name.
func GomapRegister(reg *gomapworker.Registry) {
	reg.Handle("Double", gomapworker.Describe(gomapworker.Reflect(Double), gomapworker.Signature{
		Doc:      "Double doubles x.",
		Params:   []gomapworker.Param{{Name: "x", Type: "int"}},
		Result:   "int",
		Error:    false,
		Variadic: false,
	}))
}
`
	if got := readFile(t, filepath.Join(dir, OutputFile)); got != want {
		t.Errorf("%s:\n%s\nwant\n%s", OutputFile, got, want)
	}
}

func TestGoFileKeepsItsLines(t *testing.T) {
	src := "//line /home/me/geo.go:1\n// Package geo does geometry.\npackage   geo // the user's name\n\nimport \"math\"\n\n" +
		"// Dist is the length of (x, y).\nfunc Dist(x, y float64) float64 { return math.Hypot(x, y) }\n"
	dir := writeUnit(t, map[string]string{"geo.go": src})
	res, err := Run(Config{Dir: dir, Package: "uabc"})
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, filepath.Join(dir, "geo.go"))
	if want := strings.Replace(src, "package   geo", "package   uabc", 1); got != want {
		t.Errorf("geo.go is now\n%s\nwant\n%s", got, want)
	}
	if fn := res.Functions[0]; fn.File != "/home/me/geo.go" || fn.Line != 7 || fn.Doc != "Dist is the length of (x, y)." {
		t.Errorf("Dist at %s:%d with doc %q, want /home/me/geo.go:7", fn.File, fn.Line, fn.Doc)
	}
	if !strings.Contains(readFile(t, filepath.Join(dir, OutputFile)), "\npackage uabc\n") {
		t.Errorf("%s is not in package uabc", OutputFile)
	}
}

func TestPackageDirectory(t *testing.T) {
	dir := writeUnit(t, map[string]string{
		"b.go":          "//line /src/geo/b.go:1\npackage geo\n\nfunc Area(w, h float64) float64 { return w * h }\n",
		"a.go":          "//line /src/geo/a.go:1\npackage geo\n\nfunc Perimeter(w, h float64) float64 { return 2 * (w + h) }\n",
		"a_test.go":     "package geo\n\nfunc TestX() {}\n",
		"windows.go":    "//line /src/geo/windows.go:1\n//go:build windows && !windows\n\npackage geo\n\nfunc Never() {}\n",
		"notes.txt":     "not Go",
		"sub/nested.go": "",
	})
	res, err := Run(Config{Dir: dir, Package: "u2"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fn := range res.Functions {
		names = append(names, fn.File+":"+fn.Name)
	}
	if want := []string{"/src/geo/a.go:Perimeter", "/src/geo/b.go:Area"}; !reflect.DeepEqual(names, want) {
		t.Errorf("registered %q, want %q (file name order)", names, want)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Name != "Never" || !strings.Contains(res.Skipped[0].Reason, "excluded from the build") {
		t.Errorf("skipped %+v, want Never, excluded from the build", res.Skipped)
	}
	for _, name := range []string{"a.go", "b.go", "windows.go"} {
		if !strings.Contains(readFile(t, filepath.Join(dir, name)), "\npackage u2\n") {
			t.Errorf("%s was not renamed to package u2", name)
		}
	}
	if got := readFile(t, filepath.Join(dir, "a_test.go")); !strings.HasPrefix(got, "package geo\n") {
		t.Errorf("a_test.go was changed:\n%s", got)
	}
}

func TestSourceErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // each error as file:line:col: message
	}{{
		name:  "parse error on line 3 of a cell",
		files: map[string]string{"cell.go": cell("func F() int {\n\tx := \n}\n")},
		want:  []string{"cell:3:1: expected operand, found '}'"},
	}, {
		name: "parse errors in two files, column from a //line with one",
		files: map[string]string{
			"a.go": "//line /src/a.go:1:1\npackage geo\n\nfunc A( {}\n",
			"b.go": cell("var x = )\n"),
		},
		want: []string{
			"/src/a.go:3:9: expected ')', found '{'",
			"cell:1:9: expected operand, found ')'",
		},
	}, {
		name:  "file without a //line directive",
		files: map[string]string{"plain.go": "package p\nfunc"},
		want:  []string{"plain.go:2:5: expected 'IDENT', found 'EOF'"},
	}, {
		name: "reserved names",
		files: map[string]string{"cell.go": cell("func Ok() {}\n\nfunc GomapRegister(x int) {}\n\nvar gomapworker = 1\n" +
			"type T int\nfunc (T) GomapRegister() {}\n")},
		want: []string{
			"cell:3:6: the name GomapRegister is reserved for gomap's generated registration code; rename it",
			"cell:5:5: the name gomapworker is reserved for gomap's generated registration code; rename it",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeUnit(t, tt.files)
			_, err := Run(Config{Dir: dir, Package: "u1"})
			var list scanner.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Run: %v, want a scanner.ErrorList", err)
			}
			var got []string
			for _, e := range list {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
			assertUntouched(t, dir, tt.files)
		})
	}
}

// assertUntouched checks that a failed Run left the unit as it was.
func assertUntouched(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		if got := readFile(t, filepath.Join(dir, name)); got != src {
			t.Errorf("%s was changed to\n%s", name, got)
		}
	}
	if _, ok := files[OutputFile]; ok {
		return
	}
	if _, err := os.Stat(filepath.Join(dir, OutputFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was written (stat: %v)", OutputFile, err)
	}
}

func TestNoExportedFunction(t *testing.T) {
	files := map[string]string{"cell.go": cell("func helper() {}\n\nfunc Pair() (int, int) { return 1, 2 }\nfunc Id[T any](x T) T { return x }\n")}
	dir := writeUnit(t, files)
	_, err := Run(Config{Dir: dir, Package: "u1"})
	var none *NoFunctionsError
	if !errors.As(err, &none) {
		t.Fatalf("Run: %v, want a *NoFunctionsError", err)
	}
	msg := err.Error()
	for _, want := range []string{"names start with a capital letter", "\n\tcell:3: Pair: it returns (int, int)", "\n\tcell:4: Id: generic"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	assertUntouched(t, dir, files)

	dir = writeUnit(t, map[string]string{"cell.go": cell("func helper() {}\n")})
	if _, err := Run(Config{Dir: dir, Package: "u1"}); err == nil || strings.Contains(err.Error(), "skipped") {
		t.Errorf("Run: %v, want a no-function error without a skipped list", err)
	}
}

func TestRunTwice(t *testing.T) {
	dir := writeUnit(t, map[string]string{"cell.go": cell("func F() {}\n")})
	for range 2 {
		if _, err := Run(Config{Dir: dir, Package: "u1"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBadUnits(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		pkg   string
		want  string
	}{
		{"no go files", map[string]string{"x_test.go": "package x"}, "u1", "no Go source files"},
		{"user file with the output's name", map[string]string{OutputFile: cell("func F() {}\n")}, "u1", "reserved for gomap's generated code"},
		{"package main", map[string]string{"cell.go": cell("func F() {}\n")}, "main", "invalid package name"},
		{"package not an identifier", map[string]string{"cell.go": cell("func F() {}\n")}, "u-1", "invalid package name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeUnit(t, tt.files)
			if _, err := Run(Config{Dir: dir, Package: tt.pkg}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run: %v, want an error saying %q", err, tt.want)
			}
			assertUntouched(t, dir, tt.files)
		})
	}
	if _, err := Run(Config{Dir: filepath.Join(t.TempDir(), "missing"), Package: "u1"}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Run on a missing directory: %v", err)
	}
}
