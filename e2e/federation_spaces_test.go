package e2e

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"
)

// TestFederationSpaces: a space on A has a sub-space on A (with a room of its own), a
// public room on A, an invite-only room on A, a public room on B and a room on a server
// that accepts connections and never answers. bob of B, joined to the space, walks the
// whole tree through B's /hierarchy: A's rooms are asked of A over federation (the
// sub-space's room comes with A's answer about the sub-space), B's room is local, the
// invite-only room and the silent server's room are left out, and the silent server does
// not hold the answer past its timeout. /room_summary on B describes A's room with ?via=
// or by alias, and is M_NOT_FOUND with nobody to ask.
func TestFederationSpaces(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")

	// A listener that completes TCP handshakes and says nothing.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()

	space := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Space", "creation_content": map[string]any{"type": "m.space"}})
	sub := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Sub", "creation_content": map[string]any{"type": "m.space"}})
	deep := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Deep"})
	onA := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "On A", "room_alias_name": "ona"})
	privA := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Private on A"})
	onB := bob.CreateRoom(map[string]any{"preset": "public_chat", "name": "On B"})
	child := func(parent, roomID, server, order string) {
		t.Helper()
		if r := putState(alice, parent, "m.space.child", roomID, map[string]any{"via": []string{server}, "order": order}); r.Status != 200 {
			t.Fatalf("m.space.child %s: %d %s", roomID, r.Status, r.Raw)
		}
	}
	child(space, sub, a.Name, "a")
	child(sub, deep, a.Name, "a")
	child(space, onA, a.Name, "b")
	child(space, privA, a.Name, "c")
	child(space, onB, b.Name, "d")
	child(space, "!nowhere:"+silent.Addr().String(), silent.Addr().String(), "e")
	// Deep is no space: its m.space.child events are not part of the hierarchy.
	underDeep := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Under Deep"})
	child(deep, underDeep, a.Name, "a")
	// A restricted room whose allowed room A is not in: A cannot tell that B's users may join
	// it, so it is an inaccessible child for B.
	restricted := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Members of On B", "room_version": "10",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
			"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": onB}}}}}})
	child(space, restricted, a.Name, "f")
	if r := joinRoom(bob, space, a.Name); r.Status != 200 {
		t.Fatalf("bob joining the space: %d %s", r.Status, r.Raw)
	}

	names := func(r Resp) []string {
		var out []string
		for _, room := range list(r.Body, "rooms") {
			out = append(out, str(room, "name"))
		}
		return out
	}
	hierarchy := "/_matrix/client/v1/rooms/" + esc(space) + "/hierarchy"
	start := time.Now()
	h := call(bob, "GET", hierarchy, nil)
	if got := fmt.Sprint(names(h)); h.Status != 200 || got != "[Space Sub Deep On A On B]" {
		t.Fatalf("bob's hierarchy on B: %d %s (%s)", h.Status, got, h.Raw)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the hierarchy took %s with a silent server in it", d)
	}
	for _, room := range list(h.Body, "rooms") {
		if str(room, "room_id") == sub {
			if states := list(room, "children_state"); len(states) != 1 || str(states[0], "state_key") != deep || room["num_joined_members"] != float64(1) {
				t.Fatalf("the sub-space from A: %v", room)
			}
		}
		if str(room, "room_id") == deep && len(list(room, "children_state")) != 0 {
			t.Fatalf("a room that is no space has children: %v", room)
		}
		if room["room_version"] == nil || room["join_rule"] != "public" {
			t.Fatalf("a room of the hierarchy: %v", room)
		}
	}
	// Pages walk the same tree (A's answers come from B's cache).
	page := call(bob, "GET", hierarchy+"?limit=3", nil)
	rest := call(bob, "GET", hierarchy+"?limit=3&from="+url.QueryEscape(str(page.Body, "next_batch")), nil)
	if got := fmt.Sprint(names(page), names(rest)); got != "[Space Sub Deep] [On A On B]" {
		t.Fatalf("hierarchy pages: %s (%s)", got, rest.Raw)
	}
	if got := fmt.Sprint(names(call(bob, "GET", hierarchy+"?max_depth=1", nil))); got != "[Space Sub On A On B]" {
		t.Fatalf("hierarchy to depth 1: %s", got)
	}

	summary := "/_matrix/client/v1/room_summary/"
	s := call(bob, "GET", summary+esc(onA)+"?via="+url.QueryEscape(a.Name), nil)
	if s.Status != 200 || str(s.Body, "room_id") != onA || str(s.Body, "name") != "On A" || str(s.Body, "join_rule") != "public" ||
		s.Body["room_version"] == nil || s.Body["membership"] != nil || s.Body["children_state"] != nil {
		t.Fatalf("room_summary on B of A's room: %d %s", s.Status, s.Raw)
	}
	if s := call(bob, "GET", summary+esc("#ona:"+a.Name), nil); s.Status != 200 || str(s.Body, "room_id") != onA {
		t.Fatalf("room_summary on B by A's alias: %d %s", s.Status, s.Raw)
	}
	if s := call(bob, "GET", summary+esc(space), nil); s.Status != 200 || str(s.Body, "membership") != "join" {
		t.Fatalf("room_summary on B of the space bob is in: %d %s", s.Status, s.Raw)
	}
	expectErr(t, call(bob, "GET", summary+esc(onA), nil), "room_summary of A's room without via", 404, "M_NOT_FOUND")
	expectErr(t, call(bob, "GET", summary+esc(privA)+"?via="+url.QueryEscape(a.Name), nil), "room_summary of A's private room", 404, "M_NOT_FOUND")
}
