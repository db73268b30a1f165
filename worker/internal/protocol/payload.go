package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
)

// ErrPayload marks a payload that cannot be run: not JSON, not an object, no
// class, or a malformed gomap chunk.
var ErrPayload = errors.New("malformed payload")

// Payload is a decoded Resque payload: {"class": …, "args": […]}, plus the
// "gomap" object when it is a chunk of a batch.
type Payload struct {
	Class string
	Args  []byte // raw JSON of "args"; nil when the key is absent
	Chunk *Chunk // nil for a plain Resque job
}

// Chunk is the "gomap" object of a chunk payload.
type Chunk struct {
	Version int64
	Batch   string
	Start   int64
	Items   [][]byte // raw JSON of each item; sub-slices of the payload. A columnar chunk has a nil entry per row
	// Columns, in a columnar chunk ("columns", version 2), holds one entry
	// per argument: the raw JSON of that argument's value in each row,
	// sub-slices of the payload. Item i's arguments are Columns[k][i]; Items
	// then has one nil entry per row, so len(Items) is the item count for
	// either form. Nil for a chunk of "items".
	Columns [][][]byte
	LimitMS int64 // "limit_ms": each item's time limit in milliseconds; 0 when absent
	TooMany int   // with DecodePayloadMax: the number of items when more than its limit (Items is then nil)
}

// MaxBatchID is the longest batch id a chunk may carry, in bytes. Clients
// write 32 hex digits.
const MaxBatchID = 128

// DecodePayload decodes p without copying item bytes: Chunk.Items point into p.
func DecodePayload(p []byte) (Payload, error) {
	return DecodePayloadMax(p, 0)
}

// DecodePayloadMax is DecodePayload keeping at most maxItems items of a chunk
// (0: no limit). A chunk with more keeps none: Chunk.TooMany says how many it
// has, so a chunk of millions of tiny items costs no slice of millions.
func DecodePayloadMax(p []byte, maxItems int) (Payload, error) {
	var out Payload
	// The decoder's duplicate-name checks would cost time on every object in
	// the arguments and items, where they protect nothing: object checks the
	// names of the payload and "gomap" objects alone. Invalid UTF-8 stays an
	// error everywhere.
	// From a bytes.Buffer the decoder parses p in place, without copying it.
	dec := jsontext.NewDecoder(bytes.NewBuffer(p), jsontext.AllowDuplicateNames(true))
	d := payloadDecoder{dec: dec, src: p, maxItems: maxItems}
	if err := d.object("the payload", func(name string) error { return d.payloadField(name, &out) }); err != nil {
		return out, fmt.Errorf("%w: %v", ErrPayload, err)
	}
	// A second object, or anything but whitespace, after the first: which
	// one the producer meant is unclear.
	if end := dec.InputOffset(); !isEOF(dec) {
		return out, fmt.Errorf("%w: more data after the JSON object, which ends at byte %d of %d", ErrPayload, end, len(p))
	}
	if out.Class == "" {
		return out, fmt.Errorf("%w: no \"class\"", ErrPayload)
	}
	if c := out.Chunk; c != nil && c.Batch == "" {
		return out, fmt.Errorf("%w: gomap chunk without \"batch\"", ErrPayload)
	}
	if c := out.Chunk; c != nil && len(c.Batch) > MaxBatchID {
		// It names keys, and log lines quote it.
		return out, fmt.Errorf("%w: the \"batch\" id is %d bytes, more than %d", ErrPayload, len(c.Batch), MaxBatchID)
	}
	return out, nil
}

type payloadDecoder struct {
	dec      *jsontext.Decoder
	src      []byte
	maxItems int // 0: no limit
}

