package worker_test

import (
	"context"
	"fmt"

	"github.com/gomap/gomap/worker"
)

// Typed functions register directly; their arguments are decoded from each
// item and their result encoded as JSON.
func ExampleFunc2() {
	add := worker.Func2(func(a, b int) (int, error) { return a + b, nil })
	out, err := worker.CallJSON(context.Background(), add, "1", "2")
	fmt.Println(string(out), err)
	_, err = worker.CallJSON(context.Background(), add, "1", `"two"`)
	fmt.Println(err)
	// Output:
	// 3 <nil>
	// argument 2: want int, got "two"
}

// Any signature registers through Reflect, with an optional context first.
func ExampleReflect() {
	greet := worker.Reflect(func(ctx context.Context, name string, excited bool) string {
		if excited {
			return "Hello, " + name + "!"
		}
		return "Hello, " + name
	})
	out, err := worker.CallJSON(context.Background(), greet, `"Ada"`, "true")
	fmt.Println(string(out), err)
	// Output: "Hello, Ada!" <nil>
}

// A goworker job function ports unchanged: Register takes its signature.
func ExampleRegistry_Register() {
	reg := worker.NewRegistry()
	reg.Register("Archive", func(queue string, args ...interface{}) error {
		fmt.Println("archive", args)
		return nil
	})
	fmt.Println(reg.Names())
	// Output: [Archive]
}
