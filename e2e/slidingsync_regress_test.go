package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestSlidingSyncLeftRoomQuiet: a room the user was kicked from is sent once with its leave,
// and after that a long-poll with nothing new waits instead of sending it again.
func TestSlidingSyncLeftRoomQuiet(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	roomID := bob.CreateRoom(map[string]any{"preset": "public_chat"})
	alice.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
	r := slidingOK(t, alice, "", 0, allRooms(10, 5))
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/kick", map[string]any{"user_id": alice.UserID})
	r = slidingOK(t, alice, str(r.Body, "pos"), 5000, allRooms(10, 5))
	if room := slidingRoom(r, roomID); room == nil || str(room, "membership") != "leave" {
		t.Fatalf("the kick did not come: %s", r.Raw)
	}
	start := time.Now()
	r = slidingOK(t, alice, str(r.Body, "pos"), 1000, allRooms(10, 5))
	if slidingRoom(r, roomID) != nil || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("after the kick was delivered, a long-poll returned after %v with %s", time.Since(start), r.Raw)
	}
}

// TestSlidingSyncCancelledPolls: long-polls the client cancels (as matrix-rust-sdk does to
// change its request) store no position, so the position the client holds stays valid.
func TestSlidingSyncCancelledPolls(t *testing.T) {
	s := StartServer(t)
	alice := s.Register(t, "alice")
	alice.CreateRoom(map[string]any{"preset": "private_chat"})
	r := slidingOK(t, alice, "", 0, allRooms(10, 5))
	pos := str(r.Body, "pos")
	body, _ := json.Marshal(allRooms(10, 5))
	for range 12 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+slidingPath+"?timeout=5000&pos="+pos, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		cancel()
	}
	time.Sleep(200 * time.Millisecond) // the server sees the cancellations
	if r := slidingSync(alice, pos, 0, allRooms(10, 5)); r.Status != 200 {
		t.Fatalf("the position held after 12 cancelled polls: %d %s", r.Status, r.Raw)
	}
}

// TestSlidingSyncExtensionsCatchUp: receipts, room account data and typing of a room that
// was out of the lists' ranges reach the client when the room comes back into scope, though
// the room itself has nothing new.
func TestSlidingSyncExtensionsCatchUp(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	x := alice.CreateRoom(map[string]any{"invite": []string{bob.UserID}})
	y := alice.CreateRoom(map[string]any{"invite": []string{bob.UserID}})
	join(bob, x)
	join(bob, y)
	mx := bob.Send(x, "in x")
	bob.Send(y, "in y") // y is the most recent
	body := func(end int, subscribe bool) map[string]any {
		b := allRooms(end, 1)
		if subscribe {
			b["room_subscriptions"] = map[string]any{x: map[string]any{"timeline_limit": 1}}
		}
		b["extensions"] = map[string]any{
			"account_data": map[string]any{"enabled": true},
			"receipts":     map[string]any{"enabled": true},
			"typing":       map[string]any{"enabled": true},
		}
		return b
	}
	r := slidingOK(t, alice, "", 0, body(1, false))
	if slidingRoom(r, x) == nil || slidingRoom(r, y) == nil {
		t.Fatalf("initial: %s", r.Raw)
	}
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, body(0, false)) // x leaves the range

	// While x is out of scope: bob's receipt, alice's tag, bob typing.
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(x)+"/receipt/m.read/"+esc(mx), map[string]any{})
	alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/rooms/"+esc(x)+"/tags/u.work", map[string]any{})
	bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(x)+"/typing/"+esc(bob.UserID), map[string]any{"typing": true, "timeout": 30000})
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, body(0, false))
	if obj(r.Body, "extensions", "receipts", "rooms", x) != nil {
		t.Fatalf("x out of scope got its receipts: %s", r.Raw)
	}

	// x comes back (a subscription): what changed meanwhile comes with it.
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, body(0, true))
	ext := obj(r.Body, "extensions")
	if rec := obj(ext, "receipts", "rooms", x); obj(rec, "content", mx, "m.read", bob.UserID) == nil {
		t.Errorf("the receipt made while x was out of scope is lost: %v", obj(ext, "receipts"))
	}
	tagged := false
	for _, ev := range list(obj(ext, "account_data", "rooms"), x) {
		if evType(ev) == "m.tag" && obj(ev, "content", "tags", "u.work") != nil {
			tagged = true
		}
	}
	if !tagged {
		t.Errorf("the tag set while x was out of scope is lost: %v", obj(ext, "account_data"))
	}
	if users, _ := obj(ext, "typing", "rooms", x, "content")["user_ids"].([]any); len(users) != 1 || users[0] != bob.UserID {
		t.Errorf("x's typers are lost: %v", obj(ext, "typing"))
	}
	// And only once.
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, body(0, true))
	if ext := obj(r.Body, "extensions"); obj(ext, "receipts", "rooms", x) != nil || obj(ext, "typing", "rooms", x) != nil || len(obj(ext, "account_data", "rooms")) != 0 {
		t.Errorf("sent again: %s", r.Raw)
	}
}

