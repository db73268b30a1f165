package samples_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/samples"
)

func TestCountPrimesMatchesTheReference(t *testing.T) {
	for n, want := range map[int64]int64{-5: 0, 0: 0, 1: 0, 2: 1, 10: 4, 100: 25, 200000: 17984, 202000: 18148} {
		if got, err := samples.CountPrimes(n); err != nil || got != want {
			t.Errorf("countprimes(%d) = %d, %v; want %d", n, got, err, want)
		}
	}
}

func TestSampleAdd(t *testing.T) {
	reg := worker.NewRegistry()
	samples.Register(reg)
	h, ok := reg.Lookup("sampleadd")
	if !ok {
		t.Fatal("sampleadd is not registered")
	}
	for _, c := range []struct{ a, b, want string }{
		{"1", "2", "3"}, {"-5", "3", "-2"}, {"1.5", "2", "3.5"}, {"1.0", "2", "3.0"}, {"1e3", "1", "1001.0"},
		{"9007199254740993", "0", "9007199254740993"}, {"9223372036854775807", "1", "error"},
		{"-9223372036854775808", "-1", "error"}, {`"1"`, "2", "error"}, {"null", "2", "error"},
		{"9223372036854775808", "0", "error"}, {"0", "-9223372036854775809", "error"}, {"18446744073709551615", "1.5", "1.8446744073709552e+19"},
	} {
		out, err := worker.CallJSON(context.Background(), h, c.a, c.b)
		if got := string(out); (c.want == "error") != (err != nil) || (err == nil && got != c.want) {
			t.Errorf("sampleadd(%s, %s) = %s, %v; want %s", c.a, c.b, got, err, c.want)
		}
	}
}

func TestSampleDiv(t *testing.T) {
	if _, err := samples.Div(1, 0); !errors.Is(err, samples.ErrDivisionByZero) {
		t.Errorf("samplediv(1, 0) = %v", err)
	}
	if q, err := samples.Div(7, -2); err != nil || q != -3 {
		t.Errorf("samplediv(7, -2) = %d, %v", q, err)
	}
}

func TestSampleWords(t *testing.T) {
	w, err := samples.Words("héllo  big\tworld")
	if err != nil || w.Words != 3 || w.Chars != 16 || w.Upper != "HÉLLO  BIG\tWORLD" {
		t.Errorf("samplewords = %+v, %v", w, err)
	}
}

func TestEverySampleDescribesItself(t *testing.T) {
	reg := worker.NewRegistry()
	samples.Register(reg)
	sigs := reg.Signatures()
	for _, name := range reg.Names() {
		sig, ok := sigs[name]
		if !ok || sig.Doc == "" {
			t.Errorf("%s: no signature or no doc: %+v", name, sig)
			continue
		}
		for _, p := range sig.Params {
			if p.Name == "" || p.Type == "" {
				t.Errorf("%s: parameter without name or type: %+v", name, sig.Params)
			}
		}
	}
	for name, want := range map[string]string{
		"sampleadd":   "{[{a number} {b number}] false number true a + b: integers stay integers (an int64 overflow is an error), otherwise floats.}",
		"samplesleep": "{[{seconds float64}] false float64 true Waits, then returns seconds; stops early when the job is cancelled.}",
		"sampleecho":  "{[{args any}] true []any false Its arguments as a JSON array, exactly as they arrived.}",
		"samplewords": "{[{text string}] false samples.WordStats true A record of the text's word and character counts and its upper-case form.}",
	} {
		if got := fmt.Sprint(sigs[name]); got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}
