package e2e

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// countingListener accepts TCP connections on loopback and counts them, closing each at once:
// the internal service a user might try to reach through the homeserver.
type countingListener struct {
	ln       net.Listener
	accepted atomic.Int64
}

// listenCounting listens on addr ("127.0.0.1:0", "[::1]:0"); it returns nil when the address
// family is not available here.
func listenCounting(t *testing.T, addr string) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil
	}
	l := &countingListener{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return l
}

// blockLoopback restores the default blocklist on a federating test server, which the
// harness otherwise lets reach loopback (federation tests run every server on 127.0.0.1).
// s must be stopped; the caller starts it.
func blockLoopback(t testing.TB, s *Server) {
	t.Helper()
	s.editConfig(t, loopbackAllowed, "allowed_ip_ranges: []")
}

// leaks reports which words of a network error a response body gives away: whether a port is
// open or closed, or that the address is internal, is for the log, not for the client.
func leaks(body []byte) []string {
	var found []string
	lower := strings.ToLower(string(body))
	for _, w := range []string{"refused", "dial", "tcp", "blocked", "timeout", "reset", "connect:", "no such host", "eof"} {
		if strings.Contains(lower, w) {
			found = append(found, w)
		}
	}
	return found
}

// TestFederationBlocksPrivateAddresses: with federation on and the default IP blocklist, a
// local user cannot make the server connect to a loopback service by naming it as a server
// (public rooms, profile, media, join via, alias, knock, keys), by IP literal or by a name
// that resolves to loopback, in IPv4 or IPv6. The listener never sees a connection, nothing
// answers 500, and no answer tells an open port from a closed one.
func TestFederationBlocksPrivateAddresses(t *testing.T) {
	v4 := listenCounting(t, "127.0.0.1:0")
	if v4 == nil {
		t.Fatal("cannot listen on 127.0.0.1")
	}
	_, port, _ := net.SplitHostPort(v4.ln.Addr().String())
	targets := []string{v4.ln.Addr().String(), "localhost:" + port}
	listeners := []*countingListener{v4}
	if v6 := listenCounting(t, "[::1]:0"); v6 != nil {
		targets = append(targets, v6.ln.Addr().String())
		listeners = append(listeners, v6)
	}

	s := StartServer(t, WithFederation(fmt.Sprintf("127.0.0.1:%d", freePort(t))))
	s.Stop()
	blockLoopback(t, s)
	s.Start()
	alice := s.Register(t, "alice")

	// 502 is the answer for a server that cannot be reached (so call, which fails any 5xx,
	// is not used); what matters is that it is neither 500 nor telling.
	for _, target := range targets {
		check := func(what string, r Resp, status int, code string) {
			t.Helper()
			expectErr(t, r, what+" of "+target, status, code)
			if w := leaks(r.Raw); len(w) > 0 {
				t.Errorf("%s of %s: the answer gives away %v: %s", what, target, w, r.Raw)
			}
		}
		check("GET /publicRooms?server=", alice.Do("GET", "/_matrix/client/v3/publicRooms?server="+url.QueryEscape(target), nil), 502, "M_UNKNOWN")
		check("POST /publicRooms?server=", alice.Do("POST", "/_matrix/client/v3/publicRooms?server="+url.QueryEscape(target), map[string]any{}), 502, "M_UNKNOWN")
		check("profile", alice.Do("GET", "/_matrix/client/v3/profile/"+esc("@x:"+target), nil), 502, "M_UNKNOWN")
		check("displayname", alice.Do("GET", "/_matrix/client/v3/profile/"+esc("@x:"+target)+"/displayname", nil), 502, "M_UNKNOWN")
		r := s.media(t, alice.Token, "GET", "/_matrix/client/v1/media/download/"+target+"/abcDEF123", nil, "")
		check("media download", r.Resp, 502, "M_UNKNOWN")
		r = s.media(t, alice.Token, "GET", "/_matrix/client/v1/media/thumbnail/"+target+"/abcDEF123?width=32&height=32", nil, "")
		check("media thumbnail", r.Resp, 502, "M_UNKNOWN")
		check("join via", alice.Do("POST", "/_matrix/client/v3/join/"+esc("!room:"+target)+"?via="+url.QueryEscape(target), map[string]any{}), 404, "M_NOT_FOUND")
		check("join by alias", alice.Do("POST", "/_matrix/client/v3/join/"+esc("#room:"+target), map[string]any{}), 404, "M_NOT_FOUND")
		check("alias", alice.Do("GET", "/_matrix/client/v3/directory/room/"+esc("#room:"+target), nil), 404, "M_NOT_FOUND")
		check("knock", alice.Do("POST", "/_matrix/client/v3/knock/"+esc("!room:"+target)+"?via="+url.QueryEscape(target), map[string]any{}), 404, "M_NOT_FOUND")

		r2 := alice.Do("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{"@x:" + target: []string{}}})
		expectOK(t, r2, "keys/query of a user of "+target)
		if _, ok := obj(r2.Body, "failures")[target]; !ok {
			t.Errorf("keys/query of a user of %s: no failure for the server: %s", target, r2.Raw)
		}
		if w := leaks(r2.Raw); len(w) > 0 {
			t.Errorf("keys/query of a user of %s: the answer gives away %v: %s", target, w, r2.Raw)
		}
	}

	for _, l := range listeners {
		if n := l.accepted.Load(); n != 0 {
			t.Errorf("the loopback service at %s accepted %d connections, want none", l.ln.Addr(), n)
		}
	}
	// The refusals were the blocklist's (and logged), not some other failure.
	if log := s.Log(); !strings.Contains(log, "blocked IP range") {
		t.Errorf("the server log does not record the blocked addresses:\n%s", log)
	}
}

// TestMediaRemoteServerNameValidated: a media path whose server name is not a valid server
// name ("..", encoded or not, empty labels) or whose media ID is outside the spec's alphabet
// is refused before any fetch: 404 M_NOT_FOUND, and the server never tries to reach it.
func TestMediaRemoteServerNameValidated(t *testing.T) {
	s := StartServer(t, WithFederation(fmt.Sprintf("127.0.0.1:%d", freePort(t))))
	alice := s.Register(t, "alice")
	for _, path := range []string{
		"/download/%2E%2E/abc",
		"/download/../abc",
		"/download/%2E%2E%2F%2E%2E/abc",
		"/download/example..org/abc",
		"/download/.example.org/abc",
		"/download/..:8448/abc",
		"/download/example.org/..",
		"/download/example.org/%2E%2E",
		"/thumbnail/%2E%2E/abc?width=32&height=32",
	} {
		r := s.media(t, alice.Token, "GET", "/_matrix/client/v1/media"+path, nil, "")
		expectErr(t, r.Resp, path, 404, "M_NOT_FOUND")
	}
	if log := s.Log(); strings.Contains(log, "fetching remote media failed") {
		t.Errorf("the server tried to fetch media of an invalid server name:\n%s", log)
	}
}
