package e2e

import "testing"

// TestJoinedMembersProfile: /joined_members gives each member's display name and avatar URL
// (room_membership.yaml RoomMember), whether set before or after joining.
func TestJoinedMembersProfile(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	expectOK(t, call(bob, "PUT", "/_matrix/client/v3/profile/"+esc(bob.UserID)+"/avatar_url", map[string]any{"avatar_url": "mxc://localhost/bobface"}), "bob's avatar")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, room)
	expectOK(t, call(alice, "PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/avatar_url", map[string]any{"avatar_url": "mxc://localhost/aliceface"}), "alice's avatar")
	expectOK(t, call(alice, "PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/displayname", map[string]any{"displayname": "Alice"}), "alice's name")
	r := call(bob, "GET", "/_matrix/client/v3/rooms/"+esc(room)+"/joined_members", nil)
	expectOK(t, r, "joined_members")
	joined := obj(r.Body, "joined")
	if got := str(obj(joined, alice.UserID), "avatar_url"); got != "mxc://localhost/aliceface" {
		t.Errorf("alice's avatar_url %q; body %s", got, r.Raw)
	}
	if got := str(obj(joined, alice.UserID), "display_name"); got != "Alice" {
		t.Errorf("alice's display_name %q; body %s", got, r.Raw)
	}
	if got := str(obj(joined, bob.UserID), "avatar_url"); got != "mxc://localhost/bobface" {
		t.Errorf("bob's avatar_url %q; body %s", got, r.Raw)
	}
}

// TestUpperCaseLocalparts: user ID localparts are lower case (appendices, "User Identifiers");
// /register maps an upper-case username onto one, as the spec's registration allows ("map
// the provided username onto a user_id in a logical manner") and its suggested mapping does
// (A-Z to lower case), and login and UIA accept the user in any case, bare or as a user ID.
func TestUpperCaseLocalparts(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "Alice")
	if alice.UserID != "@alice:"+srv.Name {
		t.Fatalf("registered %q, want @alice:%s", alice.UserID, srv.Name)
	}
	expectErr(t, anon(t, srv, "GET", "/_matrix/client/v3/register/available?username=ALICE", nil), "ALICE available", 400, "M_USER_IN_USE")
	r := anon(t, srv, "POST", "/_matrix/client/v3/register", map[string]any{"username": "aLiCe", "password": testPassword, "auth": map[string]any{"type": "m.login.dummy"}})
	expectErr(t, r, "register aLiCe again", 400, "M_USER_IN_USE")
	for _, user := range []string{"ALICE", "@Alice:" + srv.Name, "@alice:" + srv.Name} {
		r := loginPassword(t, srv, user, testPassword)
		expectOK(t, r, "login as "+user)
		if got := str(r.Body, "user_id"); got != alice.UserID {
			t.Errorf("login as %s: user_id %q, want %s", user, got, alice.UserID)
		}
	}
	r = uiaPassword(alice, "POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{"NOSUCHDEVICE"}}, testPassword)
	expectOK(t, r, "UIA as alice")
	body := map[string]any{"devices": []string{"NOSUCHDEVICE"}}
	session := uiaChallenge(alice, "POST", "/_matrix/client/v3/delete_devices", body)
	r = call(alice, "POST", "/_matrix/client/v3/delete_devices", withAuth(body, passwordAuth("@ALICE:"+srv.Name, testPassword, session)))
	expectOK(t, r, "UIA as @ALICE")
}
