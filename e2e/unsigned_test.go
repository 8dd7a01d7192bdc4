package e2e

import "testing"

// TestUnsignedMembership: events carry unsigned.membership (v1.11), the requesting user's
// membership at the point of the event including the event's own change, "leave" before they
// had any, in /messages, /sync, /event and /context.
func TestUnsignedMembership(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	before := str(sendTxn(alice, roomID, "m.room.message", "m1", map[string]any{"msgtype": "m.text", "body": "before bob"}).Body, "event_id")
	join(bob, roomID)
	during := str(sendTxn(alice, roomID, "m.room.message", "m2", map[string]any{"msgtype": "m.text", "body": "with bob"}).Body, "event_id")
	expectOK(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/leave", map[string]any{}), "leave")
	expectOK(t, call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": bob.UserID}), "invite")

	check := func(where string, viewer *Client, evs []event, want map[string]string) {
		t.Helper()
		seen := 0
		for _, e := range evs {
			m, _ := obj(e, "unsigned")["membership"].(string)
			if w, ok := want[evID(e)]; ok {
				seen++
				if m != w {
					t.Errorf("%s: %q has unsigned.membership %q, want %q", where, evBody(e), m, w)
				}
			}
			// The viewer's own member events include their change.
			if evType(e) == "m.room.member" && str(e, "state_key") == viewer.UserID {
				if m != str(obj(e, "content"), "membership") {
					t.Errorf("%s: the viewer's %s event has unsigned.membership %q", where, str(obj(e, "content"), "membership"), m)
				}
			}
		}
		if seen != len(want) {
			t.Errorf("%s: saw %d of the %d messages", where, seen, len(want))
		}
	}
	// alice was joined for both messages.
	check("alice's /messages", alice, paginateBack(alice, roomID, "", 50, nil), map[string]string{before: "join", during: "join"})
	// bob, who left and joined again, sees the history with his membership at each point.
	bobWant := map[string]string{before: "leave", during: "join"}
	join(bob, roomID)
	check("bob's /messages", bob, paginateBack(bob, roomID, "", 50, nil), bobWant)
	r := call(bob, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(before), nil)
	expectOK(t, r, "/event")
	if m, _ := obj(r.Body, "unsigned")["membership"].(string); m != "leave" {
		t.Errorf("/event of a message before bob joined: unsigned.membership %q, want leave", m)
	}
	s := newSyncer(bob, `{"room":{"timeline":{"limit":50}}}`)
	s.waitEvent(roomID, during)
	check("bob's /sync", bob, s.tl[roomID], bobWant)
}

// TestJoinWithContent: the body of POST /join goes into the member event's content (the
// reference server's behaviour that bridges rely on): extra fields and a per-room display
// name are kept, membership is the server's.
func TestJoinWithContent(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "content"})
	for path, who := range map[string]*Client{"/_matrix/client/v3/join/" + esc("#content:localhost"): bob, "/_matrix/client/v3/rooms/" + esc(roomID) + "/join": srv.Register(t, "carol")} {
		r := call(who, "POST", path, map[string]any{"reason": "hello", "foo": "bar", "displayname": "Custom", "membership": "leave"})
		expectOK(t, r, "join with content")
		c := obj(stateEvent(alice, roomID, "m.room.member", who.UserID).Body)
		if c["foo"] != "bar" || c["reason"] != "hello" || c["displayname"] != "Custom" || c["membership"] != "join" {
			t.Errorf("%s's member event content after joining with content: %v", who.UserID, c)
		}
	}
	expectErr(t, call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/join", map[string]any{"reason": 5}), "join with a reason that is no string", 400, "M_BAD_JSON")
}

// TestCreateRoomTopic: createRoom's topic writes m.room.topic with both the plain topic and
// its rich representation (v1.15, m.topic with an m.text block of text/plain).
func TestCreateRoomTopic(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"topic": "Lunch plans"})
	c := stateEvent(alice, roomID, "m.room.topic", "").Body
	blocks, _ := obj(c, "m.topic")["m.text"].([]any)
	if str(c, "topic") != "Lunch plans" || len(blocks) != 1 || str(blocks[0].(map[string]any), "body") != "Lunch plans" {
		t.Fatalf("m.room.topic content: %v", c)
	}
}
