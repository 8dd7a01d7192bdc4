package e2e

import (
	"strings"
	"testing"
)

// TestFederationDirectory: a user of B resolves a room alias of A (GET /directory/room) and
// lists A's public rooms (GET and POST /publicRooms?server=), both asked of A over
// federation; an unknown alias of A is M_NOT_FOUND.
func TestFederationDirectory(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	alias := "#lobby:" + a.Name
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "lobby", "name": "The lobby", "visibility": "public"})

	r := call(bob, "GET", "/_matrix/client/v3/directory/room/"+esc(alias), nil)
	if r.Status != 200 || str(r.Body, "room_id") != roomID {
		t.Fatalf("bob resolving %s: %d %s", alias, r.Status, r.Raw)
	}
	if r := call(bob, "GET", "/_matrix/client/v3/directory/room/"+esc("#nothing:"+a.Name), nil); r.Status != 404 || str(r.Body, "errcode") != "M_NOT_FOUND" {
		t.Fatalf("an unknown alias of A: %d %s, want 404 M_NOT_FOUND", r.Status, r.Raw)
	}
	found := func(r Resp) bool {
		for _, room := range list(r.Body, "chunk") {
			if str(room, "room_id") == roomID && str(room, "name") == "The lobby" {
				return true
			}
		}
		return false
	}
	if r := call(bob, "GET", "/_matrix/client/v3/publicRooms?server="+esc(a.Name), nil); r.Status != 200 || !found(r) {
		t.Fatalf("bob listing A's public rooms: %d %s", r.Status, r.Raw)
	}
	r = call(bob, "POST", "/_matrix/client/v3/publicRooms?server="+esc(a.Name), map[string]any{"filter": map[string]any{"generic_search_term": "lobby"}, "limit": 5})
	if r.Status != 200 || !found(r) {
		t.Fatalf("bob searching A's public rooms: %d %s", r.Status, r.Raw)
	}
	r = call(bob, "POST", "/_matrix/client/v3/publicRooms?server="+esc(a.Name), map[string]any{"filter": map[string]any{"generic_search_term": "no such room"}})
	if r.Status != 200 || found(r) {
		t.Fatalf("a search of A's rooms that matches nothing: %d %s", r.Status, r.Raw)
	}

	// Not a server name: the client's mistake, 400 M_INVALID_PARAM (was a 500).
	r = bob.Do("GET", "/_matrix/client/v3/publicRooms?server="+esc("bad name"), nil)
	if r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
		t.Errorf("public rooms of a malformed server name: %d %s, want 400 M_INVALID_PARAM", r.Status, r.Raw)
	}
	// A unreachable: the remote server's failure, 502 as for remote media (was a 500 whose
	// message carried the network error).
	a.Proxy.Partition()
	r = bob.Do("GET", "/_matrix/client/v3/publicRooms?server="+esc(a.Name), nil)
	if r.Status != 502 || r.ErrCode() != "M_UNKNOWN" || strings.Contains(string(r.Raw), "dial") || strings.Contains(string(r.Raw), "EOF") {
		t.Errorf("public rooms of an unreachable server: %d %s, want 502 M_UNKNOWN without the network error", r.Status, r.Raw)
	}
	a.Proxy.Heal()
}
