package protocol

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestDecodeColumnsSplitsEachColumnIntoItsValues(t *testing.T) {
	p := `{"class":"f","args":[],"gomap":{"v":2,"batch":"b","start":7,` +
		`"columns":[[1, -2.5e3,null],["a\"],[", {"k":[1,2]}, true],[[1,[2]],[],{}]],"limit_ms":9}}`
	got, err := DecodePayload([]byte(p))
	if err != nil {
		t.Fatal(err)
	}
	c := got.Chunk
	want := [][]string{{`1`, `-2.5e3`, `null`}, {`"a\"],["`, `{"k":[1,2]}`, `true`}, {`[1,[2]]`, `[]`, `{}`}}
	if len(c.Columns) != len(want) || len(c.Items) != 3 || c.Start != 7 || c.LimitMS != 9 || c.Version != 2 {
		t.Fatalf("decoded %+v", c)
	}
	for k, col := range want {
		for i, v := range col {
			if string(c.Columns[k][i]) != v {
				t.Errorf("column %d row %d = %s, want %s", k, i, c.Columns[k][i], v)
			}
		}
	}
	for i, it := range c.Items {
		if it != nil {
			t.Errorf("item %d of a columnar chunk = %s, want nil (the values are in Columns)", i, it)
		}
	}
}

func TestDecodeColumnsRefusesMalformedColumns(t *testing.T) {
	chunk := func(body string) string {
		return `{"class":"f","args":[],"gomap":{"v":2,"batch":"b","start":0,` + body + `}}`
	}
	cases := []struct{ name, payload, reason string }{
		{"uneven", chunk(`"columns":[[1,2],[3]]`), `column 1 of "columns" has 1 values, column 0 has 2`},
		{"not an array", chunk(`"columns":{"a":[1]}`), `"columns" is {, not an array`},
		{"a column not an array", chunk(`"columns":[[1],5]`), `column 1 of "columns" is number, not an array`},
		{"no column", chunk(`"columns":[]`), `"columns" has no column`},
		{"items and columns", chunk(`"items":[[1]],"columns":[[1]]`), `"items" or "columns", not both`},
		{"columns and items", chunk(`"columns":[[1]],"items":[[1]]`), `"items" or "columns", not both`},
		{"invalid JSON in a column", chunk(`"columns":[[1,]]`), `invalid character`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodePayload([]byte(c.payload))
			if !errors.Is(err, ErrPayload) || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("DecodePayload(%s) = %v, want ErrPayload saying %q", c.payload, err, c.reason)
			}
		})
	}
}

func TestDecodeColumnsCountsTooManyRowsAndKeepsNone(t *testing.T) {
	p := `{"class":"f","args":[],"gomap":{"v":2,"batch":"b","start":0,"columns":[[1,2,3,"x,y",[4,5]],[1,2,3,4,5]]}}`
	got, err := DecodePayloadMax([]byte(p), 4)
	if err != nil {
		t.Fatal(err)
	}
	if c := got.Chunk; c.TooMany != 5 || c.Items != nil || c.Columns != nil {
		t.Errorf("TooMany %d, %d items, %d columns; want 5, none, none", c.TooMany, len(c.Items), len(c.Columns))
	}
	got, err = DecodePayloadMax([]byte(p), 5)
	if err != nil || got.Chunk.TooMany != 0 || len(got.Chunk.Items) != 5 {
		t.Errorf("at the limit: %+v, %v", got.Chunk, err)
	}
}

func TestDecodeColumnsEmptyChunk(t *testing.T) {
	got, err := DecodePayload([]byte(`{"class":"f","args":[],"gomap":{"v":2,"batch":"b","start":0,"columns":[[],[]]}}`))
	if err != nil || len(got.Chunk.Items) != 0 || len(got.Chunk.Columns) != 2 {
		t.Fatalf("%+v, %v", got.Chunk, err)
	}
}

func columnarPayload(n int) []byte {
	var a, b strings.Builder
	for i := range n {
		if i > 0 {
			a.WriteByte(',')
			b.WriteByte(',')
		}
		a.WriteString(strconv.Itoa(i))
		b.WriteString(strconv.Itoa(i * 7919 % 1000003))
	}
	return []byte(`{"class":"sampleadd","args":[],"gomap":{"v":2,"batch":"b","start":0,"columns":[[` +
		a.String() + `],[` + b.String() + `]]}}`)
}

func rowPayload(n int) []byte {
	var s strings.Builder
	for i := range n {
		if i > 0 {
			s.WriteByte(',')
		}
		s.WriteString("[" + strconv.Itoa(i) + "," + strconv.Itoa(i*7919%1000003) + "]")
	}
	return []byte(`{"class":"sampleadd","args":[],"gomap":{"v":1,"batch":"b","start":0,"items":[` + s.String() + `]}}`)
}

func benchDecode(b *testing.B, p []byte) {
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodePayload(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeColumns10k and BenchmarkDecodeRows10k: a chunk of 10,000
// sampleadd pairs in either form.
func BenchmarkDecodeColumns10k(b *testing.B) { benchDecode(b, columnarPayload(10_000)) }
func BenchmarkDecodeRows10k(b *testing.B)    { benchDecode(b, rowPayload(10_000)) }
