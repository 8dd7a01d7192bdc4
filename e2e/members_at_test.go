package e2e

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
)

// membersAt returns "user=membership" of GET /rooms/{roomId}/members?at=token, sorted, or
// fails.
func membersAt(t *testing.T, c *Client, roomID, token string) string {
	t.Helper()
	r := call(c, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/members?at="+url.QueryEscape(token), nil)
	if r.Status != 200 {
		t.Fatalf("members at %q: %d %s", token, r.Status, r.Raw)
	}
	var out []string
	for _, e := range list(r.Body, "chunk") {
		out = append(out, str(e, "state_key")+"="+str(obj(e, "content"), "membership"))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// TestMembersAt: GET /members?at= with each kind of token a client has (rooms.yaml: "The
// point in time (pagination token) to return members for in the room"). A prev_batch and a
// /messages token stand just before an event, so a join that is that event is not counted;
// a next_batch stands after everything its /sync returned.
func TestMembersAt(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	before := str(alice.Sync("", "", 0).Body, "next_batch")
	join(bob, room)
	alice.Send(room, "hi")
	after := str(alice.Sync("", "", 0).Body, "next_batch")

	aliceOnly := alice.UserID + "=join"
	both := strings.Join(sortedStrings(alice.UserID+"=join", bob.UserID+"=join"), " ")
	limited := func(limit int) string {
		r := alice.Sync(before, fmt.Sprintf(`{"room":{"timeline":{"limit":%d}}}`, limit), 0)
		return str(obj(r.Body, "rooms", "join", room, "timeline"), "prev_batch")
	}
	cases := []struct{ what, token, want string }{
		{"a next_batch from before bob joined", before, aliceOnly},
		{"a next_batch from after", after, both},
		{"the prev_batch of a timeline [hi]", limited(1), both},
		{"the prev_batch of a timeline [bob's join, hi]", limited(2), aliceOnly},
		{"the /messages end token before hi", getMessages(alice, room, "b", "", 1).end, both},
		{"the /messages end token before bob's join", getMessages(alice, room, "b", "", 2).end, aliceOnly},
	}
	for _, c := range cases {
		if got := membersAt(t, alice, room, c.token); got != c.want {
			t.Errorf("members at %s (%s): %q, want %q", c.what, c.token, got, c.want)
		}
	}
}

func sortedStrings(s ...string) []string {
	sort.Strings(s)
	return s
}

// TestFederationMembersAt: bob's server joins alice's room over federation, holding the
// room's earlier events only as state. Members at a token from before bob's server knew the
// room, and at the prev_batch of bob's first timeline (which starts with his join), are
// alice's room as it was before the join, not an empty chunk.
func TestFederationMembersAt(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	before := str(bob.Sync("", "", 0).Body, "next_batch")
	if r := joinRoom(bob, room, a.Name); r.Status != 200 {
		t.Fatalf("bob joining over federation: %d %s", r.Status, r.Raw)
	}
	r := bob.Sync("", "", 0)
	tl := obj(r.Body, "rooms", "join", room, "timeline")
	cases := []struct{ what, token, want string }{
		{"a next_batch from before bob's server joined", before, alice.UserID + "=join"},
		{"the prev_batch of bob's first timeline", str(tl, "prev_batch"), alice.UserID + "=join"},
		{"the next_batch after the join", str(r.Body, "next_batch"), strings.Join(sortedStrings(alice.UserID+"=join", bob.UserID+"=join"), " ")},
	}
	for _, c := range cases {
		if got := membersAt(t, bob, room, c.token); got != c.want {
			t.Errorf("members at %s (%s): %q, want %q", c.what, c.token, got, c.want)
		}
	}
}
