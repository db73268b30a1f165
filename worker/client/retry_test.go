package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// The errors Map retries, and those it returns at once, as go-redis parses
// them from a real server's replies.
func TestTransientErrors(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	replies := map[string]bool{
		"LOADING Redis is loading the dataset in memory":                                  true,
		"READONLY You can't write against a read only replica.":                           true,
		"TRYAGAIN Multiple keys request during rehashing of slot":                         true,
		"CLUSTERDOWN The cluster is down":                                                 true,
		"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'": true,
		"ERR max number of clients reached":                                               true,
		"BUSY Redis is busy running a script.":                                            true,
		"NOAUTH Authentication required.":                                                 false,
		"WRONGPASS invalid username-password pair or user is disabled.":                   false,
		"NOPERM this user has no permissions to run the 'eval' command":                   false,
		"OOM command not allowed when used memory > 'maxmemory'.":                         false,
		"ERR user_script:1: Script attempted to access nonexistent global variable":       false,
		"WRONGTYPE Operation against a key holding the wrong kind of value":               false,
	}
	for reply, want := range replies {
		err := rdb.Eval(ctx, "return redis.error_reply(ARGV[1])", nil, reply).Err()
		if err == nil || err.Error() != reply {
			t.Fatalf("the script returned %v, not the reply %q", err, reply)
		}
		if got := transient(fmt.Errorf("wrapped: %w", err)); got != want {
			t.Errorf("transient(%q) = %v, want %v", reply, got, want)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	refused := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	err = refused.Ping(ctx).Err()
	if !transient(err) {
		t.Errorf("transient(%v) = false for a refused connection", err)
	}
	if err := refused.Close(); err != nil {
		t.Fatal(err)
	}
	if err := refused.Ping(ctx).Err(); transient(err) || !errors.Is(err, redis.ErrClosed) {
		t.Errorf("a closed client: transient(%v) = true", err)
	}
	for _, err := range []error{context.Canceled, context.DeadlineExceeded, nil} {
		if transient(err) {
			t.Errorf("transient(%v) = true", err)
		}
	}
}
