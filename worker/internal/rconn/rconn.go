// Package rconn opens go-redis clients from goworker-style URIs, and finds out
// whether the server is a Redis Cluster.
package rconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// MinVersion is the oldest Redis gomap runs on (LMOVE, BLMOVE, LPOP count).
const MinVersion = "6.2"

// Options say how to reach Redis.
type Options struct {
	// URI is redis://[user:pass@]host:port[/db], rediss://… (TLS) or
	// unix://[user:pass@]/path.sock[?db=N].
	URI string
	// TLSCertPath is a PEM file of CA certificates trusted besides the system
	// pool (rediss:// only).
	TLSCertPath string
	// InsecureTLS skips verification of the server certificate (rediss:// only).
	InsecureTLS bool
	// TLSClientCert and TLSClientKey are PEM files of a certificate and its
	// key that the client presents to the server (rediss:// only), for a
	// server with tls-auth-clients yes. Both or neither.
	TLSClientCert string
	TLSClientKey  string
	// Connections caps the connections of the client's pool; 0 leaves go-redis'
	// default.
	Connections int
	// ContextTimeout makes every command's socket deadlines follow its
	// context's deadline (go-redis' ContextTimeoutEnabled), so a call with a
	// deadline returns by it even while the server stalls.
	ContextTimeout bool
}

// Parse checks o and returns the go-redis options of a single-node client.
// Its errors never show the password of o.URI, even when o.URI does not
// parse.
func Parse(o Options) (*redis.Options, error) {
	opt, err := redis.ParseURL(o.URI)
	if err != nil {
		if p := split(o.URI); p.hasPassword && strings.ContainsAny(o.URI[p.passStart:p.passEnd], "/?#") {
			return nil, setupErrorf("redis URI %s: if the password holds '/', '?' or '#', percent-encode them (%%2F, %%3F, %%23)",
				Redacted(o.URI))
		}
		return nil, fmt.Errorf("redis URI %s: %w", Redacted(o.URI), redactErr(o.URI, err))
	}
	if o.TLSCertPath != "" || o.InsecureTLS || o.TLSClientCert != "" || o.TLSClientKey != "" {
		if opt.TLSConfig == nil {
			return nil, fmt.Errorf("redis URI %s: -tls-cert, -insecure-tls, -tls-client-cert and -tls-client-key need a rediss:// URI",
				Redacted(o.URI))
		}
		if err := configureTLS(opt.TLSConfig, o); err != nil {
			return nil, err
		}
	}
	if o.Connections > 0 {
		opt.PoolSize = o.Connections
		opt.MaxActiveConns = o.Connections
	}
	// RESP2: gomap uses nothing of RESP3, and RESP2 keeps go-redis off its
	// push-notification machinery (maintenance notifications, client-side
	// caching), which a worker has no use for.
	opt.Protocol = 2
	opt.ContextTimeoutEnabled = o.ContextTimeout
	return opt, nil
}

func configureTLS(cfg *tls.Config, o Options) error {
	cfg.InsecureSkipVerify = o.InsecureTLS // asked for with -insecure-tls
	if (o.TLSClientCert == "") != (o.TLSClientKey == "") {
		return errors.New("tls client certificate: give both -tls-client-cert and -tls-client-key, or neither")
	}
	if o.TLSClientCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSClientCert, o.TLSClientKey)
		if err != nil {
			return fmt.Errorf("tls client certificate %s, key %s: %w", o.TLSClientCert, o.TLSClientKey, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.TLSCertPath == "" {
		return nil
	}
	pem, err := os.ReadFile(o.TLSCertPath)
	if err != nil {
		return fmt.Errorf("tls cert: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("tls cert %s: no PEM certificate in it", o.TLSCertPath)
	}
	cfg.RootCAs = pool
	return nil
}

// Open connects to the server of o, checks its version, and returns a cluster
// client when the server runs in cluster mode, a single-node client otherwise.
func Open(ctx context.Context, o Options) (redis.UniversalClient, error) {
	opt, err := Parse(o)
	if err != nil {
		return nil, err
	}
	asked := watchCertRequests(opt.TLSConfig)
	single := redis.NewClient(opt)
	// One section per INFO: Redis 6.2 takes no list of sections.
	info, err := single.Info(ctx, "server").Result()
	if err == nil {
		var cluster string
		cluster, err = single.Info(ctx, "cluster").Result()
		info += cluster
	}
	if err != nil {
		err = certRefused(err, asked, opt.TLSConfig != nil && len(opt.TLSConfig.Certificates) > 0)
		return nil, errors.Join(fmt.Errorf("redis %s: %w", Redacted(o.URI), redactErr(o.URI, err)), single.Close())
	}
	if err := checkVersion(info); err != nil {
		return nil, errors.Join(fmt.Errorf("redis %s: %w", Redacted(o.URI), err), single.Close())
	}
	if !strings.Contains(info, "cluster_enabled:1") {
		return single, nil
	}
	if err := single.Close(); err != nil {
		return nil, err
	}
	if opt.DB != 0 {
		return nil, setupErrorf("redis %s: a Redis Cluster has only database 0; drop the database from the URI", Redacted(o.URI))
	}
	return redis.NewClusterClient(ClusterOptions(opt)), nil
}

// ClusterReload is how old a cluster client's view of the topology (which
// master serves which slot) may get before the next command reloads it.
// go-redis reloads it at once only on a MOVED or ASK reply, not when a master
// stops answering; after a failover the commands for the dead master's slots
// would fail until the next reload (go-redis' default: 60 s). One reload is a
// CLUSTER SLOTS per worker process, in the background.
const ClusterReload = time.Second

// ClusterOptions turns single-node options into cluster options seeded with
// that node.
func ClusterOptions(opt *redis.Options) *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:          []string{opt.Addr},
		Username:       opt.Username,
		Password:       opt.Password,
		TLSConfig:      opt.TLSConfig,
		PoolSize:       opt.PoolSize,
		MaxActiveConns: opt.MaxActiveConns,
		Dialer:         opt.Dialer,
		Protocol:       opt.Protocol,

		ContextTimeoutEnabled:      opt.ContextTimeoutEnabled,
		ClusterStateReloadInterval: ClusterReload,
	}
}

func checkVersion(info string) error {
	for line := range strings.SplitSeq(info, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		if versionLess(v, MinVersion) {
			return setupErrorf("redis %s is too old: gomap needs %s or newer", v, MinVersion)
		}
		return nil
	}
	return nil // servers that hide their version are given the benefit of the doubt
}

// versionLess compares dotted versions numerically ("6.10" > "6.2").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if x, y := leadingInt(as[i]), leadingInt(bs[i]); x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}

// leadingInt reads the digits a version part starts with ("15-rc1" → 15).
func leadingInt(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}
