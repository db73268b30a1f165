package worker_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
)

// An "arguments" item error carries the position of the argument that did not
// fit, from 0 ("arg"), for typed and reflected functions and variadic tails;
// errors not about one argument carry none.
func TestItemErrorNamesTheArgumentPosition(t *testing.T) {
	e := newEnv(t)
	reg := worker.NewRegistry()
	reg.Handle("add", worker.Func2(func(a, b int64) (int64, error) { return a + b, nil }))
	reg.Handle("sum", worker.Reflect(func(label string, xs ...float64) (string, error) {
		if label == "" {
			return "", errors.New("no label")
		}
		return label, nil
	}))
	cfg := e.config("hostarg")
	cfg.Queues = []worker.Queue{{Name: "add"}, {Name: "sum"}}
	e.run(cfg, reg)

	e.startBatch("typed")
	e.pushChunk("add", "add", "typed", 0, `[[1, 2], [null, 2], [1, "x"], [1, 2, 3]]`)
	_, res := e.waitChunk("typed")
	e.startBatch("reflected")
	e.pushChunk("sum", "sum", "reflected", 0, `[["a", 1.5], [7, 1.5], ["a", 1.5, null], ["", 1]]`)
	_, res2 := e.waitChunk("reflected")

	type want struct {
		kind string
		arg  int // -1: none
		text string
	}
	check := func(name string, got []protocol.ItemError, wants map[int64]want) {
		t.Helper()
		if len(got) != len(wants) {
			t.Fatalf("%s: errors %+v, want %d", name, got, len(wants))
		}
		for _, ie := range got {
			w, ok := wants[ie.Index]
			switch {
			case !ok:
				t.Errorf("%s: unexpected error %+v", name, ie)
			case ie.Kind != w.kind || !strings.Contains(ie.Error, w.text):
				t.Errorf("%s item %d: %+v, want kind %s with %q", name, ie.Index, ie, w.kind, w.text)
			case w.arg < 0 && ie.Arg != nil:
				t.Errorf("%s item %d: arg %d, want none", name, ie.Index, *ie.Arg)
			case w.arg >= 0 && (ie.Arg == nil || *ie.Arg != w.arg):
				t.Errorf("%s item %d: arg %v, want %d", name, ie.Index, ie.Arg, w.arg)
			}
		}
	}
	check("typed", res.Errors, map[int64]want{
		1: {protocol.KindArguments, 0, "argument 1: null"},
		2: {protocol.KindArguments, 1, "argument 2:"},
		3: {protocol.KindArguments, -1, "takes 2 arguments, got 3"},
	})
	check("reflected", res2.Errors, map[int64]want{
		1: {protocol.KindArguments, 0, "argument 1:"},
		2: {protocol.KindArguments, 2, "argument 3: null"},
		3: {protocol.KindError, -1, "no label"},
	})
}

// The position travels as "arg" and only when known: older clients ignore it.
func TestItemErrorArgIsOmittedWhenUnknown(t *testing.T) {
	zero := 0
	b, err := protocol.AppendChunkResult(nil, []byte("[null,null]"), []protocol.ItemError{
		{Index: 0, Kind: protocol.KindArguments, Error: "argument 1: x", Arg: &zero},
		{Index: 1, Kind: protocol.KindError, Error: "boom"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if !strings.Contains(got, `"arg":0}`) || strings.Count(got, `"arg"`) != 1 {
		t.Errorf("outcome %s: want \"arg\":0 on the first error only", got)
	}
}
