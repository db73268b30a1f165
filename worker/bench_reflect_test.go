package worker

import (
	"context"
	"math"
	"strconv"
	"testing"
)

// haversine is the shape generated registrations will wrap: a plain function
// of four floats, the great-circle distance in km.
func haversine(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}

func benchArgs(vals ...string) Args {
	a := Args{vals: make([][]byte, len(vals))}
	for i, v := range vals {
		a.vals[i] = []byte(v)
	}
	return a
}

func benchHandler(b *testing.B, h Handler, args Args) {
	ctx := context.Background()
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		out, err := h.Call(ctx, args, dst[:0])
		if err != nil || len(out) == 0 {
			b.Fatal(string(out), err)
		}
	}
}

func BenchmarkReflect4Floats(b *testing.B) {
	benchHandler(b, Reflect(haversine), benchArgs("52.52", "13.405", "48.8566", "2.3522"))
}

// BenchmarkTyped4Floats is the floor Reflect4Floats is measured against: the
// same call decoded and encoded by hand, as a typed handler would.
func BenchmarkTyped4Floats(b *testing.B) {
	h := HandlerFunc(func(_ context.Context, args Args, dst []byte) ([]byte, error) {
		if args.Len() != 4 {
			return dst, arityError(4, args.Len())
		}
		var x [4]float64
		for i := range x {
			f, err := strconv.ParseFloat(string(args.Raw(i)), 64)
			if err != nil {
				return dst, &ArgumentError{Index: i, Err: err}
			}
			x[i] = f
		}
		return AppendFloat(dst, haversine(x[0], x[1], x[2], x[3]))
	})
	benchHandler(b, h, benchArgs("52.52", "13.405", "48.8566", "2.3522"))
}

func BenchmarkReflect3Floats(b *testing.B) {
	benchHandler(b, Reflect(func(a, c, d float64) (float64, error) { return haversine(a, c, d, 0), nil }),
		benchArgs("52.52", "13.405", "48.8566"))
}

func BenchmarkFunc3Floats(b *testing.B) {
	benchHandler(b, Func3(func(a, c, d float64) (float64, error) { return haversine(a, c, d, 0), nil }),
		benchArgs("52.52", "13.405", "48.8566"))
}

type benchPoint struct {
	Lat  float64 `json:"lat"`
	Lon  float64 `json:"lon"`
	Name string  `json:"name"`
}

func BenchmarkReflectStruct(b *testing.B) {
	benchHandler(b, Reflect(func(p benchPoint, scale float64) benchPoint {
		p.Lat *= scale
		return p
	}), benchArgs(`{"lat":52.52,"lon":13.405,"name":"Berlin"}`, "2"))
}

func BenchmarkReflectStrings(b *testing.B) {
	benchHandler(b, Reflect(func(s string, n int) string { return s[:min(n, len(s))] }), benchArgs(`"hello, world"`, "5"))
}
