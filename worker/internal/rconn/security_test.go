package rconn

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/gomap/gomap/worker/internal/tlstest"
	"github.com/redis/go-redis/v9"
)

// secret is the password of the tests below; no message may show it.
const secret = "S3cr3t-pw"

func TestRedactedMasksEveryForm(t *testing.T) {
	for uri, want := range map[string]string{
		"redis://user:" + secret + "@h:6379/0":                "redis://user:xxxxx@h:6379/0",
		"redis://:" + secret + "@h:6379":                      "redis://:xxxxx@h:6379",
		"redis://h:6379/0?password=" + secret + "&db=2":       "redis://h:6379/0?password=xxxxx&db=2",
		"rediss://u:" + secret + "@h/1?pass=" + secret:        "rediss://u:xxxxx@h/1?pass=xxxxx",
		"unix://:" + secret + "@/tmp/redis.sock?db=1":         "unix://:xxxxx@/tmp/redis.sock?db=1",
		"redis://:" + secret + "@localhost:63x9":              "redis://:xxxxx@localhost:63x9",
		"redis://:" + secret + "@[::1:6379":                   "redis://:xxxxx@[::1:6379",
		"redis://:ab/cd?ef#" + secret + "@h:1/0":              "redis://:xxxxx@h:1/0",
		"redis://h:1/?client_name=w&Password=" + secret + "#": "redis://h:1/?client_name=w&Password=xxxxx#",
		"redis://user@h:6379/0":                               "redis://user@h:6379/0",
		"unix:///tmp/redis.sock?db=2":                         "unix:///tmp/redis.sock?db=2",
		"":                                                    "",
	} {
		if got := Redacted(uri); got != want {
			t.Errorf("Redacted(%q) = %q, want %q", uri, got, want)
		}
	}
}

// leaks says whether msg shows the password, as written or encoded.
func leaks(msg, password string) bool {
	for _, form := range []string{password, url.QueryEscape(password), url.PathEscape(password)} {
		if strings.Contains(msg, form) {
			return true
		}
	}
	return false
}

// TestNoMessageShowsThePassword triggers every error of Parse and Open that
// a URI with a password can meet, against real servers, and scans each
// message for the password.
func TestNoMessageShowsThePassword(t *testing.T) {
	certs := tlstest.NewCerts(t)
	plain := tlstest.Start(t, tlstest.Options{Password: secret})
	mtls := tlstest.Start(t, tlstest.Options{Password: secret, TLS: certs, ClientAuth: true})
	acl := tlstest.Start(t, tlstest.Options{Password: secret,
		Args: []string{"--user", "limited", "on", ">" + secret, "~*", "+ping"}}) // no INFO
	cluster := redistest.StartCluster(t)
	clusterAddr := strings.TrimSuffix(strings.TrimPrefix(cluster, "redis://"), "/")
	node := redis.NewClient(&redis.Options{Addr: clusterAddr, MaxRetries: -1})
	if err := node.ConfigSet(context.Background(), "requirepass", secret).Err(); err != nil {
		t.Fatal(err)
	}
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}

	tlsOK := Options{TLSCertPath: certs.CA, TLSClientCert: certs.ClientCert, TLSClientKey: certs.ClientKey}
	cases := []struct {
		name     string
		password string
		o        Options
	}{
		{"bad port", secret, Options{URI: "redis://:" + secret + "@localhost:63x9"}},
		{"bad scheme", secret, Options{URI: "http://:" + secret + "@localhost:6379/"}},
		{"bad host", secret, Options{URI: "redis://:" + secret + "@[::1:6379"}},
		{"bad escape in the password", "pw%zzpw", Options{URI: "redis://:pw%zzpw@localhost:6379"}},
		{"unescaped slash in the password", "pw/" + secret, Options{URI: "redis://:pw/" + secret + "@localhost:6379/0"}},
		{"bad database", secret, Options{URI: "redis://:" + secret + "@localhost:6379/zero"}},
		{"password in the query", secret, Options{URI: "redis://localhost:6379/?password=" + secret}},
		{"pass in the query", secret, Options{URI: "redis://:" + secret + "@localhost:6379/?db=1&pass=" + secret}},
		{"unix socket missing", secret, Options{URI: "unix://:" + secret + "@/nonexistent/redis.sock?db=1"}},
		{"unreachable host", secret, Options{URI: "redis://:" + secret + "@127.0.0.1:1/"}},
		{"wrong password", "wrong-" + secret, Options{URI: "redis://:wrong-" + secret + "@" + plain.Addr + "/"}},
		{"wrong user", secret, Options{URI: "redis://nobody:" + secret + "@" + plain.Addr + "/"}},
		{"no such database", secret, Options{URI: "redis://:" + secret + "@" + plain.Addr + "/99"}},
		{"no permission", secret, Options{URI: "redis://limited:" + secret + "@" + acl.Addr + "/"}},
		{"cluster database 1", secret, Options{URI: "redis://:" + secret + "@" + clusterAddr + "/1"}},
		{"TLS to a plain port", secret, Options{URI: "rediss://:" + secret + "@" + plain.Addr + "/", InsecureTLS: true}},
		{"plain to a TLS port", secret, Options{URI: "redis://:" + secret + "@" + mtls.Addr + "/"}},
		{"TLS options without rediss", secret, Options{URI: "redis://:" + secret + "@" + plain.Addr + "/", TLSCertPath: certs.CA}},
		{"CA not trusted", secret, Options{URI: "rediss://:" + secret + "@" + mtls.Addr + "/", TLSCertPath: certs.OtherCA,
			TLSClientCert: certs.ClientCert, TLSClientKey: certs.ClientKey}},
		{"CA file missing", secret, Options{URI: "rediss://:" + secret + "@" + mtls.Addr + "/", TLSCertPath: "/nonexistent/ca.pem"}},
		{"no client certificate", secret, Options{URI: "rediss://:" + secret + "@" + mtls.Addr + "/", TLSCertPath: certs.CA}},
		{"client certificate of another CA", secret, Options{URI: "rediss://:" + secret + "@" + mtls.Addr + "/",
			TLSCertPath: certs.CA, TLSClientCert: certs.OtherCert, TLSClientKey: certs.OtherKey}},
		{"client key missing", secret, Options{URI: "rediss://:" + secret + "@" + mtls.Addr + "/", TLSCertPath: certs.CA,
			TLSClientCert: certs.ClientCert}},
		{"wrong password over mutual TLS", "wrong-" + secret, Options{URI: "rediss://:wrong-" + secret + "@" + mtls.Addr + "/",
			TLSCertPath: tlsOK.TLSCertPath, TLSClientCert: tlsOK.TLSClientCert, TLSClientKey: tlsOK.TLSClientKey}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // TLS to a plain port hangs until then
			defer cancel()
			rdb, err := Open(ctx, c.o)
			if err == nil {
				t.Errorf("Open(%s) succeeded", Redacted(c.o.URI))
				if err := rdb.Close(); err != nil {
					t.Error(err)
				}
				return
			}
			msg := err.Error()
			if leaks(msg, c.password) || strings.Contains(msg, "%zz") {
				t.Errorf("the message shows the password: %s", msg)
			}
			t.Logf("%s", msg)
			if _, perr := Parse(c.o); perr != nil && leaks(perr.Error(), c.password) {
				t.Errorf("Parse's message shows the password: %v", perr)
			}
		})
	}
}

