package protocol

import (
	"bytes"
	"errors"
	"fmt"

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
	Items   [][]byte // raw JSON of each item; sub-slices of the payload
}

// DecodePayload decodes p without copying item bytes: Chunk.Items point into p.
func DecodePayload(p []byte) (Payload, error) {
	var out Payload
	// Duplicate-name checks cost time on every object item and protect nothing
	// here; invalid UTF-8 stays an error.
	// From a bytes.Buffer the decoder parses p in place, without copying it.
	dec := jsontext.NewDecoder(bytes.NewBuffer(p), jsontext.AllowDuplicateNames(true))
	d := payloadDecoder{dec: dec, src: p}
	if err := d.object(func(name string) error { return d.payloadField(name, &out) }); err != nil {
		return out, fmt.Errorf("%w: %v", ErrPayload, err)
	}
	if out.Class == "" {
		return out, fmt.Errorf("%w: no \"class\"", ErrPayload)
	}
	if c := out.Chunk; c != nil && c.Batch == "" {
		return out, fmt.Errorf("%w: gomap chunk without \"batch\"", ErrPayload)
	}
	return out, nil
}

type payloadDecoder struct {
	dec *jsontext.Decoder
	src []byte
}

// object reads one JSON object, calling field for each name with the decoder
// positioned at its value; field must consume the value.
func (d *payloadDecoder) object(field func(name string) error) error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '{' {
		return fmt.Errorf("want a JSON object, got %v", tok.Kind())
	}
	for d.dec.PeekKind() == '"' {
		name, err := d.dec.ReadToken()
		if err != nil {
			return err
		}
		if err := field(name.String()); err != nil {
			return err
		}
	}
	_, err = d.dec.ReadToken() // '}' or the syntax error that stopped the loop
	return err
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
		return d.object(func(name string) error { return d.chunkField(name, out.Chunk) })
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
		return d.items(c)
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
	for d.dec.PeekKind() != ']' && d.dec.PeekKind() != 0 {
		raw, err := d.raw()
		if err != nil {
			return err
		}
		c.Items = append(c.Items, raw)
	}
	_, err = d.dec.ReadToken()
	return err
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
