package connguard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve starts an HTTP server with the guard's listener and the given timeouts and returns
// its address.
func serve(t *testing.T, header, idle time.Duration) string {
	t.Helper()
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ReadHeaderTimeout: header, IdleTimeout: idle,
	}
	g := New(Config{BodyTimeout: time.Second})
	g.Apply(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(g.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

const getRequest = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

// A connection that sends its first request after the header timeout, but within the idle
// timeout, is answered: it is closed no sooner than an idle keep-alive connection would be.
func TestSilentNewConnectionLastsTheIdleTimeout(t *testing.T) {
	addr := serve(t, 200*time.Millisecond, 5*time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(600 * time.Millisecond) // three header timeouts
	if _, err := io.WriteString(c, getRequest); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a request on a connection silent for longer than the header timeout: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
}

// The header timeout still bounds a header that has started: a client that sends part of one
// and stops is cut off after the header timeout, not the idle timeout.
func TestHeaderTimeoutCountsFromTheFirstByte(t *testing.T) {
	addr := serve(t, 300*time.Millisecond, 10*time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(100 * time.Millisecond)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.Copy(io.Discard, c) // until the server closes the connection
	if took := time.Since(start); err != nil || took > 3*time.Second || took < 200*time.Millisecond {
		t.Fatalf("a half-sent header was cut off after %s (err %v), want about 300ms", took, err)
	}
}

// A connection that never sends anything is closed after the idle timeout.
func TestSilentNewConnectionClosedAfterTheIdleTimeout(t *testing.T) {
	addr := serve(t, 100*time.Millisecond, 700*time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if took := time.Since(start); err != nil || n != 0 || took < 600*time.Millisecond || took > 3*time.Second {
		t.Fatalf("a silent connection was closed after %s (%d bytes, err %v), want about 700ms", took, n, err)
	}
}

// Later requests on the connection keep net/http's own timeouts: the second request is
// answered after a pause shorter than the idle timeout.
func TestKeepAliveAfterFirstRequest(t *testing.T) {
	addr := serve(t, 200*time.Millisecond, 5*time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		if _, err := io.WriteString(c, getRequest); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "ok") {
			t.Fatalf("request %d: %q", i, body)
		}
		time.Sleep(400 * time.Millisecond)
	}
}
