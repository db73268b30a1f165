package rconn

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestParseHonoursUserPasswordAndDB(t *testing.T) {
	for uri, want := range map[string][4]string{
		"redis://u:p%40ss@host:6380/2":     {"tcp", "host:6380", "u:p@ss", "2"},
		"redis://localhost:6379/":          {"tcp", "localhost:6379", ":", "0"},
		"unix://u:pw@/tmp/redis.sock?db=3": {"unix", "/tmp/redis.sock", "u:pw", "3"},
		"unix:///tmp/redis.sock":           {"unix", "/tmp/redis.sock", ":", "0"},
		"rediss://:secret@host:6379/1":     {"tcp", "host:6379", ":secret", "1"},
	} {
		opt, err := Parse(Options{URI: uri})
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		got := [4]string{opt.Network, opt.Addr, opt.Username + ":" + opt.Password, strconv.Itoa(opt.DB)}
		if got != want {
			t.Errorf("%s: %v, want %v", uri, got, want)
		}
	}
	if opt, err := Parse(Options{URI: "redis://h:1/", Connections: 3}); err != nil || opt.PoolSize != 3 || opt.MaxActiveConns != 3 {
		t.Errorf("connections: %+v, %v", opt, err)
	}
}

func TestTLSOptions(t *testing.T) {
	if _, err := Parse(Options{URI: "redis://h:1/", InsecureTLS: true}); err == nil {
		t.Error("-insecure-tls with redis:// must be an error")
	}
	opt, err := Parse(Options{URI: "rediss://h:1/", InsecureTLS: true})
	if err != nil || opt.TLSConfig == nil || !opt.TLSConfig.InsecureSkipVerify {
		t.Errorf("rediss with insecure: %+v, %v", opt, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(Options{URI: "rediss://h:1/", TLSCertPath: bad}); err == nil {
		t.Error("a cert file without PEM must be an error")
	}
}

func TestRedactedHidesThePassword(t *testing.T) {
	if got := Redacted("redis://user:secret@host:6379/0"); got != "redis://user:xxxxx@host:6379/0" {
		t.Errorf("Redacted = %s", got)
	}
}

func TestVersionCheck(t *testing.T) {
	for info, ok := range map[string]bool{
		"redis_version:7.0.15\r\n": true, "redis_version:6.2.14\r\n": true, "redis_version:6.10.0\r\n": true,
		"redis_version:6.0.9\r\n": false, "redis_version:5.0.7\r\n": false, "no version here": true,
	} {
		if err := checkVersion(info); (err == nil) != ok {
			t.Errorf("%q: %v", info, err)
		}
	}
}

func TestClusterClientsReloadTheTopologyOften(t *testing.T) {
	// After a failover, a cluster client must find the promoted replica within
	// about a second, not at go-redis' default of 60 s (tests/test_failover.py).
	opt, err := Parse(Options{URI: "redis://h:1/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ClusterOptions(opt).ClusterStateReloadInterval; got != ClusterReload || got > 2*time.Second {
		t.Errorf("ClusterStateReloadInterval = %v, want %v", got, ClusterReload)
	}
}