func TestMutualTLS(t *testing.T) {
	certs := tlstest.NewCerts(t)
	srv := tlstest.Start(t, tlstest.Options{TLS: certs, ClientAuth: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb, err := Open(ctx, Options{URI: srv.URI, TLSCertPath: certs.CA, TLSClientCert: certs.ClientCert, TLSClientKey: certs.ClientKey})
	if err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Errorf("SET over mutual TLS: %v", err)
	}
	if err := rdb.Close(); err != nil {
		t.Error(err)
	}
	for name, o := range map[string]Options{
		"no client certificate":            {URI: srv.URI, TLSCertPath: certs.CA},
		"client certificate of another CA": {URI: srv.URI, TLSCertPath: certs.CA, TLSClientCert: certs.OtherCert, TLSClientKey: certs.OtherKey},
	} {
		_, err := Open(ctx, o)
		if err == nil {
			t.Fatalf("%s: Open succeeded", name)
		}
		if fix := Rejection(err); !strings.Contains(fix, "-tls-client-cert") {
			t.Errorf("%s: %v: Rejection = %q, want the client certificate named", name, err, fix)
		}
	}
}

// TestRejection tells the errors retries do not cure from those that pass,
// as real servers give them.
func TestRejection(t *testing.T) {
	certs := tlstest.NewCerts(t)
	plain := tlstest.Start(t, tlstest.Options{Password: secret,
		Args: []string{"--user", "limited", "on", ">" + secret, "~*", "+ping"}})
	tlsSrv := tlstest.Start(t, tlstest.Options{TLS: certs})
	mtls := tlstest.Start(t, tlstest.Options{TLS: certs, ClientAuth: true})
	for _, c := range []struct {
		name, uri string
		ca        string
		want      string // a word of the fix; "" for a passing error
	}{
		{"wrong password", "redis://:nope@" + plain.Addr + "/", "", "password"},
		{"no password", "redis://" + plain.Addr + "/", "", "wants a password"},
		{"no permission", "redis://limited:" + secret + "@" + plain.Addr + "/", "", "ACL"},
		{"no such database", "redis://:" + secret + "@" + plain.Addr + "/99", "", "database"},
		{"CA not trusted", tlsSrv.URI, certs.OtherCA, "CA"},
		{"no client certificate", mtls.URI, certs.CA, "-tls-client-cert"},
		{"client certificate of another CA", mtls.URI, certs.CA, "-tls-client-cert"},
		{"connection refused", "redis://127.0.0.1:1/", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			o := Options{URI: c.uri, TLSCertPath: c.ca}
			if strings.Contains(c.name, "another CA") {
				o.TLSClientCert, o.TLSClientKey = certs.OtherCert, certs.OtherKey
			}
			_, err := Open(ctx, o)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			fix := Rejection(err)
			if (c.want == "") != (fix == "") || !strings.Contains(fix, c.want) {
				t.Errorf("%v: Rejection = %q, want one with %q", err, fix, c.want)
			}
		})
	}
}
