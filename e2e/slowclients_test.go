package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSlowClients: 500 connections from one address that trickle a /login body a byte at a
// time neither stop a normal client (on another address) from registering, sending and
// syncing within 2 s each, nor stay open: the server answers those over the address's cap
// with 429 M_LIMIT_EXCEEDED at once, and cuts the others off at the body deadline
// (limits.request_body_timeout, 3 s here). A long-poll /sync, and a sliding sync long-poll
// that has a body, outlive that deadline unharmed.
func TestSlowClients(t *testing.T) {
	srv := StartServer(t)
	srv.Stop()
	srv.editConfig(t, `request_body_timeout: "30s"`, `request_body_timeout: "3s"`)
	srv.Start()
	alice := srv.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	host := strings.TrimPrefix(srv.URL, "http://")

	const n = 500
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	opened := time.Now()
	for i := 0; i < n; i++ {
		c, err := dialer.Dial("tcp", host)
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		fmt.Fprintf(c, "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{", host)
		conns = append(conns, c)
	}
	// Trickle one byte every 500 ms on every connection until the test ends.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, c := range conns {
					_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
					_, _ = c.Write([]byte(" "))
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	timed := func(what string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v while %d connections trickled, want under 2 s", what, d, n)
		}
	}
	var bob *Client
	timed("register", func() { bob = srv.Register(t, "bob") })
	timed("join", func() { join(bob, roomID) })
	var sent string
	timed("send", func() {
		r := sendTxn(bob, roomID, "m.room.message", "slow1", map[string]any{"msgtype": "m.text", "body": "still here"})
		expectOK(t, r, "send")
		sent = str(r.Body, "event_id")
	})
	timed("sync", func() { newSyncer(alice, "").waitEvent(roomID, sent) })

	// Long-polls last longer than the body deadline and still answer.
	start := time.Now()
	r := call(alice, "GET", "/_matrix/client/v3/sync?timeout=4500&since="+esc(str(newSyncer(alice, "").once(0).Body, "next_batch")), nil)
	expectOK(t, r, "long-poll /sync past the body deadline")
	if d := time.Since(start); d < 4*time.Second {
		t.Errorf("long-poll /sync returned after %v, want it to wait about 4.5 s", d)
	}
	start = time.Now()
	first := call(alice, "POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", map[string]any{"lists": map[string]any{}})
	expectOK(t, first, "sliding sync")
	r = call(alice, "POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=4500&pos="+esc(str(first.Body, "pos")), map[string]any{"lists": map[string]any{}})
	expectOK(t, r, "sliding sync long-poll (a request with a body) past the body deadline")
	if d := time.Since(start); d < 4*time.Second {
		t.Errorf("sliding sync long-poll returned after %v, want it to wait about 4.5 s", d)
	}

	// Every trickling connection is closed by the server: refused at once (429) or cut off
	// at the deadline.
	refused, cut := 0, 0
	for i, c := range conns {
		_ = c.SetReadDeadline(opened.Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("slow connection %d: no answer from the server: %v", i, err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusTooManyRequests:
			refused++
		case http.StatusBadRequest, http.StatusRequestTimeout:
			cut++
		default:
			t.Errorf("slow connection %d: status %d, want 429 or a 4xx for the cut-off body", i, resp.StatusCode)
		}
		var one [1]byte
		if _, err := c.Read(one[:]); err == nil {
			t.Errorf("slow connection %d is still open after its answer", i)
		}
	}
	t.Logf("%d slow connections: %d refused at once with 429, %d cut off at the body deadline, all closed within %v", n, refused, cut, time.Since(opened).Round(time.Millisecond))
	if refused == 0 || cut == 0 {
		t.Errorf("want some connections refused over the per-address cap and some cut off by the deadline; got %d and %d", refused, cut)
	}
	expectOK(t, whoami(bob), "whoami afterwards")
}
