package e2e

import (
	"testing"
)

// TestFederationKnock: a user of B knocks on a knock-only room on A through A; the knock
// appears in B's /sync knock section and in A's room; A's admin approves it by inviting, the
// invite reaches B, and the user joins. A knock on a room that does not allow knocking is
// refused with the resident server's M_FORBIDDEN. Profiles of the other server's users are
// asked of that server.
func TestFederationKnock(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{
		"room_version": "10", "name": "Knock here",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}}},
	})
	alices, bobs := newSyncer(alice, ""), newSyncer(bob, "")
	alices.once(0)
	bobs.once(0)

	r := call(bob, "POST", "/_matrix/client/v3/knock/"+esc(roomID)+"?via="+esc(a.Name), map[string]any{"reason": "let me in"})
	if r.Status != 200 || str(r.Body, "room_id") != roomID {
		t.Fatalf("knock over federation: %d %s", r.Status, r.Raw)
	}
	bobs.until("bob's knock in his /sync", func(r Resp) bool {
		k := obj(r.Body, "rooms", "knock", roomID)
		if k == nil {
			return false
		}
		sawName := false
		for _, e := range list(obj(k, "knock_state"), "events") {
			if evType(e) == "m.room.name" {
				sawName = true
			}
		}
		return sawName
	})
	alices.until("bob's knock in alice's room", func(r Resp) bool {
		for _, e := range list(obj(obj(r.Body, "rooms", "join"), roomID, "timeline"), "events") {
			if evType(e) == "m.room.member" && str(e, "state_key") == bob.UserID && str(obj(e, "content"), "membership") == "knock" {
				return true
			}
		}
		return false
	})
	// Approval: alice invites bob; his server hears of it and he joins.
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": bob.UserID})
	bobs.until("the approval (an invite) in bob's /sync", func(r Resp) bool {
		return obj(r.Body, "rooms", "invite", roomID) != nil
	})
	if r := call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/join", map[string]any{}); r.Status != 200 {
		t.Fatalf("bob joining after approval: %d %s", r.Status, r.Raw)
	}
	alices.until("bob's join in alice's room", func(r Resp) bool {
		for _, e := range list(obj(obj(r.Body, "rooms", "join"), roomID, "timeline"), "events") {
			if evType(e) == "m.room.member" && str(e, "state_key") == bob.UserID && str(obj(e, "content"), "membership") == "join" {
				return true
			}
		}
		return false
	})

	// bob's initial /sync has the room's state, although his server's first events of the
	// room (the knock, the invite) came without it.
	full := bob.Sync("", "", 0)
	jr := obj(full.Body, "rooms", "join", roomID)
	stateTypes := map[string]bool{}
	for _, e := range append(list(obj(jr, "state"), "events"), list(obj(jr, "timeline"), "events")...) {
		stateTypes[evType(e)] = true
	}
	for _, want := range []string{"m.room.create", "m.room.name", "m.room.join_rules", "m.room.power_levels"} {
		if !stateTypes[want] {
			t.Errorf("bob's initial sync of the room lacks %s: %s", want, jsonString(jr))
		}
	}

	// Profiles of the other server's users are asked of that server.
	if r := call(alice, "GET", "/_matrix/client/v3/profile/"+esc(bob.UserID), nil); r.Status != 200 || str(r.Body, "displayname") != "bob" {
		t.Errorf("alice reading bob's profile on the other server: %d %s", r.Status, r.Raw)
	}
	if r := call(alice, "GET", "/_matrix/client/v3/profile/"+esc("@nobody:"+b.Name), nil); r.Status != 404 || str(r.Body, "errcode") != "M_NOT_FOUND" {
		t.Errorf("profile of an unknown user of the other server: %d %s, want 404 M_NOT_FOUND", r.Status, r.Raw)
	}

	// A room that does not allow knocking refuses the knock.
	closed := alice.CreateRoom(map[string]any{"preset": "private_chat", "room_version": "10"})
	if r := call(bob, "POST", "/_matrix/client/v3/knock/"+esc(closed)+"?via="+esc(a.Name), map[string]any{}); r.Status != 403 || str(r.Body, "errcode") != "M_FORBIDDEN" {
		t.Fatalf("knock on a private room: %d %s, want 403 M_FORBIDDEN", r.Status, r.Raw)
	}
}
