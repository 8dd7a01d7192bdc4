package e2e

import "testing"

// TestInviteBlocking: a user whose m.invite_permission_config says default_action "block"
// cannot be invited (403 M_INVITE_BLOCKED) through /invite, a member state PUT or — from
// another server — PUT /invite over federation; /createRoom goes on without them; an invite
// they had before blocking is no longer served by /sync, and comes back when they unblock.
func TestInviteBlocking(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob, carol := a.Register(t, "alice"), a.Register(t, "bob"), b.Register(t, "carol")
	early := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
	block := func(c *Client, on bool) {
		content := map[string]any{}
		if on {
			content["default_action"] = "block"
		}
		c.MustDo("PUT", "/_matrix/client/v3/user/"+esc(c.UserID)+"/account_data/m.invite_permission_config", content)
	}
	invited := func(c *Client, roomID string) bool {
		return obj(c.Sync("", "", 0).Body, "rooms", "invite", roomID) != nil
	}
	if !invited(bob, early) {
		t.Fatal("bob's invite before blocking is not in his /sync")
	}
	block(bob, true)
	block(carol, true)
	if invited(bob, early) {
		t.Error("bob blocks invites but /sync still serves the earlier invite")
	}

	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
	if r := call(alice, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.member/"+esc(bob.UserID), nil); r.Status != 404 {
		t.Errorf("createRoom invited bob although he blocks invites: %d %s", r.Status, r.Raw)
	}
	wantBlocked := func(what string, r Resp) {
		t.Helper()
		if r.Status != 403 || str(r.Body, "errcode") != "M_INVITE_BLOCKED" {
			t.Errorf("%s: %d %s, want 403 M_INVITE_BLOCKED", what, r.Status, r.Raw)
		}
	}
	wantBlocked("POST /invite", call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": bob.UserID}))
	wantBlocked("PUT /state/m.room.member", call(alice, "PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.member/"+esc(bob.UserID), map[string]any{"membership": "invite"}))
	wantBlocked("an invite over federation", call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": carol.UserID}))

	block(bob, false)
	if !invited(bob, early) {
		t.Error("bob unblocked invites but the earlier invite did not come back")
	}
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": bob.UserID})
}
