package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// adminRoom is the path of an admin room route.
func adminRoom(version, roomID, rest string) string {
	return "/_synapse/admin/" + version + "/rooms/" + esc(roomID) + rest
}

// roomIDsOf returns the room_id of each room of a room list.
func roomIDsOf(r Resp) []string {
	var out []string
	rooms, _ := r.Body["rooms"].([]any)
	for _, x := range rooms {
		out = append(out, str(x.(map[string]any), "room_id"))
	}
	return out
}

// inum is the integer at key of m, -1 when there is none.
func inum(m map[string]any, key string) int {
	f, ok := m[key].(float64)
	if !ok {
		return -1
	}
	return int(f)
}

// TestAdminRoomsList: the room list's fields, search, order, filters and paging.
func TestAdminRoomsList(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	big := alice.CreateRoom(map[string]any{"name": "Zebra crossing", "visibility": "public", "room_alias_name": "zebra"})
	join(bob, big)
	small := alice.CreateRoom(map[string]any{"name": "apple pie", "initial_state": []any{
		map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}},
	}})
	space := bob.CreateRoom(map[string]any{"name": "Mango space", "creation_content": map[string]any{"type": "m.space"}})
	empty := bob.CreateRoom(map[string]any{"name": "Left behind"})
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(empty)+"/leave", map[string]any{})

	r := admin.MustDo("GET", "/_synapse/admin/v1/rooms", nil)
	if inum(r.Body, "total_rooms") != 4 || inum(r.Body, "offset") != 0 || r.Body["next_batch"] != nil || r.Body["prev_batch"] != nil {
		t.Fatalf("list: %s", r.Raw)
	}
	// Default order: by name.
	if got := roomIDsOf(r); strings.Join(got, " ") != strings.Join([]string{empty, space, big, small}, " ") {
		// Names: "Left behind", "Mango space", "Zebra crossing", "apple pie" (byte order).
		t.Errorf("default order %v, want by name", got)
	}
	var bigEntry, smallEntry, spaceEntry map[string]any
	for _, x := range r.Body["rooms"].([]any) {
		e := x.(map[string]any)
		switch str(e, "room_id") {
		case big:
			bigEntry = e
		case small:
			smallEntry = e
		case space:
			spaceEntry = e
		}
	}
	want := map[string]any{
		"name": "Zebra crossing", "canonical_alias": "#zebra:" + serverNameOf(alice.UserID), "joined_members": 2.0,
		"joined_local_members": 2.0, "creator": alice.UserID, "encryption": nil, "federatable": true, "public": true,
		"join_rules": "public", "history_visibility": "shared", "room_type": nil,
	}
	for k, v := range want {
		if bigEntry[k] != v {
			t.Errorf("big room %s = %v, want %v (%v)", k, bigEntry[k], v, bigEntry)
		}
	}
	if inum(bigEntry, "state_events") < 6 || str(bigEntry, "version") == "" {
		t.Errorf("big room: %v", bigEntry)
	}
	if smallEntry["encryption"] != "m.megolm.v1.aes-sha2" || smallEntry["public"] != false || smallEntry["join_rules"] != "invite" {
		t.Errorf("small room: %v", smallEntry)
	}
	if spaceEntry["room_type"] != "m.space" {
		t.Errorf("space: %v", spaceEntry)
	}

	r = admin.MustDo("GET", "/_synapse/admin/v1/rooms?order_by=joined_members", nil)
	if got := roomIDsOf(r); got[0] != big || got[3] != empty {
		t.Errorf("by joined_members: %v", got)
	}
	r = admin.MustDo("GET", "/_synapse/admin/v1/rooms?order_by=joined_members&dir=b", nil)
	if got := roomIDsOf(r); got[0] != empty || got[3] != big {
		t.Errorf("by joined_members backwards: %v", got)
	}
	for term, wantID := range map[string]string{"zebra": big, "APPLE": small, space: space, "zeb": big} {
		r = admin.MustDo("GET", "/_synapse/admin/v1/rooms?search_term="+url.QueryEscape(term), nil)
		if got := roomIDsOf(r); len(got) != 1 || got[0] != wantID || inum(r.Body, "total_rooms") != 1 {
			t.Errorf("search %q: %s", term, r.Raw)
		}
	}
	r = admin.MustDo("GET", "/_synapse/admin/v1/rooms?public_rooms=true", nil)
	if got := roomIDsOf(r); len(got) != 1 || got[0] != big {
		t.Errorf("public_rooms: %v", got)
	}
	r = admin.MustDo("GET", "/_synapse/admin/v1/rooms?empty_rooms=true", nil)
	if got := roomIDsOf(r); len(got) != 1 || got[0] != empty {
		t.Errorf("empty_rooms: %v", got)
	}
	r = admin.MustDo("GET", "/_synapse/admin/v1/rooms?empty_rooms=false&public_rooms=false", nil)
	if got := roomIDsOf(r); len(got) != 2 {
		t.Errorf("not empty, not public: %v", got)
	}

	// Paging by name, two at a time.
	var paged []string
	from := 0
	for i := 0; i < 3; i++ {
		r = admin.MustDo("GET", fmt.Sprintf("/_synapse/admin/v1/rooms?limit=2&from=%d", from), nil)
		paged = append(paged, roomIDsOf(r)...)
		if inum(r.Body, "offset") != from || inum(r.Body, "total_rooms") != 4 {
			t.Errorf("page from %d: %s", from, r.Raw)
		}
		if from > 0 && inum(r.Body, "prev_batch") != from-2 {
			t.Errorf("page from %d: prev_batch %v", from, r.Body["prev_batch"])
		}
		if r.Body["next_batch"] == nil {
			break
		}
		from = inum(r.Body, "next_batch")
	}
	if strings.Join(paged, " ") != strings.Join([]string{empty, space, big, small}, " ") {
		t.Errorf("paged %v", paged)
	}

	expectErr(t, admin.Do("GET", "/_synapse/admin/v1/rooms?order_by=colour", nil), "bad order_by", 400, "M_INVALID_PARAM")
	expectErr(t, admin.Do("GET", "/_synapse/admin/v1/rooms?dir=x", nil), "bad dir", 400, "M_INVALID_PARAM")
	expectErr(t, admin.Do("GET", "/_synapse/admin/v1/rooms?from=-1", nil), "bad from", 400, "M_INVALID_PARAM")
	expectErr(t, admin.Do("GET", "/_synapse/admin/v1/rooms?public_rooms=maybe", nil), "bad public_rooms", 400, "M_INVALID_PARAM")
	expectErr(t, admin.Do("GET", "/_synapse/admin/v1/rooms?search_term=", nil), "empty search_term", 400, "M_INVALID_PARAM")
}

