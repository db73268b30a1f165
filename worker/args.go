package worker

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"

	"github.com/gomap/gomap/worker/internal/protocol"
)

// Args are the arguments of one call, as raw JSON values. For a plain Resque
// job they are the elements of "args". For an item of a gomap batch they are
// the item's elements when the item is a JSON array, else the item itself as
// the one argument (docs/protocol.md, "Items").
type Args struct {
	vals      [][]byte
	useNumber bool
}

// Len is the number of arguments.
func (a Args) Len() int { return len(a.vals) }

// Raw is the JSON of argument i.
func (a Args) Raw(i int) []byte { return a.vals[i] }

// Decode decodes argument i into v (a pointer) as encoding/json does, with
// numbers in interface values as json.Number when the worker uses numbers.
func (a Args) Decode(i int, v any) error {
	if err := decodeJSON(a.vals[i], v, a.useNumber); err != nil {
		return &ArgumentError{Index: i, Err: err}
	}
	return nil
}

// ArgumentError says which argument did not fit the function.
type ArgumentError struct {
	Index int // the argument's position, from 0; -1 for the argument count
	Err   error
}

func (e *ArgumentError) Error() string {
	if e.Index < 0 {
		return e.Err.Error()
	}
	return fmt.Sprintf("argument %d: %v", e.Index+1, e.Err)
}

func (e *ArgumentError) Unwrap() error { return e.Err }

// argPosition is the position of the argument err is about (an item error's
// "arg"), or nil when err is not about one argument.
func argPosition(err error) *int {
	var ae *ArgumentError
	if !errors.As(err, &ae) || ae.Index < 0 {
		return nil
	}
	i := ae.Index
	return &i
}

func arityError(want, got int) error {
	return &ArgumentError{Index: -1, Err: fmt.Errorf("takes %d argument%s, got %d", want, plural(want), got)}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// decodeJSON decodes one argument as encoding/json does. Only UseNumber needs
// a Decoder; Unmarshal does the same without allocating one per argument.
func decodeJSON(raw []byte, v any, useNumber bool) error {
	if !useNumber {
		return stdjson.Unmarshal(raw, v)
	}
	d := stdjson.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(v)
}

// itemArgs makes the arguments of one item: the elements of an array, else the
// item as the only argument.
func itemArgs(item []byte, buf [][]byte, useNumber bool) (Args, error) {
	if len(item) > 0 && item[0] == '[' {
		vals, err := splitArray(item, buf[:0])
		return Args{vals: vals, useNumber: useNumber}, err
	}
	return Args{vals: append(buf[:0], item), useNumber: useNumber}, nil
}

// chunkArgs makes the arguments of item i of c: from the item, or, in a
// columnar chunk, from the i-th value of each column (sub-slices of the
// payload: nothing is copied or allocated per item beyond buf's growth).
func chunkArgs(c *protocol.Chunk, i int, buf [][]byte, useNumber bool) (Args, error) {
	if c.Columns == nil {
		return itemArgs(c.Items[i], buf, useNumber)
	}
	buf = buf[:0]
	for _, col := range c.Columns {
		buf = append(buf, col[i])
	}
	return Args{vals: buf, useNumber: useNumber}, nil
}

// jobArgs makes the arguments of a plain job from its "args" value.
func jobArgs(raw []byte, useNumber bool) (Args, error) {
	if len(raw) == 0 || raw[0] != '[' {
		return Args{}, &ArgumentError{Index: -1, Err: errors.New(`"args" is not a JSON array`)}
	}
	vals, err := splitArray(raw, nil)
	return Args{vals: vals, useNumber: useNumber}, err
}

// splitArray appends the elements of the JSON array b to dst (see
// protocol.SplitArray).
func splitArray(b []byte, dst [][]byte) ([][]byte, error) { return protocol.SplitArray(b, dst) }
