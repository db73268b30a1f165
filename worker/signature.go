package worker

import (
	"reflect"
	"slices"
	"strings"

	"github.com/gomap/gomap/worker/internal/protocol"
)

// Signature describes a registered function to clients: the Go types (and
// names, where known) of its parameters and of its result. Workers advertise
// the signatures of their functions in their record (docs/protocol.md), so
// gomap.functions() in Python can list what a pool runs.
type Signature = protocol.Signature

// Param is one parameter of a Signature.
type Param = protocol.Param

// Described is a Handler that knows its function's signature. The handlers
// of Func0 … Func3, Reflect and Registry.Register are; a bare HandlerFunc is
// not, unless wrapped with Describe.
type Described interface {
	Handler
	Signature() Signature
}

type describedHandler struct {
	Handler
	sig Signature
}

func (d describedHandler) Signature() Signature { return cloneSignature(d.sig) }

// cloneSignature copies sig's parameters, so a caller's edits of a returned
// signature never reach the handler.
func cloneSignature(sig Signature) Signature {
	sig.Params = slices.Clone(sig.Params)
	return sig
}

// describe is how this package's own handlers know their signature.
func describe(sig Signature, fn HandlerFunc) Handler { return describedHandler{Handler: fn, sig: sig} }

// typeName is t as Go source writes it: reflect's String, with the empty
// interface spelled "any" as gofmt'd code and go/types spell it since Go 1.18
// ("map[string]any", not "map[string]interface {}").
func typeName(t reflect.Type) string {
	return strings.ReplaceAll(t.String(), "interface {}", "any")
}

// Describe returns h with sig as its signature. Where sig leaves a field
// empty (a parameter's Name or Type, the Result, the Doc, or Params
// altogether), the signature h already describes fills it, so
//
//	worker.Describe(worker.Reflect(Haversine), worker.Signature{Doc: "…", Params: []worker.Param{{Name: "lat1"}, …}})
//
// adds names and documentation to the types reflection found.
func Describe(h Handler, sig Signature) Handler {
	base, _ := SignatureOf(h)
	if inner, ok := h.(describedHandler); ok {
		h = inner.Handler
	}
	return describedHandler{Handler: h, sig: mergeSignature(sig, base)}
}

// SignatureOf returns h's signature, if it describes one.
func SignatureOf(h Handler) (Signature, bool) {
	if d, ok := h.(Described); ok {
		return d.Signature(), true
	}
	return Signature{}, false
}

func mergeSignature(top, base Signature) Signature {
	out := top
	if len(out.Params) == 0 {
		out.Params = base.Params
	} else {
		out.Params = append([]Param(nil), top.Params...)
		for i := range out.Params {
			if i < len(base.Params) {
				if out.Params[i].Name == "" {
					out.Params[i].Name = base.Params[i].Name
				}
				if out.Params[i].Type == "" {
					out.Params[i].Type = base.Params[i].Type
				}
			}
		}
	}
	if out.Result == "" {
		out.Result = base.Result
	}
	if out.Doc == "" {
		out.Doc = base.Doc
	}
	out.Error = out.Error || base.Error
	out.Variadic = out.Variadic || base.Variadic
	return out
}
