// Package tlstest starts real redis-servers on loopback TCP ports for tests
// of security: with a password, with ACL users, with TLS and with client
// certificates (tls-auth-clients), and makes the certificates, a CA of its
// own and one nobody trusts. Every process is stopped by its PID when the
// test ends.
package tlstest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gomap/gomap/worker/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// Certs are PEM files in a test's temporary directory.
type Certs struct {
	CA         string // the CA the server trusts and that signed its certificate
	ServerCert string // for 127.0.0.1 and localhost
	ServerKey  string
	ClientCert string // a client certificate the CA signed
	ClientKey  string
	OtherCA    string // a CA nobody trusts
	OtherCert  string // a client certificate OtherCA signed
	OtherKey   string
}

// NewCerts makes a CA, a server and a client certificate it signed, and a
// second CA with a client certificate of its own, valid for an hour.
func NewCerts(t testing.TB) *Certs {
	t.Helper()
	dir := t.TempDir()
	c := &Certs{}
	ca, caKey := newCA(t, dir, "gomap test CA", &c.CA)
	other, otherKey := newCA(t, dir, "untrusted CA", &c.OtherCA)
	c.ServerCert, c.ServerKey = leaf(t, dir, "server", ca, caKey, x509.ExtKeyUsageServerAuth)
	c.ClientCert, c.ClientKey = leaf(t, dir, "client", ca, caKey, x509.ExtKeyUsageClientAuth)
	c.OtherCert, c.OtherKey = leaf(t, dir, "other-client", other, otherKey, x509.ExtKeyUsageClientAuth)
	return c
}

func newCA(t testing.TB, dir, name string, path *string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, name)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	*path = writePEM(t, dir, name+".crt", "CERTIFICATE", der)
	return cert, key
}

func leaf(t testing.TB, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, use x509.ExtKeyUsage) (cert, key string) {
	t.Helper()
	k := newKey(t)
	tmpl := template(t, "gomap test "+name)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{use}
	if use == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+".crt", "CERTIFICATE", der), writePEM(t, dir, name+".key", "PRIVATE KEY", kder)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func template(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}
}

func writePEM(t testing.TB, dir, name, kind string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Options say how to start a Server.
type Options struct {
	// Password is the default user's password (requirepass); "" for none.
	Password string
	// TLS, when set, makes the server speak TLS only, with these certificates.
	TLS *Certs
	// ClientAuth makes the server demand a client certificate signed by
	// TLS.CA (tls-auth-clients yes).
	ClientAuth bool
	// Args are more redis-server arguments ("--aclfile", path, …).
	Args []string
}

// Server is a running redis-server on a loopback port.
type Server struct {
	Addr string // 127.0.0.1:port
	URI  string // redis:// or rediss://, without user or password
	o    Options
	cmd  *exec.Cmd

	exited  chan struct{} // closed once the process has exited
	waitErr error         // what Wait returned, once exited is closed
}

// Start starts a redis-server with o on a free loopback port and waits
// until the default user can PING it.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := redistest.Binary(t)
	dir := t.TempDir()
	port := freePort(t)
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), o: o}
	args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log")}
	if o.TLS == nil {
		s.URI = "redis://" + s.Addr + "/"
		args = append(args, "--port", strconv.Itoa(port))
	} else {
		s.URI = "rediss://" + s.Addr + "/"
		auth := "no"
		if o.ClientAuth {
			auth = "yes"
		}
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", o.TLS.ServerCert,
			"--tls-key-file", o.TLS.ServerKey, "--tls-ca-cert-file", o.TLS.CA, "--tls-auth-clients", auth)
	}
	if o.Password != "" {
		args = append(args, "--requirepass", o.Password)
	}
	s.cmd = exec.Command(bin, append(args, o.Args...)...)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	s.exited = make(chan struct{})
	go func() { s.waitErr = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() { s.stop(t) })
	admin := s.Admin(t)
	redistest.Eventually(t, 10*time.Second, "redis-server on "+s.Addr+" answers PING", func() bool {
		select {
		case <-s.exited:
			log, err := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server %v exited: %v; its log (%v):\n%s", args, s.waitErr, err, log)
		default:
		}
		return admin.Ping(context.Background()).Err() == nil
	})
	return s
}

// Admin returns a client of the server as its default user, presenting the
// client certificate under TLS; it is closed when the test ends.
func (s *Server) Admin(t testing.TB) *redis.Client {
	t.Helper()
	opt := &redis.Options{Addr: s.Addr, Password: s.o.Password, MaxRetries: -1, Protocol: 2}
	if c := s.o.TLS; c != nil {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("%s holds no PEM certificate", c.CA)
		}
		cert, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		opt.TLSConfig = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() {
		if err := rdb.Close(); err != nil {
			t.Errorf("closing the admin client: %v", err)
		}
	})
	return rdb
}

func (s *Server) stop(t testing.TB) {
	select {
	case <-s.exited:
		return // it failed to start, and Start said so
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("stopping redis-server %d: %v", s.cmd.Process.Pid, err)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("redis-server %d did not exit within 10s of SIGTERM; killing it", s.cmd.Process.Pid)
		if err := s.cmd.Process.Kill(); err != nil {
			t.Error(err)
		}
		<-s.exited
	}
	if ee, ok := s.waitErr.(*exec.ExitError); s.waitErr != nil && (!ok || ee.Exited()) {
		t.Errorf("redis-server %d: %v", s.cmd.Process.Pid, s.waitErr)
	}
}

// freePort is a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// AwaitDialProbes waits until no go-redis dial probe runs. A pool whose dials
// failed starts one; it sleeps a second between tries and ends at the first
// try after its pool is closed, so a test that reached an unreachable server
// calls this before goleak counts goroutines.
func AwaitDialProbes(t testing.TB) {
	t.Helper()
	buf := make([]byte, 1<<20)
	redistest.Eventually(t, 5*time.Second, "go-redis' dial probes have ended", func() bool {
		n := runtime.Stack(buf, true)
		return !bytes.Contains(buf[:n], []byte("internal/pool.(*ConnPool).tryDial"))
	})
}