// object reads one JSON object, calling field for each name with the decoder
// positioned at its value; field must consume the value. A name given twice
// is an error: which value counts would be ambiguous.
func (d *payloadDecoder) object(what string, field func(name string) error) error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '{' {
		return fmt.Errorf("want a JSON object, got %v", tok.Kind())
	}
	var seen names
	for d.dec.PeekKind() == '"' {
		tok, err := d.dec.ReadToken()
		if err != nil {
			return err
		}
		name := tok.String()
		if !seen.add(name) {
			return fmt.Errorf("the name %s comes twice in %s: which value counts is ambiguous", quoteShort(name), what)
		}
		if err := field(name); err != nil {
			return err
		}
	}
	_, err = d.dec.ReadToken() // '}' or the syntax error that stopped the loop
	return err
}

// isEOF reports whether only whitespace is left.
func isEOF(dec *jsontext.Decoder) bool {
	_, err := dec.ReadToken()
	return err == io.EOF
}

// names is the set of names of one object: a few, in a slice; many, in a map.
type names struct {
	few  []string
	many map[string]struct{}
}

// add adds name and reports whether it was new.
func (n *names) add(name string) bool {
	if n.many != nil {
		if _, ok := n.many[name]; ok {
			return false
		}
		n.many[name] = struct{}{}
		return true
	}
	for _, s := range n.few {
		if s == name {
			return false
		}
	}
	if len(n.few) < 16 {
		n.few = append(n.few, name)
		return true
	}
	n.many = make(map[string]struct{}, 2*len(n.few))
	for _, s := range n.few {
		n.many[s] = struct{}{}
	}
	n.many[name] = struct{}{}
	return true
}

// quoteShort quotes s for a message, cut to its first 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "…"
	}
	return strconv.Quote(s)
}

// raw returns the next value as a sub-slice of the source.
func (d *payloadDecoder) raw() ([]byte, error) {
	v, err := d.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	end := int(d.dec.InputOffset())
	return d.src[end-len(v) : end], nil
}

func (d *payloadDecoder) payloadField(name string, out *Payload) error {
	switch name {
	case "class":
		return d.str(&out.Class, "class")
	case "args":
		raw, err := d.raw()
		out.Args = raw
		return err
	case "gomap":
		if d.dec.PeekKind() == 'n' {
			return d.dec.SkipValue()
		}
		out.Chunk = &Chunk{}
		return d.object(`"gomap"`, func(name string) error { return d.chunkField(name, out.Chunk) })
	default:
		return d.dec.SkipValue()
	}
}

func (d *payloadDecoder) chunkField(name string, c *Chunk) error {
	switch name {
	case "v":
		return d.int(&c.Version, "v")
	case "batch":
		return d.str(&c.Batch, "batch")
	case "start":
		if err := d.int(&c.Start, "start"); err != nil {
			return err
		}
		if c.Start < 0 {
			return errors.New(`"start" is negative`)
		}
		return nil
	case "items":
		if c.Columns != nil {
			return errors.New(`a chunk has "items" or "columns", not both`)
		}
		return d.items(c)
	case "columns":
		if c.Items != nil {
			return errors.New(`a chunk has "items" or "columns", not both`)
		}
		return d.columns(c)
	case "limit_ms":
		if err := d.int(&c.LimitMS, "limit_ms"); err != nil {
			return err
		}
		if c.LimitMS < 0 {
			return errors.New(`"limit_ms" is negative`)
		}
		return nil
	default:
		return d.dec.SkipValue()
	}
}

func (d *payloadDecoder) items(c *Chunk) error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '[' {
		return fmt.Errorf(`"items" is %v, not an array`, tok.Kind())
	}
	n := 0
	for d.dec.PeekKind() != ']' && d.dec.PeekKind() != 0 {
		n++
		if d.maxItems > 0 && n > d.maxItems {
			c.Items = nil
			if err := d.dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		raw, err := d.raw()
		if err != nil {
			return err
		}
		c.Items = append(c.Items, raw)
	}
	if d.maxItems > 0 && n > d.maxItems {
		c.TooMany = n
	}
	_, err = d.dec.ReadToken()
	return err
}

