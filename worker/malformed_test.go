package worker_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
)

// failedEntry is an entry of the failed list.
type failedEntry struct {
	Payload   jsontext.Value `json:"payload"`
	Exception string         `json:"exception"`
	Error     string         `json:"error"`
	Worker    string         `json:"worker"`
	Queue     string         `json:"queue"`
}

// malformed is one malformed payload and what its failed entry must say.
type malformed struct {
	name      string
	payload   string
	exception string
	reason    string // in the entry's error
	// The entry's payload: the payload as it was when want is "", else a
	// JSON string starting with want.
	want      string
	truncated bool // the string ends with the truncation marker
}

// failedEntries waits for n entries on the failed list and decodes them.
func (e *env) failedEntries(n int) []failedEntry {
	e.t.Helper()
	e.eventually(fmt.Sprintf("%d failed entries", n), func() bool { return e.llen(e.keys.Failed()) >= int64(n) })
	raw, err := e.rdb.LRange(e.ctx, e.keys.Failed(), 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	if len(raw) != n {
		e.t.Fatalf("%d failed entries, want %d", len(raw), n)
	}
	out := make([]failedEntry, n)
	for i, r := range raw {
		if !utf8.ValidString(r) || !jsontext.Value(r).IsValid(jsontext.AllowDuplicateNames(true)) {
			e.t.Errorf("entry %d is not valid JSON: %.300q", i, r)
		}
		if err := json.Unmarshal([]byte(r), &out[i]); err != nil {
			e.t.Fatalf("entry %.300q: %v", r, err)
		}
	}
	return out
}

func (c malformed) check(t *testing.T, f failedEntry) {
	t.Helper()
	if f.Exception != c.exception || !strings.Contains(f.Error, c.reason) || f.Queue != "q" {
		t.Errorf("%s: entry says %s %q (queue %q), want %s with %q", c.name, f.Exception, f.Error, f.Queue, c.exception, c.reason)
	}
	if c.want == "" {
		if string(f.Payload) != c.payload {
			t.Errorf("%s: entry payload %.200s, want the payload as it was, %.200s", c.name, f.Payload, c.payload)
		}
		return
	}
	var s string
	if err := json.Unmarshal(f.Payload, &s); err != nil {
		t.Errorf("%s: entry payload %.200s is not a JSON string: %v", c.name, f.Payload, err)
		return
	}
	if !strings.HasPrefix(s, c.want) {
		t.Errorf("%s: entry payload %.200q, want it to start with %.200q", c.name, s, c.want)
	}
	if !c.truncated {
		if want := strings.ToValidUTF8(c.payload, "\uFFFD"); s != want {
			t.Errorf("%s: entry payload %.200q, want %.200q", c.name, s, want)
		}
		return
	}
	// The first FailedTextLimit bytes (none of these payloads has a
	// multi-byte character there to cut), then the marker.
	want := strings.ToValidUTF8(c.payload[:protocol.FailedTextLimit], "\uFFFD") + fmt.Sprintf("…[truncated: %d bytes in all]", len(c.payload))
	if s != want {
		t.Errorf("%s: entry payload of %d bytes ends %q; want %d bytes ending %q",
			c.name, len(s), s[max(0, len(s)-60):], len(want), want[len(want)-60:])
	}
}

func TestMalformedPayloadsKeepTheirReasonAndPayload(t *testing.T) {
	const limit = 256 << 10
	e := newEnv(t)
	reg := worker.NewRegistry()
	reg.Handle("add", worker.Func2(func(a, b int) (int, error) { return a + b, nil }))
	ran := make(chan string, 10)
	reg.Register("ok", func(_ string, args ...interface{}) error { ran <- fmt.Sprint(args...); return nil })

	// A job exactly at the limit runs; one byte more does not.
	atLimit := `{"class":"ok","args":["` + strings.Repeat("a", limit-len(`{"class":"ok","args":[""]}`)) + `"]}`
	overLimit := `{"class":"ok","args":["` + strings.Repeat("b", limit+1-len(`{"class":"ok","args":[""]}`)) + `"]}`
	if len(atLimit) != limit || len(overLimit) != limit+1 {
		t.Fatal("bad test payload sizes")
	}
	junkAtLimit := strings.Repeat("j", limit)
	huge := "\xff" + strings.Repeat("h", 3<<20) // 3 MiB, not JSON, invalid UTF-8 at once
	cases := []malformed{
		{"invalid UTF-8 in class", "{\"class\":\"ad\xffd\",\"args\":[1,2]}", "DecodeError", "invalid UTF-8",
			"{\"class\":\"ad\uFFFDd\",\"args\":[1,2]}", false},
		{"invalid UTF-8 in an argument", "{\"class\":\"add\",\"args\":[\"\xc3(\",2]}", "DecodeError", "invalid UTF-8",
			"{\"class\":\"add\",\"args\":[\"\uFFFD(\",2]}", false},
		{"invalid UTF-8 in a chunk item", "{\"class\":\"add\",\"args\":[],\"gomap\":{\"v\":1,\"batch\":\"b\",\"start\":0,\"items\":[[1,\"\xe2\x82\"]]}}",
			"DecodeError", "invalid UTF-8", "{\"class\":\"add\",\"args\":[],\"gomap\":{\"v\":1,\"batch\":\"b\",\"start\":0,\"items\":[[1,\"\uFFFD\"]]}}", false},
		{"duplicate class", `{"class":"ok","class":"add","args":[1,2]}`, "DecodeError", `the name "class" comes twice in the payload`, "", false},
		{"duplicate in gomap", `{"class":"add","args":[],"gomap":{"v":1,"batch":"b","start":0,"start":5,"items":[[1,2]]}}`,
			"DecodeError", `the name "start" comes twice in "gomap"`, "", false},
		{"trailing garbage", `{"class":"ok","args":[]}garbage`, "DecodeError", "more data after the JSON object",
			`{"class":"ok","args":[]}garbage`, false},
		{"two objects", `{"class":"ok","args":[]}{"class":"add","args":[1,2]}`, "DecodeError", "more data after the JSON object",
			`{"class":"ok","args":[]}{"class":"add","args":[1,2]}`, false},
		{"non-JSON at the limit", junkAtLimit, "DecodeError", "invalid character", strings.Repeat("j", 1000), true},
		{"one byte over the limit", overLimit, "PayloadTooLarge",
			fmt.Sprintf("the payload is %d bytes, more than the %d bytes this worker takes (-max-payload)", limit+1, limit),
			`{"class":"ok","args":["bbbb`, true},
		{"huge non-JSON", huge, "PayloadTooLarge", fmt.Sprintf("the payload is %d bytes", len(huge)), "\uFFFDhhhh", true},
	}

	// Queued before the worker starts: reserved by polls (the reserve script).
	for _, c := range cases {
		e.push("q", c.payload)
	}
	e.push("q", atLimit, `{"class":"ok","args":["next"]}`)
	cfg := e.config("hostm")
	cfg.Queues = []worker.Queue{{Name: "q"}}
	cfg.Concurrency = 1 // the failed entries in the order of the cases
	cfg.MaxPayload = limit
	w, _ := e.run(cfg, reg)
	for _, want := range []string{strings.Repeat("a", 100), "next"} {
		select {
		case got := <-ran:
			if !strings.HasPrefix(got, want) {
				t.Errorf("ran %.100q, want %.100q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the worker did not run the good jobs after the malformed ones")
		}
	}
	entries := e.failedEntries(len(cases))
	for i, c := range cases {
		c.check(t, entries[i])
	}

	// Pushed to an idle worker: taken by its blocking wait, which reads the
	// job whole.
	idle := []malformed{
		{"huge non-JSON, to an idle worker", huge, "PayloadTooLarge", fmt.Sprintf("the payload is %d bytes", len(huge)), "\uFFFDhhhh", true},
		{"trailing garbage, to an idle worker", `{"class":"ok","args":[]} x`, "DecodeError", "more data after the JSON object",
			`{"class":"ok","args":[]} x`, false},
	}
	for i, c := range idle {
		e.eventually("the worker is idle, blocked on its queue", func() bool { return blockedClients(t, e.rdb) == 1 })
		e.push("q", c.payload)
		c.check(t, e.failedEntries(len(cases) + i + 1)[len(cases)+i])
	}
	e.push("q", `{"class":"ok","args":["last"]}`)
	select {
	case got := <-ran:
		if got != "last" {
			t.Errorf("ran %q, want last", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not run a good job after the oversize one")
	}
	e.eventually("nothing left in flight", func() bool { return e.llen(e.keys.Inflight("q", w.ID())) == 0 })
	if got := e.get(e.keys.Stat("failed")); got != fmt.Sprint(len(cases)+len(idle)) {
		t.Errorf("stat:failed = %s, want %d", got, len(cases)+len(idle))
	}
}

func TestFailedEntryMessagesAreBounded(t *testing.T) {
	e := newEnv(t)
	reg := worker.NewRegistry()
	reg.Handle("f", worker.Func1(func(s string) (int, error) { return 0, fmt.Errorf("refused %s", s) }))
	cfg := e.config("hostb")
	cfg.Queues = []worker.Queue{{Name: "q"}}
	_, _ = e.run(cfg, reg)
	// An unknown class of 1 MB, quoted in the NameError message, and an
	// error message of 1 MB with invalid UTF-8 in it.
	long := strings.Repeat("c", 1<<20)
	e.push("q", `{"class":"`+long+`","args":[]}`, `{"class":"f","args":["\u00ff`+long+`"]}`)
	for i, f := range e.failedEntries(2) {
		if len(f.Error) > 9<<10 || !strings.HasSuffix(f.Error, " bytes in all]") || !utf8.ValidString(f.Error) {
			t.Errorf("entry %d: error of %d bytes ends %q, want it cut at 8 KiB and marked", i, len(f.Error), f.Error[max(0, len(f.Error)-50):])
		}
	}
}

func TestWorkerRecordPublishesMaxPayload(t *testing.T) {
	e := newEnv(t)
	reg, _ := recorder("job")
	for _, limit := range []int{0, 1 << 20} {
		cfg := e.config("hostr")
		cfg.MaxPayload = limit
		w, stop := e.run(cfg, reg)
		rec, err := e.rdb.HGet(e.ctx, e.keys.Processes(), w.ID()).Result()
		if err != nil {
			t.Fatal(err)
		}
		var p protocol.Process
		if err := json.Unmarshal([]byte(rec), &p); err != nil {
			t.Fatal(err)
		}
		want := limit
		if want == 0 {
			want = protocol.DefaultMaxPayload
		}
		if p.MaxPayload != want {
			t.Errorf("MaxPayload %d: record says max_payload %d, want %d: %s", limit, p.MaxPayload, want, rec)
		}
		stop()
	}
}

func TestMaxPayloadFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int // 0: an error
	}{
		{nil, protocol.DefaultMaxPayload},
		{[]string{"-max-payload", "1000"}, 1000},
		{[]string{"-max-payload", "0"}, 0},
		{[]string{"-max-payload", "-5"}, 0},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fl := worker.BindFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := fl.Config(func(string) string { return "" })
		switch {
		case c.want == 0 && !errors.Is(err, worker.ErrConfig):
			t.Errorf("%v: %v, want a config error", c.args, err)
		case c.want != 0 && (err != nil || cfg.MaxPayload != c.want):
			t.Errorf("%v: MaxPayload %d (%v), want %d", c.args, cfg.MaxPayload, err, c.want)
		}
	}
}
