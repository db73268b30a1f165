package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomap/gomap/worker/internal/gen"
)

func unit(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cell.go"), []byte("package main\n//line cell:1\n"+src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPrintsTheResultAsJSON(t *testing.T) {
	dir := unit(t, "// Double doubles x.\nfunc Double(x int) int { return 2 * x }\nfunc Pair() (int, int) { return 1, 2 }\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-unit", dir, "-package", "u7"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := `{"package":"u7","functions":[{"name":"Double","params":[{"name":"x","type":"int"}],"result":"int",` +
		`"error":false,"variadic":false,"context":false,"doc":"Double doubles x.","file":"cell","line":2}],` +
		`"skipped":[{"name":"Pair","reason":"it returns (int, int); gomap registers functions that return nothing, error, one result, or (result, error)","file":"cell","line":3}]}` + "\n"
	if stdout.String() != want {
		t.Errorf("stdout\n%s\nwant\n%s", stdout.String(), want)
	}
	var res gen.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Functions[0].Name != "Double" {
		t.Errorf("stdout does not decode as a gen.Result: %v %+v", err, res)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr %q", stderr.String())
	}
}

func TestFailures(t *testing.T) {
	good := unit(t, "func F() {}\n")
	tests := []struct {
		name string
		args []string
		code int
		want string // stderr, exactly or (ending in …) as a prefix
	}{
		{"parse error", []string{"-unit", unit(t, "func F() {\n\tx :=\n}\n"), "-package", "u1"}, 1,
			"cell:3:1: expected operand, found '}'\n"},
		{"reserved name", []string{"-unit", unit(t, "func GomapRegister() {}\n"), "-package", "u1"}, 1,
			"cell:1:6: the name GomapRegister is reserved for gomap's generated registration code; rename it\n"},
		{"no function", []string{"-unit", unit(t, "func f() {}\n"), "-package", "u1"}, 1,
			"no function to register: gomap registers top-level functions whose names start with a capital letter …"},
		{"missing directory", []string{"-unit", filepath.Join(good, "nope"), "-package", "u1"}, 1, "gomap-gen: open …"},
		{"no flags", nil, 2, "gomap-gen: -unit and -package are required (see -help)\n"},
		{"bad package", []string{"-unit", good, "-package", "main"}, 2, "gomap-gen: invalid package name \"main\"…"},
		{"extra argument", []string{"-unit", good, "-package", "u1", "x.go"}, 2, "gomap-gen: unexpected arguments [\"x.go\"]…"},
		{"unknown flag", []string{"-dir", good}, 2, "flag provided but not defined: -dir\n…"},
		{"help", []string{"-help"}, 0, "Usage of gomap-gen:\n…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			got := stderr.String()
			ok := got == tt.want
			if prefix, cut := strings.CutSuffix(tt.want, "…"); cut {
				ok = strings.HasPrefix(got, prefix)
			}
			if code != tt.code || !ok || stdout.Len() != 0 {
				t.Errorf("exit %d, stderr %q, stdout %q; want exit %d, stderr %q", code, got, stdout.String(), tt.code, tt.want)
			}
		})
	}
}
