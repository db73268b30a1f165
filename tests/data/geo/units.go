package geo

import "math"

func radians(deg float64) float64 { return deg * math.Pi / 180 }