func serverNameOf(userID string) string {
	_, name, _ := strings.Cut(userID, ":")
	return name
}

// TestAdminRoomsRead: details, members, state, messages, context, timestamp_to_event and
// forward extremities of a room the admin is not in.
func TestAdminRoomsRead(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"name": "Secrets", "topic": "hush", "preset": "public_chat"})
	putState(alice, room, "m.room.avatar", "", map[string]any{"url": "mxc://example.org/abc"})
	join(bob, room)
	var sent []string
	var times []int64
	for i := 0; i < 12; i++ {
		sent = append(sent, alice.Send(room, fmt.Sprintf("message %d", i)))
		times = append(times, time.Now().UnixMilli())
		time.Sleep(3 * time.Millisecond)
	}

	r := admin.MustDo("GET", adminRoom("v1", room, ""), nil)
	for k, v := range map[string]any{"room_id": room, "name": "Secrets", "topic": "hush", "avatar": "mxc://example.org/abc",
		"joined_members": 2.0, "joined_local_members": 2.0, "joined_local_devices": 2.0, "forgotten": false, "creator": alice.UserID} {
		if r.Body[k] != v {
			t.Errorf("details %s = %v, want %v", k, r.Body[k], v)
		}
	}
	expectErr(t, admin.Do("GET", adminRoom("v1", "!nope:"+serverNameOf(alice.UserID), ""), nil), "unknown room", 404, "M_NOT_FOUND")
	expectErr(t, admin.Do("GET", adminRoom("v1", "nope", ""), nil), "bad room ID", 400, "M_INVALID_PARAM")

	r = admin.MustDo("GET", adminRoom("v1", room, "/members"), nil)
	if inum(r.Body, "total") != 2 || fmt.Sprint(r.Body["members"]) != fmt.Sprint([]any{alice.UserID, bob.UserID}) {
		t.Errorf("members: %s", r.Raw)
	}
	r = admin.MustDo("GET", adminRoom("v1", room, "/state"), nil)
	state := list(r.Body, "state")
	if len(onlyType(state, "m.room.create")) != 1 || len(onlyType(state, "m.room.member")) != 2 {
		t.Errorf("state: %s", r.Raw)
	}
	r = admin.MustDo("GET", adminRoom("v1", room, "/state?type=m.room.member"), nil)
	if got := list(r.Body, "state"); len(got) != 2 || len(onlyType(got, "m.room.member")) != 2 {
		t.Errorf("state of type m.room.member: %s", r.Raw)
	}

	// messages: backwards from the end, in pages of 5, filtered to messages.
	filter := url.QueryEscape(`{"types":["m.room.message"]}`)
	var got []string
	from := ""
	for i := 0; i < 5; i++ {
		r = admin.MustDo("GET", adminRoom("v1", room, "/messages?dir=b&limit=5&filter="+filter+"&from="+url.QueryEscape(from)), nil)
		for _, e := range list(r.Body, "chunk") {
			got = append(got, evID(e))
		}
		if str(r.Body, "start") == "" {
			t.Fatalf("messages without start: %s", r.Raw)
		}
		from = str(r.Body, "end")
		if from == "" {
			break
		}
	}
	checkSameIDs(t, "messages backwards", got, reversed(sent))
	r = admin.MustDo("GET", adminRoom("v1", room, "/messages?limit=3"), nil) // dir defaults to f
	if evs := list(r.Body, "chunk"); len(evs) != 3 || evType(evs[0]) != "m.room.create" || str(r.Body, "end") == "" {
		t.Errorf("messages forwards: %s", r.Raw)
	}
	expectErr(t, admin.Do("GET", adminRoom("v1", room, "/messages?dir=x"), nil), "bad dir", 400, "M_INVALID_PARAM")
	expectErr(t, admin.Do("GET", adminRoom("v1", room, "/messages?from=garbage"), nil), "bad from", 400, "M_INVALID_PARAM")

	// context
	r = admin.MustDo("GET", adminRoom("v1", room, "/context/"+esc(sent[5])+"?limit=4"), nil)
	if evID(obj(r.Body, "event")) != sent[5] {
		t.Errorf("context event: %s", r.Raw)
	}
	checkSameIDs(t, "events_before", ids(list(r.Body, "events_before")), []string{sent[4], sent[3]})
	checkSameIDs(t, "events_after", ids(list(r.Body, "events_after")), []string{sent[6], sent[7]})
	if len(list(r.Body, "state")) < 5 || str(r.Body, "start") == "" || str(r.Body, "end") == "" {
		t.Errorf("context: %s", r.Raw)
	}
	expectErr(t, admin.Do("GET", adminRoom("v1", room, "/context/"+esc("$nope")), nil), "context of an unknown event", 404, "M_NOT_FOUND")

	// timestamp_to_event
	r = admin.MustDo("GET", adminRoom("v1", room, fmt.Sprintf("/timestamp_to_event?ts=%d&dir=b", times[6])), nil)
	if str(r.Body, "event_id") != sent[6] || r.Body["origin_server_ts"] == nil {
		t.Errorf("timestamp_to_event backwards: %s", r.Raw)
	}
	r = admin.MustDo("GET", adminRoom("v1", room, fmt.Sprintf("/timestamp_to_event?ts=%d", times[6]+1)), nil)
	if str(r.Body, "event_id") != sent[7] {
		t.Errorf("timestamp_to_event forwards: %s", r.Raw)
	}
	expectErr(t, admin.Do("GET", adminRoom("v1", room, "/timestamp_to_event"), nil), "no ts", 400, "M_MISSING_PARAM")
	expectErr(t, admin.Do("GET", adminRoom("v1", room, fmt.Sprintf("/timestamp_to_event?ts=%d", time.Now().UnixMilli()+60000)), nil), "nothing after", 404, "M_NOT_FOUND")

	// forward extremities: one, the last message; deleting leaves it.
	r = admin.MustDo("GET", adminRoom("v1", room, "/forward_extremities"), nil)
	xs := list(r.Body, "results")
	if inum(r.Body, "count") != 1 || len(xs) != 1 || evID(xs[0]) != sent[11] || inum(xs[0], "depth") <= 0 || r.Body["results"].([]any)[0].(map[string]any)["state_group"] == nil {
		t.Errorf("forward_extremities: %s", r.Raw)
	}
	r = admin.MustDo("DELETE", adminRoom("v1", room, "/forward_extremities"), nil)
	if inum(r.Body, "deleted") != 0 {
		t.Errorf("delete forward_extremities: %s", r.Raw)
	}
	alias := "#secrets:" + serverNameOf(alice.UserID)
	alice.MustDo("PUT", "/_matrix/client/v3/directory/room/"+esc(alias), map[string]any{"room_id": room})
	r = admin.MustDo("GET", "/_synapse/admin/v1/rooms/"+esc(alias)+"/forward_extremities", nil)
	if inum(r.Body, "count") != 1 {
		t.Errorf("forward_extremities by alias: %s", r.Raw)
	}
}

