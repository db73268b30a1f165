package rconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// setupError is a fault of the setup that no retry cures: a server too
// old, a database a cluster does not have.
type setupError string

func (e setupError) Error() string { return string(e) }

func setupErrorf(format string, args ...any) error {
	return setupError(fmt.Sprintf(format, args...))
}

// Rejection says whether err is one that Redis, or the TLS handshake with
// it, will keep giving however often it is retried: a wrong password, a
// missing ACL permission, a certificate one side does not accept, a
// database the server does not have, a server too old. It returns what to
// do about it; "" for any other error (a refused connection, a timeout, a
// server still loading), which may pass.
//
// A Redis that is starting may answer with its ACLs not yet loaded, so a
// caller retries a rejection for a few seconds before it gives up.
func Rejection(err error) string {
	if err == nil {
		return ""
	}
	if _, ok := errors.AsType[setupError](err); ok {
		return "fix the setup and start again"
	}
	if re, ok := errors.AsType[redis.Error](err); ok {
		return redisRejection(re.Error())
	}
	return tlsRejection(err)
}

func redisRejection(msg string) string {
	switch {
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "ERR invalid password"),
		strings.HasPrefix(msg, "ERR invalid username-password"):
		return "check the user name and password in the URI (redis://user:password@host:port/db)"
	case strings.HasPrefix(msg, "ERR AUTH"), strings.HasPrefix(msg, "ERR Client sent AUTH"):
		return "the server has no password set: drop the password from the URI, or give the server one"
	case strings.HasPrefix(msg, "NOAUTH"):
		return "the server wants a password: put it in the URI (redis://user:password@host:port/db)"
	case strings.HasPrefix(msg, "NOPERM"):
		return "grant the Redis ACL user the keys and commands gomap needs (docs/security.md lists them)"
	case strings.HasPrefix(msg, "ERR DB index is out of range"), strings.HasPrefix(msg, "ERR invalid DB index"):
		return "choose a database the server has (its 'databases' setting)"
	case strings.HasPrefix(msg, "ERR SELECT is not allowed in cluster mode"):
		return "a Redis Cluster has only database 0: drop the database from the URI"
	}
	return ""
}

func tlsRejection(err error) string {
	if e, ok := errors.AsType[*certRefusedError](err); ok {
		if e.sent {
			return "the server did not accept the client certificate: give one signed by a CA in its tls-ca-cert-file " +
				"(-tls-client-cert and -tls-client-key)"
		}
		return "the server wants a client certificate (tls-auth-clients): give -tls-client-cert and -tls-client-key"
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return "the server's certificate is signed by a CA this side does not trust: give that CA's PEM file (-tls-cert)"
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return "the server's certificate is not for the host in the URI: connect by a name or address the certificate lists"
	}
	if _, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return "the server's certificate is not valid (expired, not yet valid, or not for a server): renew it"
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return "the server's certificate did not verify: check it and the CA file (-tls-cert)"
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return "the server does not speak TLS there: use redis:// for a plain port, rediss:// for its tls-port"
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "remote error" && strings.HasPrefix(oe.Err.Error(), "tls: ") {
		return "the server refused the TLS handshake; if it has tls-auth-clients on, give a client certificate signed by " +
			"a CA it trusts (-tls-client-cert and -tls-client-key)"
	}
	return ""
}

// A server with tls-auth-clients checks the client's certificate after the
// TLS 1.3 handshake has completed on the client's side: a client without
// one, or with one the server does not trust, sees its first command fail
// with a reset connection rather than a TLS error. What tells it apart from
// a network fault is that the server asked for a certificate; Open watches
// for that and calls such a failure what it is.

// watchCertRequests makes cfg (nil for a plain connection) note when a
// server asks for a client certificate, still presenting cfg's certificate
// if it has one. It returns the note.
func watchCertRequests(cfg *tls.Config) *atomic.Bool {
	asked := &atomic.Bool{}
	if cfg == nil || cfg.GetClientCertificate != nil {
		return asked
	}
	certs := cfg.Certificates
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		asked.Store(true)
		if len(certs) > 0 {
			return &certs[0], nil
		}
		return &tls.Certificate{}, nil // none: the server decides
	}
	return asked
}

// certRefusedError is a connection that the server closed right after it
// asked for a client certificate.
type certRefusedError struct {
	err  error
	sent bool // whether a certificate was presented
}

func (e *certRefusedError) Error() string {
	if e.sent {
		return fmt.Sprintf("%v (the server asked for a client certificate, took the one given, and closed the connection)", e.err)
	}
	return fmt.Sprintf("%v (the server asked for a client certificate, none was given, and it closed the connection)", e.err)
}

func (e *certRefusedError) Unwrap() error { return e.err }

// certRefused marks err as a refused client certificate when the server
// asked for one and then cut the connection.
func certRefused(err error, asked *atomic.Bool, sent bool) error {
	if !asked.Load() || Rejection(err) != "" {
		return err
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return &certRefusedError{err: err, sent: sent}
	}
	return err
}
