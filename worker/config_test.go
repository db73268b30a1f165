package worker_test

import (
	"errors"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/protocol"
)

func TestParseQueuesFollowsGoworker(t *testing.T) {
	for spec, want := range map[string]string{
		"high,low":       "[{high 0} {low 0}]",
		"high=2,low=1":   "[{high 2} {low 1}]",
		"high=2,low":     "[{high 2} {low 1}]",
		" a , ,b ":       "[{a 0} {b 0}]",
		"":               "[]",
		"high=2,,,low=3": "[{high 2} {low 3}]",
	} {
		qs, err := worker.ParseQueues(spec)
		if got := fmt.Sprint(qs); err != nil || (got != want && !(want == "[]" && qs == nil)) {
			t.Errorf("ParseQueues(%q) = %v, %v; want %s", spec, qs, err, want)
		}
	}
	for _, spec := range []string{"high=x", "high=0", ",,"} {
		if _, err := worker.ParseQueues(spec); !errors.Is(err, worker.ErrConfig) {
			t.Errorf("ParseQueues(%q) = %v, want a config error", spec, err)
		}
	}
}

func TestEnvURIFollowsGoworker(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "redis://localhost:6379/"},
		{map[string]string{"REDIS_URL": "redis://u:6379/1"}, "redis://u:6379/1"},
		{map[string]string{"REDIS_PROVIDER": "MY", "MY": "redis://p/", "REDIS_URL": "redis://u/"}, "redis://p/"},
		// goworker: with REDIS_PROVIDER set, REDIS_URL is not consulted.
		{map[string]string{"REDIS_PROVIDER": "MISSING", "REDIS_URL": "redis://u/"}, "redis://localhost:6379/"},
	} {
		if got := worker.EnvURI(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("EnvURI(%v) = %s, want %s", c.env, got, c.want)
		}
	}
}

func TestFlagsMapOntoConfig(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fl := worker.BindFlags(fs)
	err := fs.Parse([]string{"-queues", "a=3,b", "-interval", "0.25", "-concurrency", "7", "-connections", "3",
		"-namespace", "ns", "-exit-on-complete", "-use-number", "-heartbeat", "1s", "-dead-after", "9s",
		"-tls-client-cert", "c.pem", "-tls-client-key", "k.pem", "-reject-timeout", "3s", "-progress-interval", "100ms"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fl.Config(func(k string) string { return map[string]string{"REDIS_URL": "redis://env/"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := worker.Config{Queues: []worker.Queue{{Name: "a", Weight: 3}, {Name: "b", Weight: 1}}, Interval: 250 * time.Millisecond,
		Concurrency: 7, Connections: 3, URI: "redis://env/", Namespace: "ns", ExitOnComplete: true, UseNumber: true,
		Heartbeat: time.Second, ProgressInterval: 100 * time.Millisecond, DeadAfter: 9 * time.Second, ShutdownTimeout: worker.DefaultShutdownTimeout,
		TLSClientCertPath: "c.pem", TLSClientKeyPath: "k.pem", RejectTimeout: 3 * time.Second,
		RunawayGrace: worker.DefaultRunawayGrace, MaxRequeues: worker.DefaultMaxRequeues, MaxPayload: protocol.DefaultMaxPayload,
		MaxChunkItems: protocol.DefaultMaxChunkItems, PruneAfter: worker.DefaultPruneAfter}
	if fmt.Sprintf("%+v", cfg) != fmt.Sprintf("%+v", want) {
		t.Errorf("config\n %+v\nwant\n %+v", cfg, want)
	}
}

func TestNewRejectsBadConfigs(t *testing.T) {
	reg := worker.NewRegistry()
	reg.Handle("f", worker.Func0(func() (int, error) { return 0, nil }))
	for name, cfg := range map[string]worker.Config{
		"mixed weights":            {Queues: []worker.Queue{{Name: "a", Weight: 1}, {Name: "b"}}},
		"duplicate queue":          {Queues: []worker.Queue{{Name: "a"}, {Name: "a"}}},
		"brace in queue":           {Queues: []worker.Queue{{Name: "{a}"}}},
		"comma in queue":           {Queues: []worker.Queue{{Name: "a,b"}}},
		"colon in host":            {Hostname: "a:b"},
		"dead too soon":            {Heartbeat: time.Second, DeadAfter: time.Second},
		"bad uri":                  {URI: "http://x"},
		"negative max chunk items": {MaxChunkItems: -1},
		"negative max payload":     {MaxPayload: -1},
	} {
		if _, err := worker.New(cfg, reg); !errors.Is(err, worker.ErrConfig) {
			t.Errorf("%s: New = %v, want a config error", name, err)
		}
	}
	if _, err := worker.New(worker.Config{}, worker.NewRegistry()); !errors.Is(err, worker.ErrConfig) {
		t.Errorf("no queues and no functions: %v", err)
	}
}