// TestAdminRoomsManage: block, make_room_admin and join a user.
func TestAdminRoomsManage(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	carol := srv.Register(t, "carol")

	// block
	public := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	r := admin.MustDo("GET", adminRoom("v1", public, "/block"), nil)
	if r.Body["block"] != false || r.Body["user_id"] != nil {
		t.Errorf("block status: %s", r.Raw)
	}
	r = admin.MustDo("PUT", adminRoom("v1", public, "/block"), map[string]any{"block": true})
	if r.Body["block"] != true {
		t.Errorf("block: %s", r.Raw)
	}
	r = admin.MustDo("GET", adminRoom("v1", public, "/block"), nil)
	if r.Body["block"] != true || r.Body["user_id"] != admin.UserID {
		t.Errorf("block status: %s", r.Raw)
	}
	r = bob.Do("POST", "/_matrix/client/v3/join/"+esc(public), map[string]any{})
	expectErr(t, r, "join a blocked room", 403, "M_FORBIDDEN")
	if !strings.Contains(str(r.Body, "error"), "blocked") {
		t.Errorf("join a blocked room: %s", r.Raw)
	}
	expectErr(t, alice.Do("POST", "/_matrix/client/v3/rooms/"+esc(public)+"/invite", map[string]any{"user_id": bob.UserID}), "invite into a blocked room", 403, "M_FORBIDDEN")
	knock := alice.CreateRoom(map[string]any{"initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}},
	}})
	admin.MustDo("PUT", adminRoom("v1", knock, "/block"), map[string]any{"block": true})
	expectErr(t, bob.Do("POST", "/_matrix/client/v3/knock/"+esc(knock), map[string]any{}), "knock on a blocked room", 403, "M_FORBIDDEN")
	admin.MustDo("PUT", adminRoom("v1", public, "/block"), map[string]any{"block": false})
	join(bob, public)
	// A room not known yet may be blocked.
	unknown := "!unknown:" + serverNameOf(alice.UserID)
	admin.MustDo("PUT", adminRoom("v1", unknown, "/block"), map[string]any{"block": true})
	expectErr(t, bob.Do("POST", "/_matrix/client/v3/join/"+esc(unknown), map[string]any{}), "join an unknown blocked room", 403, "M_FORBIDDEN")
	expectErr(t, admin.Do("PUT", adminRoom("v1", public, "/block"), map[string]any{}), "block without block", 400, "M_MISSING_PARAM")
	expectErr(t, admin.Do("PUT", adminRoom("v1", public, "/block"), map[string]any{"block": "yes"}), "block not a bool", 400, "M_BAD_JSON")

	// make_room_admin: bob gets alice's power; in a private room he is invited.
	private := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	admin.MustDo("POST", adminRoom("v1", private, "/make_room_admin"), map[string]any{"user_id": bob.UserID})
	pl := stateEvent(alice, private, "m.room.power_levels", "")
	users := obj(pl.Body, "users")
	// alice created the room: her power is the highest a local member has (in room version 12
	// a creator's is above any number; bob gets 100 then).
	if lvl, _ := users[bob.UserID].(float64); lvl < 100 || (users[alice.UserID] != nil && lvl != users[alice.UserID]) {
		t.Errorf("power levels after make_room_admin: %s", pl.Raw)
	}
	if m := membership(alice, private, bob.UserID); m != "invite" {
		t.Errorf("bob's membership after make_room_admin: %q", m)
	}
	// The admin themself by default, in a public room (not invited there: it is public).
	admin.MustDo("POST", adminRoom("v1", public, "/make_room_admin"), nil)
	pl = stateEvent(alice, public, "m.room.power_levels", "")
	if obj(pl.Body, "users")[admin.UserID] == nil {
		t.Errorf("power levels after make_room_admin for the admin: %s", pl.Raw)
	}
	expectErr(t, admin.Do("POST", adminRoom("v1", private, "/make_room_admin"), map[string]any{"user_id": "@x:elsewhere.example"}), "remote user", 400, "M_INVALID_PARAM")

	// join: into a public room directly, into a private one after an invite from a member.
	r = admin.MustDo("POST", "/_synapse/admin/v1/join/"+esc(public), map[string]any{"user_id": carol.UserID})
	if str(r.Body, "room_id") != public || membership(alice, public, carol.UserID) != "join" {
		t.Errorf("join public: %s", r.Raw)
	}
	r = admin.MustDo("POST", "/_synapse/admin/v1/join/"+esc(private), map[string]any{"user_id": carol.UserID})
	if str(r.Body, "room_id") != private || membership(alice, private, carol.UserID) != "join" {
		t.Errorf("join private: %s", r.Raw)
	}
	alias := "#manage:" + serverNameOf(alice.UserID)
	alice.MustDo("PUT", "/_matrix/client/v3/directory/room/"+esc(alias), map[string]any{"room_id": private})
	r = admin.MustDo("POST", "/_synapse/admin/v1/join/"+esc(alias), map[string]any{"user_id": bob.UserID})
	if str(r.Body, "room_id") != private || membership(alice, private, bob.UserID) != "join" {
		t.Errorf("join by alias: %s", r.Raw)
	}
	expectErr(t, admin.Do("POST", "/_synapse/admin/v1/join/"+esc(private), map[string]any{}), "join without user_id", 400, "M_MISSING_PARAM")
	expectErr(t, admin.Do("POST", "/_synapse/admin/v1/join/"+esc(private), map[string]any{"user_id": "@ghost:" + serverNameOf(alice.UserID)}), "join an unknown user", 404, "M_NOT_FOUND")
	expectErr(t, admin.Do("POST", "/_synapse/admin/v1/join/"+esc("!nope:"+serverNameOf(alice.UserID)), map[string]any{"user_id": bob.UserID}), "join an unknown room", 404, "M_NOT_FOUND")
}

