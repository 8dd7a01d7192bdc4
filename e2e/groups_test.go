package e2e

import (
	"testing"
)

// TestGroupRoles exercises power levels in a group room: kicking, forbidden kicks, ownership
// transfer, muting and banning. Authorization follows the room version 11 auth rules
// (content/rooms/v11.md, via v10/v8/...: "Authorization rules"); a rejected client request is
// 403 M_FORBIDDEN (kicking.yaml, banning.yaml, room_state.yaml, room_send.yaml, joining.yaml).
func TestGroupRoles(t *testing.T) {
	srv := StartServer(t)
	owner := srv.Register(t, "owner")
	admin := srv.Register(t, "admin")
	carol := srv.Register(t, "carol")
	dave := srv.Register(t, "dave")
	erin := srv.Register(t, "erin")
	frank := srv.Register(t, "frank")

	roomID := owner.CreateRoom(map[string]any{
		"preset":       "private_chat",
		"room_version": "11",
		"name":         "Group",
		"invite":       []string{admin.UserID, carol.UserID, dave.UserID, erin.UserID},
	})

	r := stateEvent(owner, roomID, "m.room.create", "")
	expectOK(t, r, "GET m.room.create")
	if v := str(r.Body, "room_version"); v != "11" {
		t.Errorf("m.room.create room_version = %q, want 11", v)
	}
	r = stateEvent(owner, roomID, "m.room.power_levels", "")
	expectOK(t, r, "GET power levels")
	if lvl, _ := obj(r.Body, "users")[owner.UserID].(float64); lvl != 100 {
		t.Errorf("creator power level %v, want 100: %s", obj(r.Body, "users")[owner.UserID], r.Raw)
	}
	pl := r.Body

	// setUsers replaces power_levels.users keeping the rest of the content.
	setUsers := func(c *Client, users map[string]int) Resp {
		t.Helper()
		content := map[string]any{}
		for k, v := range pl {
			content[k] = v
		}
		content["users"] = users
		return putState(c, roomID, "m.room.power_levels", "", content)
	}
	userLevel := func(userID string) any {
		t.Helper()
		r := stateEvent(owner, roomID, "m.room.power_levels", "")
		return obj(r.Body, "users")[userID]
	}

	for _, c := range []*Client{admin, carol, dave, erin} {
		join(c, roomID)
	}

	// room_state.yaml / rooms.yaml: for an empty state key "the trailing slash on this endpoint
	// is optional", so .../state/m.room.power_levels/ must work like .../state/m.room.power_levels.
	r = call(owner, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.power_levels/", nil)
	expectOK(t, r, "GET power levels with trailing slash")
	r = call(owner, "PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.power_levels/", pl)
	expectOK(t, r, "PUT unchanged power levels with trailing slash")

	expectOK(t, setUsers(owner, map[string]int{owner.UserID: 100, admin.UserID: 50}), "owner sets admin to 50")
	if lvl := userLevel(admin.UserID); lvl != float64(50) {
		t.Errorf("admin level %v, want 50", lvl)
	}

	daveSync := newSyncer(dave, "")
	daveSync.once(0)

	// Admin (50 >= kick 50, dave 0 < 50) kicks dave.
	r = call(admin, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/kick", map[string]any{"user_id": dave.UserID, "reason": "spam"})
	expectOK(t, r, "admin kicks dave")
	if m := membership(owner, roomID, dave.UserID); m != "leave" {
		t.Errorf("dave membership after kick = %q, want leave", m)
	}
	// Dave's client learns of the kick under rooms.leave (sync.yaml "Left rooms").
	r = daveSync.until("kick in rooms.leave", func(r Resp) bool { return obj(r.Body, "rooms", "leave", roomID) != nil })
	kickSeen := false
	for _, e := range list(obj(r.Body, "rooms", "leave", roomID, "timeline"), "events") {
		if evType(e) == "m.room.member" && str(e, "state_key") == dave.UserID && str(obj(e, "content"), "membership") == "leave" {
			kickSeen = true
			if str(e, "sender") != admin.UserID || str(obj(e, "content"), "reason") != "spam" {
				t.Errorf("kick event sender %q reason %q, want %s / spam", str(e, "sender"), str(obj(e, "content"), "reason"), admin.UserID)
			}
		}
	}
	if !kickSeen {
		t.Errorf("rooms.leave.%s.timeline lacks the kick event: %s", roomID, jsonString(obj(r.Body, "rooms", "leave", roomID)))
	}
	if obj(r.Body, "rooms", "join", roomID) != nil {
		t.Errorf("kicked room still under rooms.join")
	}
	r = sendTxn(dave, roomID, "m.room.message", "kicked1", map[string]any{"msgtype": "m.text", "body": "still here?"})
	expectErr(t, r, "kicked dave sends", 403, "M_FORBIDDEN")

	// Carol (0) cannot kick admin (50).
	r = call(carol, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/kick", map[string]any{"user_id": admin.UserID})
	expectErr(t, r, "carol kicks admin", 403, "M_FORBIDDEN")
	if m := membership(owner, roomID, admin.UserID); m != "join" {
		t.Errorf("admin membership after failed kick = %q, want join", m)
	}
	// Nor can carol raise herself.
	r = setUsers(carol, map[string]int{owner.UserID: 100, admin.UserID: 50, carol.UserID: 100})
	expectErr(t, r, "carol raises herself", 403, "M_FORBIDDEN")

	// Ownership transfer: owner raises carol to 100, then lowers self to 50.
	expectOK(t, setUsers(owner, map[string]int{owner.UserID: 100, admin.UserID: 50, carol.UserID: 100}), "owner raises carol to 100")
	expectOK(t, setUsers(owner, map[string]int{owner.UserID: 50, admin.UserID: 50, carol.UserID: 100}), "owner lowers self to 50")
	if lvl := userLevel(carol.UserID); lvl != float64(100) {
		t.Errorf("carol level %v, want 100", lvl)
	}
	if lvl := userLevel(owner.UserID); lvl != float64(50) {
		t.Errorf("old owner level %v, want 50", lvl)
	}

	// The old owner can no longer demote carol nor restore himself.
	r = setUsers(owner, map[string]int{owner.UserID: 50, admin.UserID: 50, carol.UserID: 0})
	expectErr(t, r, "old owner demotes carol", 403, "M_FORBIDDEN")
	r = setUsers(owner, map[string]int{owner.UserID: 100, admin.UserID: 50, carol.UserID: 100})
	expectErr(t, r, "old owner restores himself", 403, "M_FORBIDDEN")
	if lvl := userLevel(carol.UserID); lvl != float64(100) {
		t.Errorf("carol level after rejected demotion %v, want 100", lvl)
	}

	// Carol mutes erin (users[erin] = -1 < events_default 0).
	expectOK(t, sendTxn(erin, roomID, "m.room.message", "e1", map[string]any{"msgtype": "m.text", "body": "hi"}), "erin sends before mute")
	expectOK(t, setUsers(carol, map[string]int{owner.UserID: 50, admin.UserID: 50, carol.UserID: 100, erin.UserID: -1}), "carol mutes erin")
	r = sendTxn(erin, roomID, "m.room.message", "e2", map[string]any{"msgtype": "m.text", "body": "can you hear me"})
	expectErr(t, r, "muted erin sends", 403, "M_FORBIDDEN")
	expectOK(t, sendTxn(admin, roomID, "m.room.message", "a1", map[string]any{"msgtype": "m.text", "body": "admin still speaks"}), "admin sends")

	// Make the room public so a ban is the only thing stopping dave.
	expectOK(t, putState(carol, roomID, "m.room.join_rules", "", map[string]any{"join_rule": "public"}), "carol sets join_rules public")

	// Admin (50) may not ban carol (100).
	r = call(admin, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/ban", map[string]any{"user_id": carol.UserID})
	expectErr(t, r, "admin bans carol", 403, "M_FORBIDDEN")

	r = call(carol, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/ban", map[string]any{"user_id": dave.UserID, "reason": "again"})
	expectOK(t, r, "carol bans dave")
	if m := membership(owner, roomID, dave.UserID); m != "ban" {
		t.Errorf("dave membership after ban = %q, want ban", m)
	}
	r = call(dave, "POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
	expectErr(t, r, "banned dave joins", 403, "M_FORBIDDEN")
	r = call(dave, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/join", map[string]any{})
	expectErr(t, r, "banned dave joins via /rooms/{id}/join", 403, "M_FORBIDDEN")
	if m := membership(owner, roomID, dave.UserID); m != "ban" {
		t.Errorf("dave membership after rejected join = %q, want ban", m)
	}

	// Control: a user who is not banned can join the now public room.
	join(frank, roomID)
	if m := membership(owner, roomID, frank.UserID); m != "join" {
		t.Errorf("frank membership = %q, want join", m)
	}
}
