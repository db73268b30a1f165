package client_test

import (
	"context"
	"fmt"

	"github.com/gomap/gomap/worker/client"
)

// Enqueue a plain job and map a function from Go, against a Redis where
// gomap workers run (compiled, not run: it needs that Redis).
func Example() {
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Options{URI: "redis://localhost:6379/"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Println(err)
		}
	}()
	err = c.Enqueue(ctx, "sampleadd", "sampleadd", 1, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	sums, err := client.MapAs[int](ctx, c, "sampleadd", []any{[]int{1, 2}, []int{3, 4}}, nil)
	fmt.Println(sums, err)
}
