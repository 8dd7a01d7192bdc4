// Package connguard protects an HTTP listener from slow and abusive clients, which would
// otherwise hold connections (and file descriptors) without end:
//   - a request body must arrive within a grace period plus a minimum average rate, after
//     which the server stops reading and the connection is closed;
//   - each client address may have only so many connections that are still sending their
//     request (headers or body); more are answered 429 M_LIMIT_EXCEEDED and closed.
//
// A connection stops counting against its address once its request has been read, so idle
// keep-alive connections and long-polling /sync requests (which have no body) never do.
// Behind a reverse proxy that buffers request bodies (nginx, HAProxy, Caddy do by default)
// the proxy's connections are counted, and they are rarely pending for long.
//
// It also gives a new connection as long to start its first request as an idle keep-alive
// connection has to start its next one (see firstRequestConn).
//
// It must not import any API package.
package connguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Config bounds slow clients.
type Config struct {
	// BodyTimeout is the time a request body may take before MinBytesPerSecond counts.
	BodyTimeout time.Duration
	// MinBytesPerSecond extends BodyTimeout for large bodies: a body of n bytes may take
	// BodyTimeout + n/MinBytesPerSecond.
	MinBytesPerSecond int64
	// MaxPendingPerAddress caps the connections of one address still sending a request;
	// 0 means no cap.
	MaxPendingPerAddress int
}

// Guard applies Config to one http.Server: Wrap its listener and handler, and set its
// ConnState and ConnContext.
type Guard struct {
	cfg     Config
	silent  time.Duration  // how long a new connection may send nothing: the server's idle timeout
	mu      sync.Mutex     // guards pending and conns
	pending map[string]int // address -> connections still sending a request
	conns   map[net.Conn]*slot
}

// slot is one connection's place in its address's count.
type slot struct {
	g    *Guard
	addr string
	held bool // guarded by g.mu
}

type slotKey struct{}

// New returns a Guard with cfg.
func New(cfg Config) *Guard {
	return &Guard{cfg: cfg, pending: map[string]int{}, conns: map[net.Conn]*slot{}}
}

// Apply sets srv's ConnState and ConnContext and wraps its handler; Serve must then be given
// Listener(ln).
func (g *Guard) Apply(srv *http.Server) {
	g.silent = srv.IdleTimeout
	if g.silent == 0 {
		g.silent = srv.ReadTimeout
	}
	srv.ConnState = g.connState
	srv.ConnContext = g.connContext
	srv.Handler = g.handler(srv.Handler)
}

// Listener wraps ln so that a connection from an address over its cap is answered 429 and
// closed before any request is read.
func (g *Guard) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, g: g} }

type listener struct {
	net.Listener
	g *Guard
}

// tooManyBody and tooMany are written to a connection refused at accept: a complete
// HTTP/1.1 response, so that a client sees why.
const tooManyBody = `{"errcode":"M_LIMIT_EXCEEDED","error":"too many connections from this address are still sending a request","retry_after_ms":1000}`

var tooMany = fmt.Sprintf("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"+
	"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(tooManyBody), tooManyBody)

func (l *listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := raw
		if l.g.silent > 0 {
			c = newFirstRequestConn(raw, l.g.silent)
		}
		if l.g.admit(c) {
			return c, nil
		}
		go refuse(raw)
	}
}

// refuse answers a refused connection and closes it, bounded in time so that a client that
// does not read cannot hold it.
func refuse(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.WriteString(c, tooMany)
	_ = c.Close()
}

// addrOf is the address a connection counts against: its IP, or for IPv6 its /64, since one
// client usually holds a whole /64 and could otherwise take a fresh address per connection.
func addrOf(c net.Conn) string {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}

// admit registers a new connection as pending, unless its address is at its cap.
func (g *Guard) admit(c net.Conn) bool {
	s := &slot{g: g, addr: addrOf(c)}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cfg.MaxPendingPerAddress > 0 && g.pending[s.addr] >= g.cfg.MaxPendingPerAddress {
		return false
	}
	g.pending[s.addr]++
	s.held = true
	g.conns[c] = s
	return true
}

// connState releases a connection's slot when it goes idle or closes, and takes it again
// when a new request starts on it (closing the connection if the address is at its cap).
func (g *Guard) connState(c net.Conn, state http.ConnState) {
	g.mu.Lock()
	s := g.conns[c]
	if s == nil {
		g.mu.Unlock()
		return
	}
	switch state {
	case http.StateActive:
		if !s.held {
			if g.cfg.MaxPendingPerAddress > 0 && g.pending[s.addr] >= g.cfg.MaxPendingPerAddress {
				g.mu.Unlock()
				_ = c.Close()
				return
			}
			g.pending[s.addr]++
			s.held = true
		}
	case http.StateIdle:
		s.releaseLocked()
	case http.StateClosed, http.StateHijacked:
		s.releaseLocked()
		delete(g.conns, c)
	}
	g.mu.Unlock()
}

func (s *slot) releaseLocked() {
	if !s.held {
		return
	}
	s.held = false
	if s.g.pending[s.addr]--; s.g.pending[s.addr] <= 0 {
		delete(s.g.pending, s.addr)
	}
}

// release gives the slot back: the request has been read.
func (s *slot) release() {
	s.g.mu.Lock()
	s.releaseLocked()
	s.g.mu.Unlock()
}

func (g *Guard) connContext(ctx context.Context, c net.Conn) context.Context {
	g.mu.Lock()
	s := g.conns[c]
	g.mu.Unlock()
	return context.WithValue(ctx, slotKey{}, s)
}

// handler bounds the time to read each request's body and releases the connection's slot
// once the request has been read.
func (g *Guard) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := r.Context().Value(slotKey{}).(*slot)
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			if s != nil {
				s.release()
			}
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		b := &body{ReadCloser: r.Body, rc: rc, slot: s, cfg: g.cfg, start: time.Now()}
		_ = rc.SetReadDeadline(b.start.Add(g.cfg.BodyTimeout))
		r.Body = b
		h.ServeHTTP(w, r)
	})
}

// body enforces the body deadline: BodyTimeout, extended by the bytes read so far at
// MinBytesPerSecond. Once the whole body has been read the deadline is lifted (a long-poll
// must not be cut by it: net/http cancels a request whose connection read fails) and the
// connection's slot released. A body the handler leaves unread keeps both: net/http then
// discards the rest under the same deadline, or closes the connection.
type body struct {
	io.ReadCloser
	rc    *http.ResponseController
	slot  *slot
	cfg   Config
	start time.Time
	n     int64
	ended bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if errors.Is(err, io.EOF) {
		b.done()
	}
	if err != nil {
		return n, err
	}
	if n > 0 && b.cfg.MinBytesPerSecond > 0 {
		extra := time.Duration(b.n * int64(time.Second) / b.cfg.MinBytesPerSecond)
		_ = b.rc.SetReadDeadline(b.start.Add(b.cfg.BodyTimeout + extra))
	}
	return n, nil
}

func (b *body) done() {
	if b.ended {
		return
	}
	b.ended = true
	_ = b.rc.SetReadDeadline(time.Time{})
	if b.slot != nil {
		b.slot.release()
	}
}
