package gen

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEndToEnd does what Python's gomap.compile does: it lays out a unit
// inside the module (so the vendored dependencies build it offline), runs
// Run on it, writes a main package that registers the unit, and runs it.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program with the go command")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	root := moduleRoot(t, gobin)
	// The leading underscore keeps ./... patterns (go vet, go test) of
	// whoever works in the module meanwhile from seeing the directory.
	base, err := os.MkdirTemp(root, "_gomapgen_e2e_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(base); err != nil {
			t.Error(err)
		}
	})
	unit := filepath.Join(base, "u1")
	files := map[string]string{
		"cell.go": cell("import (\n\t\"context\"\n\t\"errors\"\n)\n\n" +
			"// Scale multiplies each x by k.\nfunc Scale(ctx context.Context, k float64, xs ...float64) ([]float64, error) {\n" +
			"\tout := make([]float64, len(xs))\n\tfor i, x := range xs {\n\t\tout[i] = k * x\n\t}\n\treturn out, ctx.Err()\n}\n\n" +
			"func Fail(msg string) error { return errors.New(msg) }\n\nfunc Nothing() {}\n\nfunc Id[T any](x T) T { return x }\n"),
		"geo.go": "//line /home/me/geo.go:1\npackage geo\n\nimport \"math\"\n\n" +
			"type Point struct{ X, Y float64 }\n\nfunc (p Point) Norm() float64 { return math.Hypot(p.X, p.Y) }\n\n" +
			"// Dist is the distance of p from the origin.\nfunc Dist(p Point) float64 { return p.Norm() }\n",
	}
	for name, src := range files {
		writeFile(t, filepath.Join(unit, name), src)
	}
	res, err := Run(Config{Dir: unit, Package: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Functions) != 4 || len(res.Skipped) != 1 {
		t.Fatalf("registered %+v, skipped %+v; want 4 and 1", res.Functions, res.Skipped)
	}
	writeFile(t, filepath.Join(base, "main", "main.go"), strings.ReplaceAll(e2eMain, "UNIT", "github.com/gomap/gomap/worker/"+filepath.Base(base)+"/u1"))

	cmd := exec.Command(gobin, "run", "./"+filepath.Base(base)+"/main")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run: %v\n%s", err, out)
	}
	want := `[Dist Fail Nothing Scale]
Dist [{"X":3,"Y":4}] -> 5.0 <nil>
Dist signature {"params":[{"name":"p","type":"Point"}],"result":"float64","doc":"Dist is the distance of p from the origin."}
Fail ["boom"] ->  boom
Fail signature {"params":[{"name":"msg","type":"string"}],"error":true}
Nothing [] -> null <nil>
Scale [2,1,2.5] -> [2.0,5.0] <nil>
Scale signature {"params":[{"name":"k","type":"float64"},{"name":"xs","type":"float64"}],"variadic":true,"result":"[]float64","error":true,"doc":"Scale multiplies each x by k."}
`
	if string(out) != want {
		t.Errorf("the program printed\n%s\nwant\n%s", out, want)
	}
}

func moduleRoot(t *testing.T, gobin string) string {
	t.Helper()
	out, err := exec.Command(gobin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func writeFile(t *testing.T, path, src string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// e2eMain is the worker's side of the test: it calls each function as a
// worker would and prints what a client would see. UNIT is the unit's
// import path.
const e2eMain = `package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/gomap/gomap/worker"
	u1 "UNIT"
)

func main() {
	reg := worker.NewRegistry()
	u1.GomapRegister(reg)
	fmt.Println(reg.Names())
	calls := []struct {
		name string
		args []string
		sig  bool
	}{
		{"Dist", []string{` + "`" + `{"X":3,"Y":4}` + "`" + `}, true},
		{"Fail", []string{` + "`" + `"boom"` + "`" + `}, true},
		{"Nothing", nil, false},
		{"Scale", []string{"2", "1", "2.5"}, true},
	}
	for _, c := range calls {
		if err := call(reg, c.name, c.args, c.sig); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
	}
}

func call(reg *worker.Registry, name string, args []string, sig bool) error {
	h, ok := reg.Lookup(name)
	if !ok {
		return fmt.Errorf("%s is not registered", name)
	}
	out, err := worker.CallJSON(context.Background(), h, args...)
	fmt.Printf("%s [%s] -> %s %v\n", name, strings.Join(args, ","), out, err)
	if !sig {
		return nil
	}
	s, ok := worker.SignatureOf(h)
	if !ok {
		return fmt.Errorf("%s has no signature", name)
	}
	js, err := json.Marshal(s)
	if err != nil {
		return err
	}
	fmt.Printf("%s signature %s\n", name, js)
	return nil
}
`
