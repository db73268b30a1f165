package worker

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomap/gomap/worker/internal/protocol"
)

// Typed argument decoders and result encoders, chosen once per registered
// function so the per-item path of common types (ints, floats, strings, bools)
// is a strconv call instead of a reflective JSON decode.

type decodeFunc[T any] func(raw []byte, dst *T, useNumber bool) error

type encodeFunc[T any] func(dst []byte, v *T) ([]byte, error)

// ResultError says a function's result has no JSON form.
type ResultError struct{ Err error }

func (e *ResultError) Error() string { return "result: " + e.Err.Error() }
func (e *ResultError) Unwrap() error { return e.Err }

func isNull(raw []byte) bool { return string(raw) == "null" }

func nullError(typ reflect.Type) error {
	return fmt.Errorf("null is not a valid %v (None and NaN travel as null; use a pointer type to accept it)", typ)
}

func decoderFor[T any]() decodeFunc[T] {
	var probe *T
	switch any(probe).(type) {
	case *int:
		return intDecoder[T, int](strconv.IntSize)
	case *int64:
		return intDecoder[T, int64](64)
	case *int32:
		return intDecoder[T, int32](32)
	case *int16:
		return intDecoder[T, int16](16)
	case *int8:
		return intDecoder[T, int8](8)
	case *uint:
		return uintDecoder[T, uint](strconv.IntSize)
	case *uint64:
		return uintDecoder[T, uint64](64)
	case *uint32:
		return uintDecoder[T, uint32](32)
	case *uint16:
		return uintDecoder[T, uint16](16)
	case *uint8:
		return uintDecoder[T, uint8](8)
	case *float64:
		return floatDecoder[T, float64](64)
	case *float32:
		return floatDecoder[T, float32](32)
	case *string:
		return stringDecoder[T]()
	case *bool:
		return boolDecoder[T]()
	case *stdjson.Number:
		return numberDecoder[T]
	}
	return jsonDecoder[T]()
}

// The parse functions below are the typed decoders' cores, shared with
// Reflect's per-kind decoders so both accept the same JSON and say the same
// things about what they reject. typ names the parameter's type in errors.

func parseInt(raw []byte, bits int, typ reflect.Type) (int64, error) {
	if isNull(raw) {
		return 0, nullError(typ)
	}
	v, err := strconv.ParseInt(string(raw), 10, bits)
	if err != nil {
		return 0, numberError(typ, raw, err)
	}
	return v, nil
}

func parseUint(raw []byte, bits int, typ reflect.Type) (uint64, error) {
	if isNull(raw) {
		return 0, nullError(typ)
	}
	v, err := strconv.ParseUint(string(raw), 10, bits)
	if err != nil {
		return 0, numberError(typ, raw, err)
	}
	return v, nil
}

func parseFloat(raw []byte, bits int, typ reflect.Type) (float64, error) {
	if isNull(raw) {
		return 0, nullError(typ)
	}
	if !isNumber(raw) {
		return 0, fmt.Errorf("want %v, got %s", typ, clip(raw))
	}
	v, err := strconv.ParseFloat(string(raw), bits)
	if err != nil {
		return 0, numberError(typ, raw, err)
	}
	return v, nil
}

// parseString returns the string a JSON string holds; one without escapes
// costs a single allocation, the string itself.
func parseString(raw []byte, typ reflect.Type) (string, error) {
	if len(raw) < 2 || raw[0] != '"' {
		if isNull(raw) {
			return "", nullError(typ)
		}
		return "", fmt.Errorf("want a string, got %s", clip(raw))
	}
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') >= 0 {
		u, err := jsontext.AppendUnquote(nil, raw)
		if err != nil {
			return "", err
		}
		body = u
	}
	return string(body), nil
}

func parseBool(raw []byte, typ reflect.Type) (bool, error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "null":
		return false, nullError(typ)
	}
	return false, fmt.Errorf("want a bool, got %s", clip(raw))
}

func intDecoder[T any, I ~int | ~int8 | ~int16 | ~int32 | ~int64](bits int) decodeFunc[T] {
	typ := reflect.TypeFor[T]()
	return func(raw []byte, dst *T, _ bool) error {
		v, err := parseInt(raw, bits, typ)
		if err != nil {
			return err
		}
		*any(dst).(*I) = I(v)
		return nil
	}
}

func uintDecoder[T any, U ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64](bits int) decodeFunc[T] {
	typ := reflect.TypeFor[T]()
	return func(raw []byte, dst *T, _ bool) error {
		v, err := parseUint(raw, bits, typ)
		if err != nil {
			return err
		}
		*any(dst).(*U) = U(v)
		return nil
	}
}

