package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/gomap/gomap/worker/samples"
)

func TestEnqueuePushesRubysPayload(t *testing.T) {
	srv := redistest.Start(t)
	env := map[string]string{"REDIS_URL": srv.URI}
	var stderr bytes.Buffer
	code := run([]string{"-queue", "adds", "-class", "sampleadd", "1", "2", "not json", `{"k":[1]}`},
		func(k string) string { return env[k] }, &bytes.Buffer{}, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got, err := srv.Client().LPop(context.Background(), "goworker:queue:adds").Result()
	if want := `{"class":"sampleadd","args":[1,2,"not json",{"k":[1]}]}`; err != nil || got != want {
		t.Errorf("queued %q, %v; want %q", got, err, want)
	}
}

func TestMapPrintsResultsInOrder(t *testing.T) {
	srv := redistest.Start(t)
	reg := worker.NewRegistry()
	samples.Register(reg)
	workertest.Run(t, worker.Config{URI: srv.URI, Hostname: "enq"}, reg)
	var stdout, stderr bytes.Buffer
	code := run([]string{"-uri", srv.URI, "-map", "-class", "sampleadd", "[1,2]", "[3,4]", "[9007199254740993,0]"},
		func(string) string { return "" }, &stdout, &stderr)
	if code != 0 || stdout.String() != "3\n7\n9007199254740993\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stderr.Reset()
	code = run([]string{"-uri", srv.URI, "-map", "-class", "samplediv", "[1,0]"}, func(string) string { return "" },
		&stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "division by zero") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestEnqueueNeedsAClass(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(nil, func(string) string { return "" }, &bytes.Buffer{}, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "-class is required") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