// columns reads "columns": an array of at least one JSON array, all of the
// same length, one per argument. Each column is read as one value (the
// decoder validates it once) and split into its elements by SplitArray,
// without a copy or an allocation per element.
func (d *payloadDecoder) columns(c *Chunk) error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '[' {
		return fmt.Errorf(`"columns" is %v, not an array`, tok.Kind())
	}
	var cols [][]byte
	for d.dec.PeekKind() != ']' && d.dec.PeekKind() != 0 {
		if k := d.dec.PeekKind(); k != '[' {
			return fmt.Errorf(`column %d of "columns" is %v, not an array`, len(cols), k)
		}
		raw, err := d.raw()
		if err != nil {
			return err
		}
		cols = append(cols, raw)
	}
	if _, err := d.dec.ReadToken(); err != nil {
		return err
	}
	if len(cols) == 0 {
		return errors.New(`"columns" has no column: a columnar chunk needs one per argument`)
	}
	n := countArray(cols[0])
	if d.maxItems > 0 && n > d.maxItems {
		c.TooMany = n // too many rows: counted, none kept
		return nil
	}
	// One allocation for the values of every column.
	all := make([][]byte, 0, n*len(cols))
	c.Columns = make([][][]byte, len(cols))
	for k, raw := range cols {
		lo := len(all)
		var err error
		if all, err = SplitArray(raw, all); err != nil {
			return fmt.Errorf(`column %d of "columns": %v`, k, err)
		}
		if m := len(all) - lo; m != n {
			return fmt.Errorf(`column %d of "columns" has %d values, column 0 has %d: a row needs a value in each`, k, m, n)
		}
		c.Columns[k] = all[lo:len(all):len(all)]
	}
	c.Items = make([][]byte, n)
	return nil
}

// countArray counts the elements of the valid JSON array b. An array of
// numbers, bools and nulls (no string, array or object inside) is counted by
// its commas, with the bytes package's vector loops.
func countArray(b []byte) int {
	if in := b[1:]; len(b) > 2 && bytes.IndexByte(in, '"') < 0 && bytes.IndexByte(in, '[') < 0 && bytes.IndexByte(in, '{') < 0 {
		if len(bytes.TrimSpace(b[1:len(b)-1])) == 0 {
			return 0
		}
		return bytes.Count(b, []byte{','}) + 1
	}
	n := 0
	for i := skipSpace(b, 1); i < len(b) && b[i] != ']'; n++ {
		i = skipSpace(b, valueEnd(b, i))
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return n
}

// SplitArray appends the elements of the JSON array b to dst. b must be valid
// JSON (the payload decoder validated it), so this only finds boundaries: it
// tracks strings and nesting, and the values come out without surrounding
// white space.
func SplitArray(b []byte, dst [][]byte) ([][]byte, error) {
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == ']' {
		return dst, nil
	}
	for i < len(b) {
		end := valueEnd(b, i)
		dst = append(dst, b[i:end])
		i = skipSpace(b, end)
		if i >= len(b) {
			break
		}
		if b[i] == ']' {
			return dst, nil
		}
		i = skipSpace(b, i+1) // the comma
	}
	return dst, errors.New("truncated JSON array")
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	if c := b[i]; c != '"' && c != '[' && c != '{' {
		// A number, true, false or null: it ends at the next delimiter.
		for i++; i < len(b); i++ {
			switch b[i] {
			case ',', ']', '}', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return i
	}
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i) - 1
			if depth == 0 {
				return i + 1
			}
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 {
				return i
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// stringEnd returns the index just past the JSON string that starts at b[i].
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

func (d *payloadDecoder) str(dst *string, name string) error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '"' {
		return fmt.Errorf("%q is %v, not a string", name, tok.Kind())
	}
	*dst = tok.String()
	return nil
}

func (d *payloadDecoder) int(dst *int64, name string) error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '0' {
		return fmt.Errorf("%q is %v, not a number", name, tok.Kind())
	}
	*dst, err = tok.Int()
	if err != nil {
		return fmt.Errorf("%q: %v", name, err)
	}
	return nil
}
