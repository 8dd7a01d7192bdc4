package e2e

import (
	"testing"
	"time"
)

// TestInviteFilteringMSC4155: org.matrix.msc4155.invite_permission_config. A blocked inviter
// gets 403 M_INVITE_BLOCKED (over /invite, a member state PUT, from another server over
// federation; /createRoom fails before creating the room, as MSC4155 says, where the spec's
// m.invite_permission_config lets it go on without the invitee); an ignored invite succeeds for the
// inviter but never reaches the invitee (/sync, sliding sync, notifications); allowed users
// pass a server block; "enabled": false turns it all off and the ignored invite comes back.
func TestInviteFilteringMSC4155(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob, carol, dave := a.Register(t, "alice"), a.Register(t, "bob"), a.Register(t, "carol"), a.Register(t, "dave")
	erin := b.Register(t, "erin")
	setRules := func(content map[string]any) {
		bob.MustDo("PUT", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/account_data/org.matrix.msc4155.invite_permission_config", content)
	}
	invite := func(c *Client, roomID string) Resp {
		return call(c, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": bob.UserID})
	}
	wantBlocked := func(what string, r Resp) {
		t.Helper()
		expectErr(t, r, what, 403, "M_INVITE_BLOCKED")
	}
	invitedInSync := func(roomID string) bool {
		return obj(bob.Sync("", "", 0).Body, "rooms", "invite", roomID) != nil
	}
	invitedInSliding := func(roomID string) bool {
		return slidingRoom(slidingOK(t, bob, "", 0, allRooms(50, 1)), roomID) != nil
	}
	setRules(map[string]any{
		"allowed_users": []string{"@dave:*"},
		"ignored_users": []string{"@carol:*"},
		"blocked_users": []string{"@alice:*", "@erin:*"},
	})

	// Blocked: alice, on every path; erin, over federation.
	aliceRoom := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	wantBlocked("POST /invite by a blocked user", invite(alice, aliceRoom))
	wantBlocked("member state PUT by a blocked user", call(alice, "PUT", statePath(aliceRoom, "m.room.member", bob.UserID), map[string]any{"membership": "invite"}))
	roomsBefore := len(list(alice.MustDo("GET", "/_matrix/client/v3/joined_rooms", nil).Body, "joined_rooms"))
	wantBlocked("createRoom inviting a user who blocks the creator", call(alice, "POST", "/_matrix/client/v3/createRoom",
		map[string]any{"preset": "private_chat", "invite": []string{dave.UserID, bob.UserID}}))
	if n := len(list(alice.MustDo("GET", "/_matrix/client/v3/joined_rooms", nil).Body, "joined_rooms")); n != roomsBefore {
		t.Errorf("the refused createRoom still created a room: alice is in %d rooms, was in %d", n, roomsBefore)
	}
	erinRoom := erin.CreateRoom(map[string]any{"preset": "private_chat"})
	wantBlocked("an invite from a blocked remote user", invite(erin, erinRoom))

	// Ignored: carol sees success and the invite in the room; bob sees nothing.
	carolRoom := carol.CreateRoom(map[string]any{"preset": "private_chat"})
	expectOK(t, invite(carol, carolRoom), "POST /invite by an ignored user")
	if m := membership(carol, carolRoom, bob.UserID); m != "invite" {
		t.Errorf("the ignored invite is not in the room's state: membership %q", m)
	}
	// Allowed: dave.
	daveRoom := dave.CreateRoom(map[string]any{"preset": "private_chat"})
	expectOK(t, invite(dave, daveRoom), "POST /invite by an allowed user")
	if !invitedInSync(daveRoom) || !invitedInSliding(daveRoom) {
		t.Error("dave's invite is not served to bob")
	}
	if invitedInSync(carolRoom) {
		t.Error("/sync serves the ignored invite")
	}
	if invitedInSliding(carolRoom) {
		t.Error("sliding sync serves the ignored invite")
	}
	// Dave's invite notified bob; carol's did not.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		notes := list(bob.MustDo("GET", "/_matrix/client/v3/notifications", nil).Body, "notifications")
		rooms := map[string]bool{}
		for _, n := range notes {
			rooms[str(n, "room_id")] = true
		}
		if rooms[carolRoom] {
			t.Errorf("the ignored invite notified bob: %v", notes)
			break
		}
		if rooms[daveRoom] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dave's invite never notified bob: %v", notes)
		}
	}

	// A server glob: everyone on 127.0.0.* is blocked, except the allowed dave.
	setRules(map[string]any{"allowed_users": []string{"@dave:*"}, "blocked_servers": []string{"127.0.0.*"}})
	daveRoom2 := dave.CreateRoom(map[string]any{"preset": "private_chat"})
	expectOK(t, invite(dave, daveRoom2), "an allowed user on a blocked server")
	wantBlocked("a user of a blocked server", invite(alice, aliceRoom))
	if invitedInSync(carolRoom) {
		t.Error("carol's pending invite is served although her server is now blocked")
	}

	// Off: enabled false lets everyone in, and the held-back invite comes back.
	setRules(map[string]any{"enabled": false, "blocked_servers": []string{"*"}})
	if !invitedInSync(carolRoom) {
		t.Error("the ignored invite did not come back after the filter was disabled")
	}
	expectOK(t, invite(alice, aliceRoom), "POST /invite with the filter disabled")

	if r := anon(t, a.Server, "GET", "/_matrix/client/versions", nil); obj(r.Body, "unstable_features")["org.matrix.msc4155"] != true {
		t.Errorf("/versions does not advertise org.matrix.msc4155: %s", r.Raw)
	}
}