// inRooms reports whether a /sync response lists roomID in the given section (join, leave, invite).
func inRooms(r Resp, section, roomID string) bool {
	_, ok := obj(r.Body, "rooms", section)[roomID]
	return ok
}

// TestAdminRoomsDelete: delete v1 without purge, and v2 with a new room, block and purge,
// polled through delete_status; former members' /sync goes on.
func TestAdminRoomsDelete(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	server := serverNameOf(alice.UserID)

	// v1, no purge: members leave, the room stays.
	v1 := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "oldone"})
	join(bob, v1)
	v1Since := str(bob.Sync("", "", 0).Body, "next_batch")
	r := admin.MustDo("DELETE", adminRoom("v1", v1, ""), map[string]any{"purge": false})
	checkSameIDs(t, "v1 kicked_users", toStrings(r.Body["kicked_users"]), []string{alice.UserID, bob.UserID})
	if r.Body["new_room_id"] != nil || fmt.Sprint(r.Body["local_aliases"]) != "[#oldone:"+server+"]" || fmt.Sprint(r.Body["failed_to_kick_users"]) != "[]" {
		t.Errorf("v1 delete: %s", r.Raw)
	}
	if m := adminMembership(admin, v1, bob.UserID); m != "" && m != "leave" {
		t.Errorf("bob after v1 delete: %q", m)
	}
	if s := bob.Sync(v1Since, "", 0); !inRooms(s, "leave", v1) {
		t.Errorf("bob's sync after the v1 delete does not show that he left: %s", s.Raw)
	}
	d := admin.MustDo("GET", adminRoom("v1", v1, ""), nil)
	if inum(d.Body, "joined_members") != 0 || d.Body["forgotten"] != false {
		t.Errorf("room after v1 delete without purge: %s", d.Raw)
	}
	expectErr(t, alice.Do("GET", "/_matrix/client/v3/directory/room/"+esc("#oldone:"+server), nil), "alias after delete", 404, "M_NOT_FOUND")
	expectErr(t, admin.Do("DELETE", adminRoom("v1", "!nope:"+server, ""), map[string]any{}), "v1 delete of an unknown room", 404, "M_NOT_FOUND")
	r = admin.MustDo("DELETE", adminRoom("v1", "!nope:"+server, ""), map[string]any{"block": true})
	if fmt.Sprint(r.Body["kicked_users"]) != "[]" {
		t.Errorf("v1 block of an unknown room: %s", r.Raw)
	}
	if admin.MustDo("GET", adminRoom("v1", "!nope:"+server, "/block"), nil).Body["block"] != true {
		t.Errorf("unknown room not blocked by v1 delete")
	}

	// v2 with a new room, block and purge.
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "badroom", "name": "Bad"})
	join(bob, room)
	bad := alice.Send(room, "something bad")
	bobSync := bob.Sync("", "", 0)
	since := str(bobSync.Body, "next_batch")
	if !inRooms(bobSync, "join", room) {
		t.Fatalf("bob's first sync has no room: %s", bobSync.Raw)
	}
	sliding := slidingOK(t, bob, "", 0, allRooms(10, 1))
	if slidingRoom(sliding, room) == nil {
		t.Fatalf("bob's sliding sync has no room: %s", sliding.Raw)
	}
	r = admin.MustDo("DELETE", adminRoom("v2", room, ""), map[string]any{
		"new_room_user_id": admin.UserID, "room_name": "Moved", "message": "This room was shut down", "block": true,
	})
	deleteID := str(r.Body, "delete_id")
	if deleteID == "" {
		t.Fatalf("v2 delete: %s", r.Raw)
	}
	var status map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := admin.MustDo("GET", "/_synapse/admin/v2/rooms/delete_status/"+esc(deleteID), nil)
		status = s.Body
		if st := str(status, "status"); st == "complete" || st == "failed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delete never finished: %s", s.Raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if str(status, "status") != "complete" || str(status, "room_id") != room || str(status, "delete_id") != deleteID {
		t.Fatalf("delete status: %v", status)
	}
	shutdown := obj(status, "shutdown_room")
	checkSameIDs(t, "v2 kicked_users", toStrings(shutdown["kicked_users"]), []string{alice.UserID, bob.UserID})
	newRoom := str(shutdown, "new_room_id")
	if newRoom == "" || fmt.Sprint(shutdown["local_aliases"]) != "[#badroom:"+server+"]" {
		t.Errorf("shutdown_room: %v", shutdown)
	}
	byRoom := admin.MustDo("GET", adminRoom("v2", room, "/delete_status"), nil)
	if results := list(byRoom.Body, "results"); len(results) != 1 || str(results[0], "delete_id") != deleteID || str(results[0], "status") != "complete" {
		t.Errorf("delete_status by room: %s", byRoom.Raw)
	}
	// Purged: the room is unknown, its event gone; blocked.
	expectErr(t, admin.Do("GET", adminRoom("v1", room, ""), nil), "details of a purged room", 404, "M_NOT_FOUND")
	expectErr(t, admin.Do("GET", adminRoom("v1", room, "/context/"+esc(bad)), nil), "context in a purged room", 404, "M_NOT_FOUND")
	expectErr(t, bob.Do("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{}), "join a deleted room", 403, "M_FORBIDDEN")
	if b := admin.MustDo("GET", adminRoom("v1", room, "/block"), nil); b.Body["block"] != true {
		t.Errorf("deleted room not blocked: %s", b.Raw)
	}
	if ids := roomIDsOf(admin.MustDo("GET", "/_synapse/admin/v1/rooms", nil)); strings.Contains(strings.Join(ids, " "), room) {
		t.Errorf("purged room still listed: %v", ids)
	}
	// The members moved to the new room, where the message is; the alias points there.
	for _, c := range []*Client{alice, bob} {
		if m := adminMembership(admin, newRoom, c.UserID); m != "join" {
			t.Errorf("%s in the new room: %q", c.UserID, m)
		}
	}
	if a := alice.MustDo("GET", "/_matrix/client/v3/directory/room/"+esc("#badroom:"+server), nil); str(a.Body, "room_id") != newRoom {
		t.Errorf("alias after the move: %s", a.Raw)
	}
	msgs := admin.MustDo("GET", adminRoom("v1", newRoom, "/messages?dir=b&limit=50"), nil)
	found := false
	for _, e := range onlyType(list(msgs.Body, "chunk"), "m.room.message") {
		found = found || evBody(e) == "This room was shut down"
	}
	if !found {
		t.Errorf("no message in the new room: %s", msgs.Raw)
	}
	if nm := stateEvent(bob, newRoom, "m.room.name", ""); str(nm.Body, "name") != "Moved" {
		t.Errorf("new room name: %s", nm.Raw)
	}
	// Bob's /sync from before the deletion works and shows that he left the old room (his
	// leave event, kept past the purge), so that his client drops it.
	s := bob.Sync(since, "", 0)
	if inRooms(s, "join", room) || inRooms(s, "invite", room) || !inRooms(s, "leave", room) || !inRooms(s, "join", newRoom) {
		t.Errorf("bob's sync after the deletion: %s", s.Raw)
	}
	if tl := list(obj(s.Body, "rooms", "leave", room, "timeline"), "events"); len(tl) != 1 ||
		evType(tl[0]) != "m.room.member" || str(tl[0], "state_key") != bob.UserID || str(obj(tl[0], "content"), "membership") != "leave" {
		t.Errorf("bob's leave of the deleted room: %s", s.Raw)
	}
	if again := bob.Sync(str(s.Body, "next_batch"), "", 0); inRooms(again, "leave", room) {
		t.Errorf("the leave of the deleted room came twice: %s", again.Raw)
	}
	sliding = slidingOK(t, bob, str(sliding.Body, "pos"), 0, allRooms(10, 1))
	if slidingRoom(sliding, newRoom) == nil || inum(obj(sliding.Body, "lists", "all"), "count") != 1 {
		t.Errorf("bob's sliding sync after the deletion: %s", sliding.Raw)
	}
	s = bob.Sync("", "", 0)
	if inRooms(s, "join", room) || inRooms(s, "leave", room) || !inRooms(s, "join", newRoom) {
		t.Errorf("bob's initial sync after the deletion: %s", s.Raw)
	}
	bob.Sync(str(s.Body, "next_batch"), "", 0)

	// The status survives a restart.
	srv.Stop()
	srv.Start()
	if s := admin.MustDo("GET", "/_synapse/admin/v2/rooms/delete_status/"+esc(deleteID), nil); str(s.Body, "status") != "complete" {
		t.Errorf("delete status after a restart: %s", s.Raw)
	}
	expectErr(t, admin.Do("GET", adminRoom("v1", room, ""), nil), "details of a purged room after a restart", 404, "M_NOT_FOUND")
	if s := bob.Sync(since, "", 0); inRooms(s, "join", room) {
		t.Errorf("bob's sync after a restart: %s", s.Raw)
	}

	expectErr(t, admin.Do("GET", "/_synapse/admin/v2/rooms/delete_status/nope", nil), "unknown delete_id", 404, "M_NOT_FOUND")
	expectErr(t, admin.Do("GET", adminRoom("v2", v1, "/delete_status"), nil), "no delete for a room", 404, "M_NOT_FOUND")
	expectErr(t, admin.Do("DELETE", adminRoom("v2", "!nope2:"+server, ""), map[string]any{}), "v2 delete of an unknown room", 404, "M_NOT_FOUND")
	expectErr(t, admin.Do("DELETE", adminRoom("v2", newRoom, ""), map[string]any{"new_room_user_id": "@x:elsewhere.example"}), "remote new_room_user_id", 400, "M_INVALID_PARAM")
	expectErr(t, admin.Do("DELETE", adminRoom("v2", newRoom, ""), map[string]any{"new_room_user_id": "@ghost:" + server}), "new_room_user_id without an account", 400, "M_INVALID_PARAM")
	expectErr(t, admin.Do("DELETE", adminRoom("v2", newRoom, ""), map[string]any{"block": "yes"}), "block not a bool", 400, "M_BAD_JSON")
}

// adminMembership reads a user's membership of a room through the admin API's room state.
func adminMembership(admin *Client, roomID, userID string) string {
	r := admin.MustDo("GET", adminRoom("v1", roomID, "/state?type=m.room.member"), nil)
	for _, e := range list(r.Body, "state") {
		if str(e, "state_key") == userID {
			return str(obj(e, "content"), "membership")
		}
	}
	return ""
}

func toStrings(v any) []string {
	out := []string{}
	xs, _ := v.([]any)
	for _, x := range xs {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestAdminRoomsForbidden: every room route refuses a non-admin with 403 M_FORBIDDEN.
func TestAdminRoomsForbidden(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	ev := alice.Send(room, "hi")
	for _, rt := range []struct{ method, path string }{
		{"GET", "/_synapse/admin/v1/rooms"},
		{"GET", adminRoom("v1", room, "")},
		{"DELETE", adminRoom("v1", room, "")},
		{"GET", adminRoom("v1", room, "/members")},
		{"GET", adminRoom("v1", room, "/state")},
		{"GET", adminRoom("v1", room, "/messages")},
		{"GET", adminRoom("v1", room, "/context/"+esc(ev))},
		{"GET", adminRoom("v1", room, "/timestamp_to_event?ts=0")},
		{"GET", adminRoom("v1", room, "/forward_extremities")},
		{"DELETE", adminRoom("v1", room, "/forward_extremities")},
		{"GET", adminRoom("v1", room, "/block")},
		{"PUT", adminRoom("v1", room, "/block")},
		{"POST", adminRoom("v1", room, "/make_room_admin")},
		{"POST", "/_synapse/admin/v1/join/" + esc(room)},
		{"DELETE", adminRoom("v2", room, "")},
		{"GET", adminRoom("v2", room, "/delete_status")},
		{"GET", "/_synapse/admin/v2/rooms/delete_status/abc"},
	} {
		expectErr(t, call(alice, rt.method, rt.path, map[string]any{"block": true, "user_id": alice.UserID}), rt.method+" "+rt.path, 403, "M_FORBIDDEN")
	}
	// The room is untouched.
	if m := membership(alice, room, alice.UserID); m != "join" {
		t.Errorf("alice after the refused calls: %q", m)
	}
}

// TestAdminRoomsDeleteFederated: deleting a room with purge still tells the other servers of
// the room that this server's users left.
func TestAdminRoomsDeleteFederated(t *testing.T) {
	ca := newTestCA(t)
	a := startFederatedServer(t, ca)
	b := startFederatedServer(t, ca)
	admin := a.RegisterAdmin(t, "root")
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(a.Name), map[string]any{})
	alice.Send(room, "hello bob")

	r := admin.MustDo("DELETE", adminRoom("v1", room, ""), map[string]any{"purge": true})
	checkSameIDs(t, "kicked_users", toStrings(r.Body["kicked_users"]), []string{alice.UserID})
	expectErr(t, admin.Do("GET", adminRoom("v1", room, ""), nil), "details of the purged room", 404, "M_NOT_FOUND")
	deadline := time.Now().Add(20 * time.Second)
	for membership(bob, room, alice.UserID) != "leave" {
		if time.Now().After(deadline) {
			t.Fatalf("B never learnt that alice left: %q", membership(bob, room, alice.UserID))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
