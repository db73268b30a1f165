package worker_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gomap/gomap/worker"
)

// pushColumns pushes a columnar chunk (protocol version 2): columns is the
// JSON array of one array per argument.
func (e *env) pushColumns(queue, class, batch string, start int64, columns string) {
	e.t.Helper()
	e.push(queue, fmt.Sprintf(`{"class":%q,"args":[],"gomap":{"v":2,"batch":%q,"start":%d,"columns":%s}}`,
		class, batch, start, columns))
}

func TestColumnarChunkRunsEachRowOnTheColumnsValues(t *testing.T) {
	e := newEnv(t)
	reg := chunkRegistry()
	reg.Handle("join", worker.Reflect(func(s string, n int, b bool, xs []int) string {
		return fmt.Sprintf("%s/%d/%t/%v", s, n, b, xs)
	}))
	cfg := e.config("hostcol")
	cfg.Queues = []worker.Queue{{Name: "add"}, {Name: "join"}}
	e.run(cfg, reg)

	// 3000 rows, so the worker spreads them over goroutines; the order must hold.
	var a, b strings.Builder
	for i := range 3000 {
		if i > 0 {
			a.WriteString(",")
			b.WriteString(", ")
		}
		fmt.Fprintf(&a, "%d", i)
		fmt.Fprintf(&b, "%d", 1_000_000_000_000*int64(i))
	}
	e.startBatch("c1")
	e.pushColumns("add", "add", "c1", 500, "[["+a.String()+"],\n ["+b.String()+"]]")
	start, res := e.waitChunk("c1")
	if start != 500 || len(res.Values) != 3000 || len(res.Errors) != 0 {
		t.Fatalf("start %d, %d values, errors %v", start, len(res.Values), res.Errors)
	}
	for i, v := range res.Values {
		if want := fmt.Sprint(int64(i) + 1_000_000_000_000*int64(i)); string(v) != want {
			t.Fatalf("value %d = %s, want %s", i, v, want)
		}
	}

	// Every kind of value a column carries reaches its parameter as an item's would.
	e.startBatch("c2")
	e.pushColumns("join", "join", "c2", 0, `[["a","b\"c"],[1,2],[true,false],[[1,2],null]]`)
	_, res = e.waitChunk("c2")
	if got := fmt.Sprint(res.Values); got != `["a/1/true/[1 2]" "b\"c/2/false/[]"]` || len(res.Errors) != 0 {
		t.Errorf("join values %s, errors %v", got, res.Errors)
	}
}

func TestColumnarChunkErrorsNameTheItemAndTheArgument(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("hostcolerr")
	cfg.Queues = []worker.Queue{{Name: "add"}}
	e.run(cfg, chunkRegistry())
	e.startBatch("c3")
	e.pushColumns("add", "add", "c3", 10, `[[1,null,3,4],[5,6,"x",7.5]]`)
	_, res := e.waitChunk("c3")
	if got := fmt.Sprint(res.Values); got != "[6 null null null]" {
		t.Errorf("values %s", got)
	}
	want := map[int64]struct {
		arg  int
		text string
	}{11: {0, "argument 1: null is not a valid int64"}, 12: {1, "argument 2: "}, 13: {1, "argument 2: "}}
	if len(res.Errors) != len(want) {
		t.Fatalf("errors %+v", res.Errors)
	}
	for _, got := range res.Errors {
		w, ok := want[got.Index]
		if !ok || got.Kind != "arguments" || got.Arg == nil || *got.Arg != w.arg || !strings.HasPrefix(got.Error, w.text) {
			t.Errorf("error %+v (arg %v), want index in %v, kind arguments, arg %d, text %q", got, got.Arg, want, w.arg, w.text)
		}
	}
}

func TestRowChunksAreStillServedBesideColumnarOnes(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("hostmix")
	cfg.Queues = []worker.Queue{{Name: "add"}}
	e.run(cfg, chunkRegistry())
	e.startBatch("rows")
	e.pushChunk("add", "add", "rows", 0, `[[1,2],[3,4]]`)
	e.startBatch("cols")
	e.pushColumns("add", "add", "cols", 0, `[[1,3],[2,4]]`)
	_, rows := e.waitChunk("rows")
	_, cols := e.waitChunk("cols")
	if r, c := fmt.Sprint(rows.Values), fmt.Sprint(cols.Values); r != "[3 7]" || c != r {
		t.Errorf("rows %s, columns %s; want [3 7] from both", r, c)
	}
}
