package workercmd

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/tlstest"
	"github.com/gomap/gomap/worker/internal/workertest"
)

const secret = "S3cr3t-pw"

// TestNoOutputShowsThePassword runs the command with every kind of URI that
// fails, against real servers, and scans all it writes for the password.
func TestNoOutputShowsThePassword(t *testing.T) {
	certs := tlstest.NewCerts(t)
	srv := tlstest.Start(t, tlstest.Options{Password: secret,
		Args: []string{"--user", "noregister", "on", ">" + secret, "~*", "+@all", "-hset"}})
	mtls := tlstest.Start(t, tlstest.Options{Password: secret, TLS: certs, ClientAuth: true})
	fast := []string{"-reject-timeout", "200ms"}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad port", []string{"-uri", "redis://:" + secret + "@localhost:63x9"}, 2, `invalid port ":63x9"`},
		{"bad scheme", []string{"-uri", "http://:" + secret + "@localhost:6379/"}, 2, "invalid URL scheme"},
		{"password in the query", []string{"-uri", "redis://127.0.0.1:1/?password=" + secret}, 2, "password=xxxxx"},
		{"unescaped slash", []string{"-uri", "redis://:ab/" + secret + "@127.0.0.1:1/"}, 2, "percent-encode"},
		{"wrong password", append([]string{"-uri", "redis://:wrong" + secret + "@" + srv.Addr + "/"}, fast...), 1,
			"redis rejected the worker"},
		{"no permission", append([]string{"-uri", "redis://noregister:" + secret + "@" + srv.Addr + "/"}, fast...), 1,
			"NOPERM"},
		{"no such database", append([]string{"-uri", "redis://:" + secret + "@" + srv.Addr + "/99"}, fast...), 1,
			"DB index is out of range"},
		{"unknown CA", append([]string{"-uri", "rediss://:" + secret + "@" + mtls.Addr + "/", "-tls-cert", certs.OtherCA,
			"-tls-client-cert", certs.ClientCert, "-tls-client-key", certs.ClientKey}, fast...), 1, "unknown authority"},
		{"no client certificate", append([]string{"-uri", "rediss://:" + secret + "@" + mtls.Addr + "/", "-tls-cert", certs.CA},
			fast...), 1, "-tls-client-cert"},
		// Retried without end: the test closes the lifeline once it has seen the error.
		{"unreachable", []string{"-uri", "redis://:" + secret + "@127.0.0.1:1/"}, 1, "connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdin, lifeline := io.Pipe()
			stdout, stderr := &workertest.LockedBuffer{}, &workertest.LockedBuffer{}
			done := make(chan int, 1)
			go func() {
				done <- Run("gomap-worker", sampleRegistry(), append(c.args, "-hostname", "sec", "-lifeline"),
					Env{Stdin: stdin, Stdout: stdout, Stderr: stderr})
			}()
			if c.name == "unreachable" {
				redistest.Eventually(t, 10*time.Second, "the worker logs "+c.want, func() bool {
					return strings.Contains(stderr.String(), c.want)
				})
				if err := lifeline.Close(); err != nil {
					t.Fatal(err)
				}
			}
			var code int
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("still running after 20s; output:\n%s%s", stdout.String(), stderr.String())
			}
			if err := lifeline.Close(); err != nil {
				t.Fatal(err)
			}
			tlstest.AwaitDialProbes(t)
			out := stdout.String() + stderr.String()
			if code != c.code || !strings.Contains(out, c.want) {
				t.Errorf("exit %d, output %q; want %d and %q", code, out, c.code, c.want)
			}
			if strings.Contains(out, secret) {
				t.Errorf("the output shows the password:\n%s", out)
			}
		})
	}
}

// TestWorkerPresentsAClientCertificate: with -tls-client-cert and
// -tls-client-key the worker works on a Redis that demands client
// certificates (tls-auth-clients yes); its ready line masks the password.
func TestWorkerPresentsAClientCertificate(t *testing.T) {
	certs := tlstest.NewCerts(t)
	srv := tlstest.Start(t, tlstest.Options{Password: secret, TLS: certs, ClientAuth: true})
	stdin, lifeline := io.Pipe()
	stdout, logs := &workertest.LockedBuffer{}, &workertest.LockedBuffer{}
	args := []string{"-uri", "rediss://:" + secret + "@" + srv.Addr + "/", "-tls-cert", certs.CA,
		"-tls-client-cert", certs.ClientCert, "-tls-client-key", certs.ClientKey, "-lifeline", "-hostname", "mtls",
		"-queues", "sampleadd", "-log-level", "debug"}
	code := make(chan int, 1)
	go func() {
		code <- Run("gomap-worker", sampleRegistry(), args, Env{Stdin: stdin, Stdout: stdout, Stderr: logs})
	}()
	redistest.Eventually(t, 15*time.Second, "the worker writes its ready line", func() bool {
		return strings.HasSuffix(stdout.String(), "\n")
	})
	var ready readyLine
	if err := json.Unmarshal([]byte(stdout.String()), &ready); err != nil || ready.URI != "rediss://:xxxxx@"+srv.Addr+"/" {
		t.Errorf("ready line %q: %v; want the URI with its password masked", stdout.String(), err)
	}
	admin := srv.Admin(t)
	redistest.Eventually(t, 10*time.Second, "the worker has registered", func() bool {
		n, err := admin.HLen(t.Context(), "goworker:gomap:workers").Result()
		return err == nil && n == 1
	})
	if err := lifeline.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit %d; log:\n%s", c, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the worker did not stop within 15s of its lifeline closing")
	}
	if out := stdout.String() + logs.String(); strings.Contains(out, secret) {
		t.Errorf("the output shows the password:\n%s", out)
	}
}

func TestHelpExplainsTheSecurityFlags(t *testing.T) {
	var stderr bytes.Buffer
	if code := Run("gomap-worker", sampleRegistry(), []string{"-help"}, Env{Stderr: &stderr}); code != 0 {
		t.Fatalf("-help exited %d", code)
	}
	for _, want := range []string{"-tls-client-cert", "-tls-client-key", "tls-auth-clients", "-reject-timeout", "(default 10s)"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("-help does not mention %q", want)
		}
	}
}
