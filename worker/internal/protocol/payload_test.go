package protocol

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

func TestDecodePayloadRefusesAmbiguousAndTrailingInput(t *testing.T) {
	cases := []struct{ name, payload, reason string }{
		{"duplicate class", `{"class":"a","class":"b","args":[]}`, `the name "class" comes twice in the payload`},
		{"duplicate args", `{"class":"a","args":[1],"args":[2]}`, `the name "args" comes twice`},
		{"duplicate unknown key", `{"class":"a","args":[],"x":1,"x":2}`, `the name "x" comes twice`},
		{"duplicate in gomap", `{"class":"a","args":[],"gomap":{"v":1,"batch":"b","batch":"c","start":0,"items":[]}}`, `the name "batch" comes twice in "gomap"`},
		{"trailing garbage", `{"class":"f","args":[]}garbage`, "after the JSON object"},
		{"two objects", `{"class":"f","args":[]}{"class":"g","args":[]}`, "after the JSON object"},
		{"invalid UTF-8 in class", "{\"class\":\"f\xff\",\"args\":[]}", "invalid UTF-8"},
		{"invalid UTF-8 in an argument", "{\"class\":\"f\",\"args\":[\"\xc3\"]}", "invalid UTF-8"},
		{"long batch id", `{"class":"f","args":[],"gomap":{"v":1,"batch":"` + strings.Repeat("b", 129) + `","start":0,"items":[]}}`, `the "batch" id is 129 bytes, more than 128`},
		{"invalid UTF-8 in an item", "{\"class\":\"f\",\"args\":[],\"gomap\":{\"v\":1,\"batch\":\"b\",\"start\":0,\"items\":[[\"\xff\"]]}}", "invalid UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodePayload([]byte(c.payload))
			if !errors.Is(err, ErrPayload) || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("DecodePayload(%q) = %v, want ErrPayload saying %q", c.payload, err, c.reason)
			}
		})
	}
}

func TestDecodePayloadKeepsItsFastPathsInsideValues(t *testing.T) {
	// Duplicate names inside arguments and items are the function's business,
	// as before; whitespace after the object is no trailing data.
	p := `{"class":"f","args":[{"a":1,"a":2}],"gomap":{"v":1,"batch":"b","start":3,"items":[{"k":1,"k":2},[1]]}}` + " \n"
	got, err := DecodePayload([]byte(p))
	if err != nil {
		t.Fatal(err)
	}
	if got.Class != "f" || string(got.Args) != `[{"a":1,"a":2}]` || got.Chunk.Start != 3 || len(got.Chunk.Items) != 2 ||
		string(got.Chunk.Items[0]) != `{"k":1,"k":2}` {
		t.Errorf("decoded %+v %+v", got, got.Chunk)
	}
}

func TestDuplicateNameErrorQuotesALongNameShortly(t *testing.T) {
	name := strings.Repeat("n", 100_000)
	_, err := DecodePayload([]byte(`{"class":"f","` + name + `":1,"` + name + `":2}`))
	if err == nil || len(err.Error()) > 1000 {
		t.Errorf("error of %d bytes: %.200v", len(fmt.Sprint(err)), err)
	}
}

func TestAppendTextTruncatesAndReplacesInvalidUTF8(t *testing.T) {
	cases := []struct {
		s            string
		total, limit int
		want         string
	}{
		{"abc", 3, 10, `"abc"`},
		{"a\xffb", 3, 10, `"a` + "\uFFFD" + `b"`},
		{"abcdef", 6, 4, `"abcd…[truncated: 6 bytes in all]"`},
		{"abc", 50_000_000, 10, `"abc…[truncated: 50000000 bytes in all]"`},
		// A cut in the middle of "é" (2 bytes) drops its first byte rather than show U+FFFD.
		{"aé", 3, 2, `"a…[truncated: 3 bytes in all]"`},
		{"ab\"\n", 4, 10, `"ab\"\n"`},
	}
	for _, c := range cases {
		got := string(AppendText([]byte("x"), c.s, c.total, c.limit))
		if got != "x"+c.want {
			t.Errorf("AppendText(%q, %d, %d) = %s, want x%s", c.s, c.total, c.limit, got, c.want)
		}
		if !jsontext.Value(got[1:]).IsValid() {
			t.Errorf("AppendText(%q) = %s: not a valid JSON string", c.s, got)
		}
	}
	if got := Sanitize("ok\xfe", 10); got != "ok\uFFFD" {
		t.Errorf("Sanitize = %q", got)
	}
	if got := Sanitize(strings.Repeat("é", 10), 5); got != "éé…[truncated: 20 bytes in all]" || !utf8.ValidString(got) {
		t.Errorf("Sanitize = %q", got)
	}
}

// chunkPayload is a chunk of n items, each an object of three floats and a
// string, as a batch of records would send it.
func chunkPayload(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"class":"f","args":[],"gomap":{"v":1,"batch":"0123456789abcdef0123456789abcdef","start":0,"items":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `[{"lat":%d.25,"lon":-%d.5,"alt":3.0,"name":"point %d"}]`, i, i, i)
	}
	b.WriteString("]}}")
	return []byte(b.String())
}

func BenchmarkDecodePayloadChunk(b *testing.B) {
	p := chunkPayload(10_000)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodePayload(p); err != nil {
			b.Fatal(err)
		}
	}
}

func TestValidJSON(t *testing.T) {
	for s, want := range map[string]bool{
		`{"a":1}`:             true,
		` {"a":1,"a":2} `:     true,
		`[1,"x"]`:             true,
		`{"a":1}x`:            false,
		`{"a":1}{"a":1}`:      false,
		"\"\xff\"":            false,
		`not json`:            false,
		``:                    false,
		`{"a":[1,2,{"b":3}]}`: true,
	} {
		if got := ValidJSON(s); got != want {
			t.Errorf("ValidJSON(%q) = %v, want %v", s, got, want)
		}
	}
}
