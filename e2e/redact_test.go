package e2e

import (
	"testing"
)

// TestRedactUnknownEvent: the client-server API's redaction endpoint, for an event this
// server has not received ("the server may not have the event being redacted", e.g. one of
// another server still on its way). A user with the room's redact power level gets 200 and
// the redaction event, which is in the room; a user without it is refused with 403
// M_FORBIDDEN (this server cannot tell whether the event is theirs), and still redacts their
// own messages.
func TestRedactUnknownEvent(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)
	unknown := "$notReceivedYet0123456789abcdefghijklmnopqrstu"
	path := "/_matrix/client/v3/rooms/" + esc(roomID) + "/redact/" + esc(unknown) + "/"

	r := call(alice, "PUT", path+"t1", map[string]any{"reason": "spam from afar"})
	if r.Status != 200 || str(r.Body, "event_id") == "" {
		t.Fatalf("alice (power 100) redacting %s, which this server has not received: %d %s, want 200 with event_id", unknown, r.Status, r.Raw)
	}
	red := call(alice, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(str(r.Body, "event_id")), nil)
	if red.Status != 200 || evType(red.Body) != "m.room.redaction" {
		t.Fatalf("GET the redaction %s: %d %s", str(r.Body, "event_id"), red.Status, red.Raw)
	}
	if got := str(red.Body, "redacts"); got != unknown && str(obj(red.Body, "content"), "redacts") != unknown {
		t.Errorf("the redaction names %q (redacts) / %q (content.redacts), want %s: %s", got, str(obj(red.Body, "content"), "redacts"), unknown, red.Raw)
	}

	r = call(bob, "PUT", path+"t2", map[string]any{})
	expectErr(t, r, "bob (power 0) redacting an unknown event", 403, "M_FORBIDDEN")
	own := bob.Send(roomID, "mine")
	r = call(bob, "PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/redact/"+esc(own)+"/t3", map[string]any{})
	expectOK(t, r, "bob redacting his own message")
}