// TestSlidingSyncCountsAfterOwnReceipt: when another of the user's devices reads a room,
// the room's unread counts are sent again though it has no new event.
func TestSlidingSyncCountsAfterOwnReceipt(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	phone := s.Login(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"invite": []string{bob.UserID}})
	join(bob, roomID)
	bob.Send(roomID, "one")
	last := bob.Send(roomID, "two")
	r := slidingOK(t, alice, "", 0, allRooms(10, 1))
	if room := slidingRoom(r, roomID); room == nil || num(room, "notification_count") != 2 {
		t.Fatalf("initial counts: %s", r.Raw)
	}
	phone.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/receipt/m.read/"+esc(last), map[string]any{})
	r = slidingOK(t, alice, str(r.Body, "pos"), 2000, allRooms(10, 1))
	room := slidingRoom(r, roomID)
	if room == nil || room["notification_count"] == nil || num(room, "notification_count") != 0 || room["initial"] == true {
		t.Fatalf("after the phone read the room: %s", r.Raw)
	}
	if len(list(room, "timeline")) != 0 {
		t.Errorf("events sent again: %v", room)
	}
	// Once: then a long-poll waits.
	start := time.Now()
	r = slidingOK(t, alice, str(r.Body, "pos"), 500, allRooms(10, 1))
	if slidingRoom(r, roomID) != nil || time.Since(start) < 400*time.Millisecond {
		t.Errorf("counts sent again: %s", r.Raw)
	}
}

// TestSlidingSyncAcceptedInviteKeepsPlace: accepting an invite does not drop the room below
// rooms that were active before the join: the user's own join counts as activity.
func TestSlidingSyncAcceptedInviteKeepsPlace(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	invited := bob.CreateRoom(map[string]any{"preset": "private_chat"})
	bob.Send(invited, "before the invite")
	other := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	alice.Send(other, "newer than bob's message")
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(invited)+"/invite", map[string]any{"user_id": alice.UserID})
	r := slidingOK(t, alice, "", 0, allRooms(0, 1))
	if slidingRoom(r, invited) == nil {
		t.Fatalf("the invite is not on top: %s", r.Raw)
	}
	join(alice, invited)
	r = slidingOK(t, alice, "", 0, allRooms(1, 1))
	in, out := slidingRoom(r, invited), slidingRoom(r, other)
	if in == nil || out == nil || num(in, "bump_stamp") <= num(out, "bump_stamp") {
		t.Fatalf("the accepted invite fell below the other room: %s", r.Raw)
	}
	if r = slidingOK(t, alice, "", 0, allRooms(0, 1)); slidingRoom(r, invited) == nil {
		t.Errorf("the accepted invite is not first in the list: %s", r.Raw)
	}
}

// TestSlidingSyncLeftRoomSummaryAtLeave: a room the user left shows the members as they were
// at the leave, not those who joined or were invited after it.
func TestSlidingSyncLeftRoomSummaryAtLeave(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	carol, dave := s.Register(t, "carol"), s.Register(t, "dave")
	roomID := bob.CreateRoom(map[string]any{"preset": "public_chat"})
	join(alice, roomID)
	r := slidingOK(t, alice, "", 0, allRooms(10, 1))
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/kick", map[string]any{"user_id": alice.UserID})
	// After the kick: carol joins, dave is invited.
	join(carol, roomID)
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": dave.UserID})
	for _, pos := range []string{str(r.Body, "pos"), ""} { // the connection that saw it joined, and a new one
		r := slidingOK(t, alice, pos, 0, allRooms(10, 1))
		room := slidingRoom(r, roomID)
		if room == nil || str(room, "membership") != "leave" {
			t.Fatalf("pos %q: the kick did not come: %s", pos, r.Raw)
		}
		if room["joined_count"] != nil && num(room, "joined_count") != 1 || num(room, "invited_count") != 0 {
			t.Errorf("pos %q: counts show members after the kick: %s", pos, r.Raw)
		}
		for _, h := range list(room, "heroes") {
			if u := str(h, "user_id"); u == carol.UserID || u == dave.UserID {
				t.Errorf("pos %q: hero %s came after the kick: %s", pos, u, r.Raw)
			}
		}
	}
}
