package e2e

import "testing"

// TestFederationInviteEdges: invites across servers in the cases where the invitee's server
// is not in the room: rejecting an invite whose server cannot be reached, an invite the
// inviter rescinds, and an invite after a ban and an unban. Each time the invitee's /sync
// shows the room where it belongs.
func TestFederationInviteEdges(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	bobs := newSyncer(bob, "")
	bobs.once(0)
	inRoomSection := func(what, section, roomID string) {
		t.Helper()
		bobs.until(what, func(r Resp) bool { return obj(r.Body, "rooms", section, roomID) != nil })
	}
	invite := func(roomID string) {
		t.Helper()
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": bob.UserID})
		inRoomSection("the invite to "+roomID, "invite", roomID)
	}

	// 1. The inviting server is unreachable: the rejection is local, and still a leave.
	unreachable := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	invite(unreachable)
	a.Proxy.Partition()
	expectOK(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(unreachable)+"/leave", map[string]any{}), "reject the invite while its server is unreachable")
	inRoomSection("the rejected invite under leave", "leave", unreachable)
	a.Proxy.Heal()

	// 2. The inviter rescinds the invite (a kick of the invitee).
	rescinded := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	invite(rescinded)
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(rescinded)+"/kick", map[string]any{"user_id": bob.UserID, "reason": "sorry"})
	inRoomSection("the rescinded invite under leave", "leave", rescinded)

	// 3. Ban, unban, invite again: the new invite arrives.
	banned := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	invite(banned)
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(banned)+"/ban", map[string]any{"user_id": bob.UserID})
	inRoomSection("the ban under leave", "leave", banned)
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(banned)+"/unban", map[string]any{"user_id": bob.UserID})
	invite(banned)
	expectOK(t, joinRoom(bob, banned, a.Name), "join after the second invite")
}
