package worker_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gomap/gomap/worker"
)

type point struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Clients learn what a pool runs from the worker records: every function
// that describes its signature has it in the record's "signatures", by name.
func TestWorkerRecordCarriesTheSignatures(t *testing.T) {
	e := newEnv(t)
	reg := worker.NewRegistry()
	reg.Handle("typed", worker.Func2(func(s string, n int) (string, error) { return s, nil }))
	reg.Handle("reflected", worker.Reflect(func(ctx context.Context, p point, tags ...string) (map[string]float64, error) { return nil, nil }))
	reg.Handle("described", worker.Describe(worker.Reflect(func(a, b float64) float64 { return a + b }), worker.Signature{
		Doc: "adds", Params: []worker.Param{{Name: "a"}, {Name: "b"}},
	}))
	reg.Register("Archive", func(queue string, args ...interface{}) error { return nil })
	reg.Handle("bare", worker.HandlerFunc(func(_ context.Context, _ worker.Args, dst []byte) ([]byte, error) { return dst, nil }))
	w, _ := e.run(e.config("sig"), reg)

	raw, err := e.rdb.HGet(e.ctx, e.keys.Processes(), w.ID()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Functions  []string                   `json:"functions"`
		Signatures map[string]json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.Fatalf("record %s: %v", raw, err)
	}
	want := map[string]string{
		"typed":     `{"params":[{"type":"string"},{"type":"int"}],"result":"string","error":true}`,
		"reflected": `{"params":[{"type":"worker_test.point"},{"type":"string"}],"variadic":true,"result":"map[string]float64","error":true}`,
		"described": `{"params":[{"name":"a","type":"float64"},{"name":"b","type":"float64"}],"result":"float64","doc":"adds"}`,
		"Archive":   `{"params":[{"type":"any"}],"variadic":true,"error":true}`,
	}
	if len(rec.Functions) != 5 || len(rec.Signatures) != len(want) {
		t.Errorf("record lists %v and signatures of %d functions, want 5 and %d (bare has none):\n%s",
			rec.Functions, len(rec.Signatures), len(want), raw)
	}
	for name, sig := range want {
		if got := string(rec.Signatures[name]); got != sig {
			t.Errorf("signature of %s:\n got %s\nwant %s", name, got, sig)
		}
	}
}
