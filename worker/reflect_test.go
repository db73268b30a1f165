package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
)

type tagged struct {
	Name  string   `json:"name"`
	Tags  []string `json:"tags,omitempty"`
	Score *float64 `json:"score"`
	skip  int
}

type celsius float64

// upper is a string type with its own JSON form: its methods must win over
// the fast path of its kind, both ways.
type upper string

func (u *upper) UnmarshalText(b []byte) error { *u = upper(strings.ToUpper(string(b))); return nil }
func (u upper) MarshalText() ([]byte, error)  { return []byte("<" + string(u) + ">"), nil }

func TestReflectDecodesAndEncodesEveryKind(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "ctx")
	for _, c := range []struct {
		name string
		fn   any
		args []string
		want string // the result, or "error: " and a substring of the error
	}{
		{"int", func(a int, b int64) int64 { return int64(a) + b }, []string{"-2", "9007199254740993"}, "9007199254740991"},
		{"int8 range", func(a int8) int8 { return a }, []string{"128"}, "error: argument 1: 128 is out of range for int8"},
		{"int64 range", func(a int64) int64 { return a }, []string{"9223372036854775808"}, "error: out of range for int64"},
		{"int from float", func(a int) int { return a }, []string{"2.0"}, "error: argument 1: want int, got 2.0"},
		{"int from string", func(a, b int) int { return a }, []string{"1", `"2"`}, `error: argument 2: want int, got "2"`},
		{"uint negative", func(a uint16) uint16 { return a }, []string{"-1"}, "error: want uint16, got -1"},
		{"uint range", func(a uint8) uint8 { return a }, []string{"256"}, "error: 256 is out of range for uint8"},
		{"uint max", func(a uint64) uint64 { return a }, []string{"18446744073709551615"}, "18446744073709551615"},
		{"float", func(a float64, b float32) float64 { return a + float64(b) }, []string{"1", "0.5"}, "1.5"},
		{"float whole", func(a float64) float64 { return a }, []string{"2"}, "2.0"},
		{"float32 result", func() float32 { return 0.1 }, nil, "0.1"},
		{"float NaN", func() float64 { return math.NaN() }, nil, "error: result: NaN cannot be written as JSON"},
		{"float range", func(a float32) float32 { return a }, []string{"1e39"}, "error: 1e39 is out of range for float32"},
		{"float from bool", func(a float64) float64 { return a }, []string{"true"}, "error: want float64, got true"},
		{"named float", func(a celsius) celsius { return a * 2 }, []string{"1"}, "2.0"},
		{"string escapes", func(s string) string { return s }, []string{`"a\"b\\c\u00e9\n/\ud83d\ude00"`}, `"a\"b\\cé\n/😀"`},
		{"string plain", func(s string) int { return len(s) }, []string{`"héllo"`}, "6"},
		{"string from number", func(s string) string { return s }, []string{"5"}, "error: argument 1: want a string, got 5"},
		{"string result escapes", func() string { return "<\"\x01\">" }, nil, `"<\"\u0001\">"`},
		{"bool", func(b bool) bool { return !b }, []string{"false"}, "true"},
		{"bool from int", func(b bool) bool { return b }, []string{"1"}, "error: want a bool, got 1"},
		{"methods win", func(u upper) upper { return u + "!" }, []string{`"shout"`}, `"<SHOUT!>"`},
		{"null int", func(a int) int { return a }, []string{"null"}, "error: argument 1: null is not a valid int (None and NaN travel as null"},
		{"null string", func(a, s string) string { return s }, []string{`""`, "null"}, "error: argument 2: null is not a valid string"},
		{"null bool", func(b bool) bool { return b }, []string{"null"}, "error: null is not a valid bool"},
		{"null struct", func(x tagged) string { return x.Name }, []string{"null"}, "error: null is not a valid worker.tagged"},
		{"null array", func(x [2]int) int { return x[0] }, []string{"null"}, "error: null is not a valid [2]int"},
		{"null pointer", func(x *int) bool { return x == nil }, []string{"null"}, "true"},
		{"null slice", func(x []int) bool { return x == nil }, []string{"null"}, "true"},
		{"null map", func(x map[string]int) int { return len(x) }, []string{"null"}, "0"},
		{"null any", func(x any) string { return fmt.Sprint(x) }, []string{"null"}, `"<nil>"`},
		{"struct", func(x tagged) tagged { x.Name += "!"; return x }, []string{`{"name":"n","tags":["a"],"score":0.5,"skip":3}`},
			`{"name":"n!","tags":["a"],"score":0.5}`},
		{"struct result", func(n string) tagged { return tagged{Name: n, skip: 1} }, []string{`"x"`}, `{"name":"x","score":null}`},
		{"struct mismatch", func(x tagged) string { return x.Name }, []string{`{"name":5}`}, "error: argument 1: json: cannot unmarshal number"},
		{"slice", func(xs []float64) []float64 { return append(xs, 3) }, []string{"[1,2.5]"}, "[1.0,2.5,3.0]"},
		{"map", func(m map[string]int) map[string]int { m["z"] = len(m); return m }, []string{`{"b":1,"a":2}`}, `{"a":2,"b":1,"z":2}`},
		{"any", func(x any) string { return fmt.Sprintf("%T", x) }, []string{"1"}, `"float64"`},
		{"variadic", func(sep string, xs ...int) string { return fmt.Sprint(xs) + sep }, []string{`"!"`, "1", "2"}, `"[1 2]!"`},
		{"variadic none", func(sep string, xs ...int) bool { return xs == nil }, []string{`"!"`}, "true"},
		{"variadic bad", func(xs ...int) int { return len(xs) }, []string{"1", "2", `"x"`}, `error: argument 3: want int, got "x"`},
		{"variadic only", func(xs ...string) int { return len(xs) }, nil, "0"},
		{"variadic too few", func(a, b int, xs ...int) int { return a }, []string{"1"}, "error: takes 2 arguments, got 1"},
		{"ctx", func(ctx context.Context, s string) (string, error) { return s + ctx.Value(key{}).(string), nil }, []string{`"k-"`}, `"k-ctx"`},
		{"ctx only", func(ctx context.Context) string { return ctx.Value(key{}).(string) }, nil, `"ctx"`},
		{"ctx variadic", func(ctx context.Context, xs ...float64) int { return len(xs) }, []string{"1", "2"}, "2"},
		{"error only", func(x int) error { return fmt.Errorf("bad %d", x) }, []string{"3"}, "error: bad 3"},
		{"nil error", func(x int) error { return nil }, []string{"3"}, "null"},
		{"result and error", func(x int) (int, error) { return x, errors.New("no") }, []string{"3"}, "error: no"},
		{"too many", func(a int) int { return a }, []string{"1", "2"}, "error: takes 1 argument, got 2"},
	} {
		out, err := CallJSON(ctx, Reflect(c.fn), c.args...)
		got := string(out)
		if err != nil {
			got = "error: " + err.Error()
		}
		wantErr, isErr := strings.CutPrefix(c.want, "error: ")
		if isErr && (err == nil || !strings.Contains(err.Error(), wantErr)) || !isErr && got != c.want {
			t.Errorf("%s: %T%v = %s, want %s", c.name, c.fn, c.args, got, c.want)
		}
	}
}

