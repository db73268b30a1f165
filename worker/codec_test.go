package worker

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"github.com/gomap/gomap/worker/internal/protocol"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestAppendFloatWritesWhatPythonsReprWrites(t *testing.T) {
	// Each want is repr(x) in CPython.
	for _, c := range []struct {
		f    float64
		want string
	}{
		{0, "0.0"}, {math.Copysign(0, -1), "-0.0"}, {1, "1.0"}, {2.5, "2.5"}, {0.1, "0.1"}, {1e-4, "0.0001"},
		{9.99e-5, "9.99e-05"}, {1e-5, "1e-05"}, {1.5e-05, "1.5e-05"}, {123456.789, "123456.789"},
		{1e15, "1000000000000000.0"}, {1e16, "1e+16"}, {1.2345e16, "1.2345e+16"}, {1e22, "1e+22"},
		{-2, "-2.0"}, {5e-324, "5e-324"}, {math.MaxFloat64, "1.7976931348623157e+308"}, {100, "100.0"},
	} {
		got, err := AppendFloat(nil, c.f)
		if err != nil || string(got) != c.want {
			t.Errorf("AppendFloat(%v) = %s, %v; want %s", c.f, got, err, c.want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := AppendFloat(nil, f); err == nil {
			t.Errorf("AppendFloat(%v) must fail: JSON has no %v", f, f)
		}
	}
}

func TestSplitArray(t *testing.T) {
	for in, want := range map[string]string{
		`[]`:    ``,
		`[1]`:   `1`,
		`[1,2]`: `1|2`,
		` [ 1 , "a,b]" , [1,[2]] , {"k":"}"} , null ] `[1:]: `1|"a,b]"|[1,[2]]|{"k":"}"}|null`,
		`["\"", "\\", "\\\""]`:                              `"\""|"\\"|"\\\""`,
		`[-1.5e3,true,false]`:                               `-1.5e3|true|false`,
	} {
		vals, err := splitArray([]byte(in), nil)
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = string(v)
		}
		if got := strings.Join(parts, "|"); err != nil || got != want {
			t.Errorf("splitArray(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
}

func FuzzSplitArrayAgreesWithEncodingJSON(f *testing.F) {
	for _, s := range []string{`[]`, `[1,"a",[2,{"b":null}]]`, `["\\\"",-0.5e-3, true]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want []stdjson.RawMessage
		if stdjson.Unmarshal([]byte(s), &want) != nil || strings.TrimSpace(s)[0] != '[' {
			return // only valid arrays reach splitArray
		}
		got, err := splitArray([]byte(strings.TrimSpace(s)), nil)
		if err != nil || len(got) != len(want) {
			t.Fatalf("splitArray(%s) = %q, %v; want %q", s, got, err, want)
		}
		for i := range want {
			if strings.TrimSpace(string(want[i])) != string(got[i]) {
				t.Fatalf("element %d: %q, want %q", i, got[i], want[i])
			}
		}
	})
}

func call(h Handler, args ...string) (string, error) {
	out, err := CallJSON(context.Background(), h, args...)
	return string(out), err
}

func TestTypedDecoders(t *testing.T) {
	type rec struct {
		A int     `json:"a"`
		B *string `json:"b"`
	}
	echo := func(v any) (string, error) { return fmt.Sprintf("%T %v", v, v), nil }
	for _, c := range []struct {
		h    Handler
		arg  string
		want string // result, or "error: <substring>"
	}{
		{Func1(func(x int) (int, error) { return x, nil }), `9007199254740993`, `9007199254740993`},
		{Func1(func(x int8) (int8, error) { return x, nil }), `300`, `error: 300 is out of range for int8`},
		{Func1(func(x int) (int, error) { return x, nil }), `2.0`, `error: want int, got 2.0`},
		{Func1(func(x int) (int, error) { return x, nil }), `"2"`, `error: want int, got "2"`},
		{Func1(func(x uint) (uint, error) { return x, nil }), `-1`, `error: want uint, got -1`},
		{Func1(func(x float64) (float64, error) { return x, nil }), `2`, `2.0`},
		{Func1(func(x float64) (float64, error) { return x, nil }), `null`, `error: null is not a valid float64`},
		{Func1(func(x float32) (float32, error) { return x, nil }), `0.1`, `0.1`},
		{Func1(func(x string) (string, error) { return x, nil }), `"a\"b\u00e9/"`, `"a\"bé/"`},
		{Func1(func(x string) (string, error) { return x, nil }), `5`, `error: want a string, got 5`},
		{Func1(func(x bool) (bool, error) { return !x, nil }), `true`, `false`},
		{Func1(func(x stdjson.Number) (string, error) { return x.String(), nil }), `123456789012345678901234567890`, `"123456789012345678901234567890"`},
		{Func1(func(x *float64) (bool, error) { return x == nil, nil }), `null`, `true`},
		{Func1(func(x []int) (int, error) { return len(x), nil }), `[1,2,3]`, `3`},
		{Func1(func(x rec) (rec, error) { return x, nil }), `{"a":1,"b":"s"}`, `{"a":1,"b":"s"}`},
		{Func1(func(x rec) (rec, error) { return x, nil }), `null`, `error: null is not a valid worker.rec`},
		{Func1(func(x any) (string, error) { return echo(x) }), `1`, `"float64 1"`},
		{Func1(func(x int) (float64, error) { return math.NaN(), nil }), `1`, `error: result: NaN cannot be written as JSON`},
		{Func1(func(x int) (map[string]float64, error) { return map[string]float64{"b": 2, "a": 0.5}, nil }), `1`, `{"a":0.5,"b":2.0}`},
		{Func1(func(x int) (string, error) { return "", errors.New("nope") }), `1`, `error: nope`},
	} {
		got, err := call(c.h, c.arg)
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(c.want, "error: ") && got != c.want || strings.HasPrefix(c.want, "error: ") && !strings.Contains(got, c.want[7:]) {
			t.Errorf("arg %s: got %s, want %s", c.arg, got, c.want)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	h := Func2(func(a, b int) (float64, error) {
		if a < 0 {
			return 0, errors.New("negative")
		}
		return math.Inf(1), nil
	})
	for args, kind := range map[string]string{`1`: "arguments", `1|"x"`: "arguments", `-1|1`: "error", `1|1`: "result"} {
		_, err := call(h, strings.Split(args, "|")...)
		if got := errorKind(err); got != kind {
			t.Errorf("args %s: kind %s (%v), want %s", args, got, err, kind)
		}
	}
}

func TestReflectHandlesAnySignature(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "v")
	for _, c := range []struct {
		fn   any
		args []string
		want string
	}{
		{func() {}, nil, "null"},
		{func(a, b int) int { return a * b }, []string{"6", "7"}, "42"},
		{func(ctx context.Context, s string) (string, error) { return s + ctx.Value(key{}).(string), nil }, []string{`"k"`}, `"kv"`},
		{func(sep string, xs ...int) string { return fmt.Sprint(xs) + sep }, []string{`"!"`, "1", "2"}, `"[1 2]!"`},
		{func(x int) error { return fmt.Errorf("bad %d", x) }, []string{"3"}, "error: bad 3"},
		{func(a, b int) int { return a }, []string{"1"}, "error: takes 2 arguments, got 1"},
		{func(a int) int { return a }, []string{"null"}, "error: argument 1: null is not a valid int"},
	} {
		out, err := CallJSON(ctx, Reflect(c.fn), c.args...)
		got := string(out)
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%T%v = %s, want %s", c.fn, c.args, got, c.want)
		}
	}
}

func TestGoworkerShapedFunctionsGetTheQueueAndDecodedArgs(t *testing.T) {
	for _, useNumber := range []bool{false, true} {
		var got []any
		var queue string
		reg := NewRegistry()
		reg.Register("C", func(q string, args ...interface{}) error { queue, got = q, args; return nil })
		h, _ := reg.Lookup("C")
		ctx := withJob(context.Background(), Job{Queue: "q1", Class: "C"})
		args := Args{vals: [][]byte{[]byte(`9007199254740993`), []byte(`"s"`), []byte(`{"k":[1]}`)}, useNumber: useNumber}
		if _, err := h.Call(ctx, args, nil); err != nil {
			t.Fatal(err)
		}
		want := "[9.007199254740992e+15 s map[k:[1]]]"
		if useNumber {
			want = "[9007199254740993 s map[k:[1]]]"
		}
		if queue != "q1" || fmt.Sprint(got) != want {
			t.Errorf("useNumber=%v: queue %q args %v, want %s", useNumber, queue, got, want)
		}
	}
}

func TestRegistryRejectsProgrammingErrors(t *testing.T) {
	reg := NewRegistry()
	reg.Handle("a", Func0(func() (int, error) { return 1, nil }))
	for name, f := range map[string]func(){
		"duplicate": func() { reg.Handle("a", Func0(func() (int, error) { return 1, nil })) },
		"empty":     func() { reg.Handle("", Func0(func() (int, error) { return 1, nil })) },
		"nil":       func() { reg.Register("b", nil) },
		"not func":  func() { Reflect(42) },
		"bad shape": func() { Reflect(func() (int, int) { return 0, 0 }) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestWeightedPollOrderFollowsTheWeights(t *testing.T) {
	qs, err := ParseQueues("high=2,low=1")
	if err != nil {
		t.Fatal(err)
	}
	w := &Worker{cfg: Config{Queues: qs}, rng: rand.New(rand.NewPCG(1, 2)), bases: []string{"high", "low"},
		keys: protocol.NewKeys("")}
	w.setShards(1)
	first := map[string]int{}
	const rounds = 30000
	for range rounds {
		order := w.pollOrder()
		if len(order) != 2 || order[0] == order[1] {
			t.Fatalf("order %v", order)
		}
		first[order[0]]++
	}
	// goworker's expanded list [high high low], shuffled, puts high first
	// with probability 2/3; so must this.
	if p := float64(first["high"]) / rounds; math.Abs(p-2.0/3) > 0.015 {
		t.Errorf("high first in %.3f of rounds, want 2/3", p)
	}
	strict := &Worker{cfg: Config{Queues: []Queue{{Name: "a"}, {Name: "b"}}}, bases: []string{"a", "b"}, keys: protocol.NewKeys("")}
	strict.setShards(1)
	if got := strict.pollOrder(); fmt.Sprint(got) != "[a b]" {
		t.Errorf("strict order %v", got)
	}
}

func TestShardsOfAQueueAreServedTogetherFromARandomOne(t *testing.T) {
	k := protocol.NewKeys("")
	w := &Worker{cfg: Config{Queues: []Queue{{Name: "a"}, {Name: "b"}}}, bases: []string{"a", "b"}, keys: k,
		rng: rand.New(rand.NewPCG(1, 2))}
	w.setShards(3)
	a, b := k.Shards("a", 3), k.Shards("b", 3)
	if fmt.Sprint(w.queues) != fmt.Sprint(append(append([]string{}, a...), b...)) {
		t.Fatalf("queues %v, want the shards of a then of b", w.queues)
	}
	firsts := map[string]bool{}
	for range 100 {
		order := w.pollOrder()
		if len(order) != 6 || !sameSet(order[:3], a) || !sameSet(order[3:], b) {
			t.Fatalf("order %v: a's shards, then b's", order)
		}
		// Rotated: each base's shards in their order, from a random one on.
		i := slices.Index(a, order[0])
		if fmt.Sprint(order[:3]) != fmt.Sprint(append(append([]string{}, a[i:]...), a[:i]...)) {
			t.Fatalf("order %v is not a rotation of %v", order[:3], a)
		}
		firsts[order[0]] = true
	}
	if len(firsts) != 3 {
		t.Errorf("polls start at %v only: every shard should come first now and then", firsts)
	}
	if w.base(a[1]) != "a" || w.base("a") != "a" || w.base("other") != "other" {
		t.Errorf("base of %q = %q", a[1], w.base(a[1]))
	}
}

func sameSet(x, y []string) bool {
	x, y = slices.Clone(x), slices.Clone(y)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
