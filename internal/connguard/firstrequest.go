package connguard

import (
	"io"
	"net"
	"sync"
	"time"
)

// firstRequestConn makes net/http's header timeout count from the first byte of a new
// connection's first request, as net/http does for every later request on a connection;
// until that byte the connection may stay silent as long as an idle keep-alive connection
// (the server's idle timeout).
//
// Without it a connection that sent nothing is closed ReadHeaderTimeout (10 s) after it was
// accepted. HTTP clients keep connections they dialed but did not need yet (Go's transport
// does when an idle connection came free while it was dialing) in their idle pool, for 90 s
// in Go's default, and cannot see that the server closed one until its FIN is read. A request
// written on such a connection at that moment is answered with a reset instead of a
// response: the server never sees it, and the client may not retry it (Go's does not for a
// PUT or POST). Under load the benchmark's long-poll scenario lost a send that way. Idle
// keep-alive connections are closed only after the idle timeout (120 s), longer than
// clients keep them, so they do not race.
type firstRequestConn struct {
	net.Conn
	accepted time.Time
	silent   time.Duration

	mu      sync.Mutex
	waiting bool      // no byte read yet
	want    time.Time // the read deadline net/http asked for while waiting, zero for none
	wantAt  time.Time // when it asked
}

func newFirstRequestConn(c net.Conn, silent time.Duration) *firstRequestConn {
	return &firstRequestConn{Conn: c, accepted: time.Now(), silent: silent, waiting: true}
}

func (c *firstRequestConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if c.waiting {
			c.waiting = false
			if !c.want.IsZero() {
				// The deadline asked for, counted from now instead of from when it was asked.
				_ = c.Conn.SetReadDeadline(time.Now().Add(c.want.Sub(c.wantAt)))
			}
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *firstRequestConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting {
		c.want, c.wantAt = t, time.Now()
		if limit := c.accepted.Add(c.silent); !t.IsZero() && limit.After(t) {
			t = limit
		}
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *firstRequestConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// ReadFrom keeps the connection's own ReadFrom (sendfile for files served by net/http).
func (c *firstRequestConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite keeps the TCP half-close net/http uses before closing a connection whose
// request it did not read to the end.
func (c *firstRequestConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