func floatDecoder[T any, F ~float32 | ~float64](bits int) decodeFunc[T] {
	typ := reflect.TypeFor[T]()
	return func(raw []byte, dst *T, _ bool) error {
		v, err := parseFloat(raw, bits, typ)
		if err != nil {
			return err
		}
		*any(dst).(*F) = F(v)
		return nil
	}
}

func stringDecoder[T any]() decodeFunc[T] {
	typ := reflect.TypeFor[T]()
	return func(raw []byte, dst *T, _ bool) error {
		v, err := parseString(raw, typ)
		if err != nil {
			return err
		}
		*any(dst).(*string) = v
		return nil
	}
}

func boolDecoder[T any]() decodeFunc[T] {
	typ := reflect.TypeFor[T]()
	return func(raw []byte, dst *T, _ bool) error {
		v, err := parseBool(raw, typ)
		if err != nil {
			return err
		}
		*any(dst).(*bool) = v
		return nil
	}
}

func numberDecoder[T any](raw []byte, dst *T, _ bool) error {
	if isNull(raw) {
		return nullError(reflect.TypeFor[T]())
	}
	if !isNumber(raw) {
		return fmt.Errorf("want a number, got %s", clip(raw))
	}
	*any(dst).(*stdjson.Number) = stdjson.Number(raw)
	return nil
}

func jsonDecoder[T any]() decodeFunc[T] {
	typ := reflect.TypeFor[T]()
	nullable := nullableKind(typ.Kind())
	return func(raw []byte, dst *T, useNumber bool) error {
		if !nullable && isNull(raw) {
			return nullError(typ)
		}
		return decodeJSON(raw, dst, useNumber)
	}
}

// nullableKind says whether encoding/json gives null a meaning (nil) for
// values of kind k; for any other kind it would silently leave the zero value.
func nullableKind(k reflect.Kind) bool {
	switch k {
	case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
		return true
	}
	return false
}

func isNumber(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'))
}

func numberError(typ reflect.Type, raw []byte, err error) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%s is out of range for %v", clip(raw), typ)
	}
	return fmt.Errorf("want %v, got %s", typ, clip(raw))
}

// clip shortens raw JSON for an error message.
func clip(raw []byte) string {
	const most = 60
	if len(raw) > most {
		return string(raw[:most]) + "…"
	}
	return string(raw)
}

func encoderFor[T any]() encodeFunc[T] {
	var probe *T
	switch any(probe).(type) {
	case *int:
		return intEncoder[T, int]
	case *int64:
		return intEncoder[T, int64]
	case *int32:
		return intEncoder[T, int32]
	case *uint:
		return uintEncoder[T, uint]
	case *uint64:
		return uintEncoder[T, uint64]
	case *uint32:
		return uintEncoder[T, uint32]
	case *float64:
		return func(dst []byte, v *T) ([]byte, error) {
			return protocol.AppendFloat(dst, *any(v).(*float64), 64)
		}
	case *float32:
		return func(dst []byte, v *T) ([]byte, error) {
			return protocol.AppendFloat(dst, float64(*any(v).(*float32)), 32)
		}
	case *string:
		return func(dst []byte, v *T) ([]byte, error) {
			return jsontext.AppendQuote(dst, *any(v).(*string))
		}
	case *bool:
		return func(dst []byte, v *T) ([]byte, error) {
			return strconv.AppendBool(dst, *any(v).(*bool)), nil
		}
	}
	opts := protocol.MarshalOptions() // protocol.Marshal's, built once rather than per call
	return func(dst []byte, v *T) ([]byte, error) {
		b, err := json.Marshal(v, opts)
		return append(dst, b...), err
	}
}

func intEncoder[T any, I ~int | ~int32 | ~int64](dst []byte, v *T) ([]byte, error) {
	return strconv.AppendInt(dst, int64(*any(v).(*I)), 10), nil
}

func uintEncoder[T any, U ~uint | ~uint32 | ~uint64](dst []byte, v *T) ([]byte, error) {
	return strconv.AppendUint(dst, uint64(*any(v).(*U)), 10), nil
}

// AppendFloat appends f as JSON the way Python writes floats (2.0 stays
// 2.0, so Python gets a float back). NaN and ±Inf are an error.
func AppendFloat(dst []byte, f float64) ([]byte, error) { return protocol.AppendFloat(dst, f, 64) }
