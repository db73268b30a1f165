package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gomap/gomap/worker"
	"github.com/gomap/gomap/worker/internal/tlstest"
	"github.com/gomap/gomap/worker/internal/workertest"
	"github.com/gomap/gomap/worker/samples"
)

const secret = "S3cr3t-pw"

func noEnv(string) string { return "" }

// TestNoOutputShowsThePassword runs gomap-enqueue with every kind of URI
// that fails, against real servers, and scans what it writes.
func TestNoOutputShowsThePassword(t *testing.T) {
	certs := tlstest.NewCerts(t)
	srv := tlstest.Start(t, tlstest.Options{Password: secret,
		Args: []string{"--user", "noperm", "on", ">" + secret, "~*", "+@all", "-rpush"}})
	mtls := tlstest.Start(t, tlstest.Options{Password: secret, TLS: certs, ClientAuth: true})
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"bad port", []string{"-uri", "redis://:" + secret + "@localhost:63x9"}, `invalid port ":63x9"`},
		{"password in the query", []string{"-uri", "redis://" + srv.Addr + "/?password=" + secret}, "password=xxxxx"},
		{"unreachable", []string{"-uri", "redis://:" + secret + "@127.0.0.1:1/"}, "connection refused"},
		{"wrong password", []string{"-uri", "redis://:wrong" + secret + "@" + srv.Addr + "/"}, "check the user name and password"},
		{"no permission", []string{"-uri", "redis://noperm:" + secret + "@" + srv.Addr + "/"}, "NOPERM"},
		{"unknown CA", []string{"-uri", "rediss://:" + secret + "@" + mtls.Addr + "/", "-tls-cert", certs.OtherCA}, "unknown authority"},
		{"no client certificate", []string{"-uri", "rediss://:" + secret + "@" + mtls.Addr + "/", "-tls-cert", certs.CA},
			"-tls-client-cert"},
		{"TLS flags without rediss", []string{"-uri", "redis://:" + secret + "@" + srv.Addr + "/", "-insecure-tls"}, "rediss://"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append(c.args, "-class", "sampleadd", "1", "2"), noEnv, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != 1 || !strings.Contains(out, c.want) {
				t.Errorf("exit %d, output %q; want 1 and %q", code, out, c.want)
			}
			if strings.Contains(out, secret) {
				t.Errorf("the output shows the password:\n%s", out)
			}
		})
	}
}

// TestEnqueueAndMapOverMutualTLS: with a client certificate, gomap-enqueue
// pushes jobs and maps over a Redis that demands one, served by a worker
// that presents its own.
func TestEnqueueAndMapOverMutualTLS(t *testing.T) {
	certs := tlstest.NewCerts(t)
	srv := tlstest.Start(t, tlstest.Options{Password: secret, TLS: certs, ClientAuth: true})
	uri := "rediss://:" + secret + "@" + srv.Addr + "/"
	reg := worker.NewRegistry()
	samples.Register(reg)
	workertest.Run(t, worker.Config{URI: uri, Hostname: "mtls", TLSCertPath: certs.CA,
		TLSClientCertPath: certs.ClientCert, TLSClientKeyPath: certs.ClientKey}, reg)
	tlsArgs := []string{"-uri", uri, "-tls-cert", certs.CA, "-tls-client-cert", certs.ClientCert, "-tls-client-key", certs.ClientKey}

	var stdout, stderr bytes.Buffer
	if code := run(append(tlsArgs, "-queue", "plain", "-class", "sampleadd", "1", "2"), noEnv, &stdout, &stderr); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, stderr.String())
	}
	if n, err := srv.Admin(t).LLen(t.Context(), "goworker:queue:plain").Result(); err != nil || n != 1 {
		t.Errorf("queue plain holds %d jobs (%v), want 1", n, err)
	}
	if code := run(append(tlsArgs, "-map", "-class", "sampleadd", "[1,2]", "[3,4]"), noEnv, &stdout, &stderr); code != 0 ||
		stdout.String() != "3\n7\n" {
		t.Errorf("map: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}