func TestReflectArgumentErrorsNameTheArgument(t *testing.T) {
	h := Reflect(func(ctx context.Context, a int, b string, rest ...bool) int { return a })
	for args, index := range map[string]int{`x|"s"`: 0, `1|2`: 1, `1|"s"|true|3`: 3, `1`: -1} {
		_, err := CallJSON(context.Background(), h, strings.Split(args, "|")...)
		var ae *ArgumentError
		if !errors.As(err, &ae) || ae.Index != index {
			t.Errorf("args %s: %v, want an ArgumentError of index %d", args, err, index)
		}
	}
}

// A frame goes back to the pool after every call: nothing of one call may
// show in the next, whatever failed, and concurrent calls keep their own.
func TestReflectFramesCarryNothingOver(t *testing.T) {
	h := Reflect(func(m map[string]int, p *int, xs ...string) string {
		return fmt.Sprint(len(m), p != nil, xs)
	})
	for _, c := range []struct{ args, want string }{
		{`{"a":1,"b":2}|5|"x"`, `"2 true [x]"`},
		{`{"c":3}|null`, `"1 false []"`},
		{`{"d":4}|"bad"`, "error"},
		{`null|null`, `"0 false []"`},
	} {
		out, err := CallJSON(context.Background(), h, strings.Split(c.args, "|")...)
		if got := string(out); err != nil && c.want != "error" || err == nil && got != c.want {
			t.Errorf("%s: %s, %v; want %s", c.args, got, err, c.want)
		}
	}
	add := Reflect(func(a, b int) int { return a + b })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 500 {
				out, err := CallJSON(context.Background(), add, fmt.Sprint(i), fmt.Sprint(j))
				if want := fmt.Sprint(i + j); err != nil || string(out) != want {
					t.Errorf("%d+%d = %s, %v", i, j, out, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestHandlersDescribeTheirSignature(t *testing.T) {
	reg := NewRegistry()
	reg.Handle("f0", Func0(func() (map[string]any, error) { return nil, nil }))
	reg.Handle("f2", Func2(func(a []string, b map[string]int) (float64, error) { return 0, nil }))
	reg.Handle("r", Reflect(func(ctx context.Context, p tagged, xs ...any) error { return nil }))
	reg.Handle("rnone", Reflect(func() {}))
	reg.Handle("named", Describe(Reflect(func(lat, lon float64) (celsius, error) { return 0, nil }),
		Signature{Doc: "temperature at a place", Params: []Param{{Name: "lat"}, {Name: "lon"}}}))
	reg.Handle("bare", HandlerFunc(func(_ context.Context, _ Args, dst []byte) ([]byte, error) { return dst, nil }))
	reg.Register("gw", func(string, ...interface{}) error { return nil })
	want := map[string]string{
		"f0":    `{[] false map[string]any true }`,
		"f2":    `{[{ []string} { map[string]int}] false float64 true }`,
		"r":     `{[{ worker.tagged} { any}] true  true }`,
		"rnone": `{[] false  false }`,
		"named": `{[{lat float64} {lon float64}] false worker.celsius true temperature at a place}`,
		"gw":    `{[{ any}] true  true }`,
	}
	sigs := reg.Signatures()
	if len(sigs) != len(want) {
		t.Errorf("signatures of %d functions, want %d (a bare HandlerFunc has none): %v", len(sigs), len(want), sigs)
	}
	for name, w := range want {
		if got := fmt.Sprint(sigs[name]); got != w {
			t.Errorf("%s: %s, want %s", name, got, w)
		}
	}
	sigs["f2"].Params[0].Type = "changed"
	if again := reg.Signatures()["f2"]; again.Params[0].Type != "[]string" {
		t.Error("editing a returned signature changed the handler's")
	}
}
