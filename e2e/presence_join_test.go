package e2e

import "testing"

// TestPresenceOnJoin: when bob joins a room, the members already there get bob's current
// presence in their next incremental /sync, and bob gets theirs, although none of them
// changed presence since the tokens (presence.md: clients receive presence of users they
// share a room with; a new room shared is new presence to show).
func TestPresenceOnJoin(t *testing.T) {
	srv := StartServer(t)
	alice, bob, carol := srv.Register(t, "alice"), srv.Register(t, "bob"), srv.Register(t, "carol")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(carol, roomID)
	expectOK(t, call(bob, "PUT", presencePath(bob.UserID), map[string]any{"presence": "online", "status_msg": "bob here"}), "bob's presence")
	expectOK(t, call(carol, "PUT", presencePath(carol.UserID), map[string]any{"presence": "unavailable", "status_msg": "carol away"}), "carol's presence")

	// Tokens taken after every presence change; set_presence=offline leaves presence alone.
	aliceSince := str(alice.MustDo("GET", "/_matrix/client/v3/sync?set_presence=offline&timeout=0", nil).Body, "next_batch")
	bobSince := str(bob.MustDo("GET", "/_matrix/client/v3/sync?set_presence=offline&timeout=0", nil).Body, "next_batch")

	join(bob, roomID)

	r := alice.MustDo("GET", "/_matrix/client/v3/sync?set_presence=offline&timeout=0&since="+esc(aliceSince), nil)
	if c := presenceOf(r, bob.UserID); str(c, "status_msg") != "bob here" || str(c, "presence") != "online" {
		t.Errorf("alice's incremental sync after bob joined: bob's presence %v, want online with \"bob here\"; presence %s", c, jsonString(r.Body["presence"]))
	}
	r = bob.MustDo("GET", "/_matrix/client/v3/sync?set_presence=offline&timeout=0&since="+esc(bobSince), nil)
	if c := presenceOf(r, carol.UserID); str(c, "status_msg") != "carol away" || str(c, "presence") != "unavailable" {
		t.Errorf("bob's incremental sync after joining: carol's presence %v, want unavailable with \"carol away\"; presence %s", c, jsonString(r.Body["presence"]))
	}
}
