// Package geo is a package directory of Go functions for `gomap build --functions`.
package geo

import "math"

// Haversine is the great-circle distance in km between two points given in degrees.
func Haversine(lat1, lon1, lat2, lon2 float64) float64 {
	dlat, dlon := radians(lat2-lat1), radians(lon2-lon1)
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(radians(lat1))*math.Cos(radians(lat2))*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * 6371 * math.Asin(math.Sqrt(a))
}
