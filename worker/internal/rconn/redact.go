package rconn

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// Redaction. A password must never reach a message: not through the URI
// itself, and not through an error of a parser that quotes the URI (net/url
// does, whole). The masking below does not need the URI to parse, so a URI
// with a typo in its port is masked as well as a good one.

// mask replaces a password in messages.
const mask = "xxxxx"

// Redacted returns uri with its password replaced by "xxxxx", for messages:
// the password of the user information, and the value of every query
// parameter whose name holds "pass", "secret" or "token" (redis-py's
// ?password=). uri need not parse. Where it is ambiguous, more is masked
// rather than less.
func Redacted(uri string) string {
	p := split(uri)
	out := uri
	if p.hasPassword {
		out = uri[:p.passStart] + mask + uri[p.passEnd:]
	}
	if p.query < 0 {
		return out
	}
	shift := len(out) - len(uri) // the query starts this much further in out
	return out[:p.query+shift] + redactQuery(uri[p.query:])
}

// parts are the positions in a URI that hold secrets.
type parts struct {
	hasPassword        bool
	passStart, passEnd int // the password is uri[passStart:passEnd]
	query              int // the query (after '?') starts here; -1 for none
}

// split finds the password and the query of uri without parsing it as a
// URL: the user information runs from "://" to the last '@' (a password
// with an unescaped '@', '/' or '?' is masked whole), the password from its
// first ':', and the query from the first '?' after the user information.
func split(uri string) parts {
	p := parts{query: -1}
	start := 0
	if i := strings.Index(uri, "://"); i >= 0 {
		start = i + 3
	}
	hostStart := start
	if at := strings.LastIndex(uri[start:], "@"); at >= 0 {
		at += start
		hostStart = at + 1
		if colon := strings.Index(uri[start:at], ":"); colon >= 0 {
			p.hasPassword = true
			p.passStart, p.passEnd = start+colon+1, at
		}
	}
	if q := strings.IndexByte(uri[hostStart:], '?'); q >= 0 {
		p.query = hostStart + q + 1
	}
	return p
}

// secretQueryKey says whether a query parameter holds a secret.
func secretQueryKey(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "pass") || strings.Contains(k, "secret") || strings.Contains(k, "token")
}

// redactQuery masks the values of secret parameters in a raw query,
// keeping the rest as written.
func redactQuery(q string) string {
	frag := ""
	if i := strings.Index(q, "#"); i >= 0 {
		q, frag = q[:i], q[i:]
	}
	params := strings.Split(q, "&")
	for i, kv := range params {
		k, _, ok := strings.Cut(kv, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if ok && secretQueryKey(k) {
			params[i] = kv[:strings.Index(kv, "=")+1] + mask
		}
	}
	return strings.Join(params, "&") + frag
}

// secrets are the strings of uri that a message must not show: the
// password and the secret query values, as written and percent-decoded.
func secrets(uri string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if d, err := url.PathUnescape(s); err == nil && d != s {
			out = append(out, d)
		}
		if d, err := url.QueryUnescape(s); err == nil && d != s {
			out = append(out, d)
		}
	}
	p := split(uri)
	if p.hasPassword {
		add(uri[p.passStart:p.passEnd])
	}
	if p.query >= 0 {
		q, _, _ := strings.Cut(uri[p.query:], "#")
		for kv := range strings.SplitSeq(q, "&") {
			k, v, ok := strings.Cut(kv, "=")
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			}
			if ok && secretQueryKey(k) {
				add(v)
			}
		}
	}
	return out
}

// scrub returns msg with uri replaced by its redacted form and every secret
// of uri masked, also where a parser quoted only a piece of one (net/url's
// invalid URL escape "%zz").
func scrub(msg, uri string) string {
	if uri != "" {
		msg = strings.ReplaceAll(msg, uri, Redacted(uri))
	}
	secs := secrets(uri)
	for _, s := range secs {
		msg = strings.ReplaceAll(msg, s, mask)
	}
	if len(secs) == 0 {
		return msg
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		b.WriteString(msg[:i])
		msg = msg[i:]
		q, err := strconv.QuotedPrefix(msg)
		if err != nil { // an unbalanced quote
			b.WriteByte('"')
			msg = msg[1:]
			continue
		}
		msg = msg[len(q):]
		if s, err := strconv.Unquote(q); err == nil && s != "" && pieceOf(s, secs) {
			q = `"` + mask + `"`
		}
		b.WriteString(q)
	}
}

// pieceOf says whether s is part of one of secs.
func pieceOf(s string, secs []string) bool {
	for _, sec := range secs {
		if strings.Contains(sec, s) {
			return true
		}
	}
	return false
}

// redactedError is an error whose message has been scrubbed of a URI's
// secrets. It keeps the error it was made from for errors.Is and errors.As
// (to tell a wrong password from a refused connection); that error's own
// message may hold the secret, so code that prints errors prints this one.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr wraps err (nil stays nil) so that its message cannot show the
// secrets of uri. An error of net/url, which quotes the whole URI, is
// replaced by what it says about the URI, without the chain.
func redactErr(uri string, err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &redactedError{msg: scrub(ue.Err.Error(), uri)}
	}
	return &redactedError{msg: scrub(err.Error(), uri), err: err}
}
