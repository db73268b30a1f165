package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Proxy is a loopback TCP proxy in front of a Server, for tests of what a
// client does when its connection drops. It can cut a connection right after
// the server answered a chosen command: the command ran, its reply never
// reaches the client. It speaks just enough RESP to tell commands and
// replies apart. Close (also called when the test ends) stops it and every
// connection it holds.
type Proxy struct {
	URI  string // redis://127.0.0.1:port/
	Addr string // 127.0.0.1:port

	target  *Server
	l       net.Listener
	t       testing.TB
	wg      sync.WaitGroup
	mu      sync.Mutex
	match   func(args []string) bool
	drops   int
	conns   map[net.Conn]struct{}
	down    bool
	closed  bool
	closing sync.Once
}

// StartProxy starts a proxy to s on a loopback port.
func StartProxy(t testing.TB, s *Server) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String(), target: s, l: l, t: t, conns: map[net.Conn]struct{}{}}
	p.URI = "redis://" + p.Addr + "/"
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// DropReplyTo makes the proxy cut the connection of the next command for
// which match returns true, once the server has answered it, without passing
// that reply (or anything after it) on. match sees the command's arguments,
// its name first as the client sent it; it is called for every command,
// one at a time, until it returns true.
func (p *Proxy) DropReplyTo(match func(args []string) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.match = match
}

// Drops is the number of connections cut so far.
func (p *Proxy) Drops() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drops
}

// Cut closes every connection and, until Restore, every new one as soon as
// it is accepted, as a network partition would.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		delete(p.conns, c)
		if err := ignoreClosed(c.Close()); err != nil {
			p.t.Errorf("proxy: %v", err)
		}
	}
}

// Restore lets connections through again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// Close stops accepting, closes every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() {
	p.closing.Do(func() {
		p.mu.Lock()
		p.closed = true
		errs := []error{p.l.Close()}
		for c := range p.conns {
			errs = append(errs, ignoreClosed(c.Close()))
		}
		p.mu.Unlock()
		p.wg.Wait()
		if err := errors.Join(errs...); err != nil {
			p.t.Errorf("closing the proxy: %v", err)
		}
	})
}

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return // closed
		}
		if p.isDown() {
			if err := c.Close(); err != nil {
				p.t.Errorf("proxy: %v", err)
			}
			continue
		}
		network := "tcp"
		if strings.HasPrefix(p.target.URI, "unix://") {
			network = "unix"
		}
		s, err := net.Dial(network, p.target.Addr)
		if err != nil {
			p.t.Errorf("proxy: dialing redis-server: %v", err)
			if err := c.Close(); err != nil {
				p.t.Errorf("proxy: %v", err)
			}
			continue
		}
		if !p.track(c, s) { // closed, or cut since the check above
			if err := errors.Join(c.Close(), s.Close()); err != nil {
				p.t.Errorf("proxy: %v", err)
			}
			continue
		}
		pc := &proxyConn{p: p, client: c, server: s}
		p.wg.Go(pc.up)
		p.wg.Go(pc.down)
	}
}

func (p *Proxy) isDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.down {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// cut closes both sides of a connection, once.
func (p *Proxy) cut(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		if _, ok := p.conns[c]; ok {
			delete(p.conns, c)
			if err := ignoreClosed(c.Close()); err != nil {
				p.t.Errorf("proxy: %v", err)
			}
		}
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// proxyConn is one client connection and its connection to the server.
type proxyConn struct {
	p              *Proxy
	client, server net.Conn
	mu             sync.Mutex
	awaiting       []bool // per command sent and not yet answered: drop its reply
}

// up passes commands from the client to the server, noting for each whether
// its reply is to be dropped.
func (c *proxyConn) up() {
	defer c.p.cut(c.client, c.server)
	r := bufio.NewReader(c.client)
	for {
		var args []string
		raw, err := readRESP(r, nil, &args, 0)
		if err != nil {
			return
		}
		c.p.mu.Lock()
		drop := c.p.match != nil && c.p.match(args)
		if drop {
			c.p.match = nil
		}
		c.p.mu.Unlock()
		c.mu.Lock()
		c.awaiting = append(c.awaiting, drop)
		c.mu.Unlock()
		if _, err := c.server.Write(raw); err != nil {
			return
		}
	}
}

// down passes replies from the server to the client, one at a time, and cuts
// the connection at the reply to be dropped.
func (c *proxyConn) down() {
	defer c.p.cut(c.client, c.server)
	r := bufio.NewReader(c.server)
	for {
		raw, err := readRESP(r, nil, nil, 0)
		if err != nil {
			return
		}
		c.mu.Lock()
		drop := len(c.awaiting) > 0 && c.awaiting[0]
		if len(c.awaiting) > 0 {
			c.awaiting = c.awaiting[1:]
		}
		c.mu.Unlock()
		if drop {
			c.p.mu.Lock()
			c.p.drops++
			c.p.mu.Unlock()
			return
		}
		if _, err := c.client.Write(raw); err != nil {
			return
		}
	}
}

// readRESP reads one RESP value from r, appending its bytes to raw. With
// args, the bulk strings of a top-level array (a command) are appended to it.
func readRESP(r *bufio.Reader, raw []byte, args *[]string, depth int) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return raw, err
	}
	raw = append(raw, line...)
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return raw, fmt.Errorf("bad RESP line %q", line)
	}
	head := string(line[1 : len(line)-2])
	switch line[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return raw, nil
	case '$', '=', '!':
		n, err := strconv.Atoi(head)
		if err != nil || n < 0 {
			return raw, err // -1: a nil bulk string
		}
		start := len(raw)
		raw = append(raw, make([]byte, n+2)...)
		if _, err := io.ReadFull(r, raw[start:]); err != nil {
			return raw, err
		}
		if args != nil && depth == 1 {
			*args = append(*args, string(raw[start:start+n]))
		}
		return raw, nil
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(head)
		if err != nil || n < 0 {
			return raw, err // -1: a nil array
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		if line[0] == '|' {
			n++ // an attribute precedes the value it describes
		}
		for range n {
			if raw, err = readRESP(r, raw, args, depth+1); err != nil {
				return raw, err
			}
		}
		return raw, nil
	}
	return raw, fmt.Errorf("unknown RESP type %q", line[0])
}
