package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestDirectoryReportsKnockUpgrade covers the public room directory, the user directory,
// reports, knocking with approval, and room upgrades, as the clients involved see them.
func TestDirectoryReportsKnockUpgrade(t *testing.T) {
	srv := StartServer(t)
	alice, bob, carol := srv.Register(t, "alice"), srv.Register(t, "bob"), srv.Register(t, "carol")
	alice.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/displayname", map[string]any{"displayname": "Alice Liddell"})
	pub := alice.CreateRoom(map[string]any{"preset": "public_chat", "visibility": "public", "name": "Lobby", "topic": "Say hi", "room_alias_name": "lobby"})
	alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Secret"})

	// Public room directory: anyone, no auth, only published rooms.
	r := srv.Do(t, "", "GET", "/_matrix/client/v3/publicRooms", nil)
	chunk := r.Body["chunk"].([]any)
	if r.Status != 200 || len(chunk) != 1 {
		t.Fatalf("publicRooms: %d %s", r.Status, r.Raw)
	}
	entry := chunk[0].(map[string]any)
	if entry["room_id"] != pub || entry["name"] != "Lobby" || entry["topic"] != "Say hi" || entry["canonical_alias"] != "#lobby:localhost" || entry["num_joined_members"].(float64) != 1 {
		t.Fatalf("publicRooms entry %v", entry)
	}
	if r := bob.MustDo("POST", "/_matrix/client/v3/publicRooms", map[string]any{"filter": map[string]any{"generic_search_term": "lob"}}); len(r.Body["chunk"].([]any)) != 1 {
		t.Fatalf("publicRooms search: %s", r.Raw)
	}
	if r := bob.MustDo("POST", "/_matrix/client/v3/publicRooms", map[string]any{"filter": map[string]any{"generic_search_term": "nothing"}}); len(r.Body["chunk"].([]any)) != 0 {
		t.Fatalf("publicRooms search for nothing: %s", r.Raw)
	}

	// User directory: alice is in a public room, so bob finds her by display name.
	ud := bob.MustDo("POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": "liddell"})
	res := ud.Body["results"].([]any)
	if len(res) != 1 || res[0].(map[string]any)["user_id"] != alice.UserID || res[0].(map[string]any)["display_name"] != "Alice Liddell" {
		t.Fatalf("user directory: %s", ud.Raw)
	}
	// A term longer than any user ID or display name finds nobody (SQLite refuses LIKE
	// patterns over 50,000 bytes: this was a 500).
	ud = bob.MustDo("POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": strings.Repeat("liddell", 10000)})
	if res, _ := ud.Body["results"].([]any); len(res) != 0 {
		t.Fatalf("user directory with a 70,000-character term: %s", ud.Raw)
	}

	// Reports.
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(pub), map[string]any{})
	msg := alice.Send(pub, "rude words")
	bob.MustDo("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/report/%s", esc(pub), esc(msg)), map[string]any{"reason": "rude", "score": -50})
	if r := carol.Do("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/report/%s", esc(pub), esc(msg)), map[string]any{"reason": "x"}); r.Status != 404 {
		t.Fatalf("report by a non-member: %d", r.Status)
	}
	bob.MustDo("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/report", esc(pub)), map[string]any{"reason": "spam room"})
	bob.MustDo("POST", fmt.Sprintf("/_matrix/client/v3/users/%s/report", esc(alice.UserID)), map[string]any{"reason": "spammer"})

	// Knocking: carol knocks on a knock room, alice sees it in sync and approves by inviting.
	knockRoom := alice.CreateRoom(map[string]any{"preset": "private_chat", "initial_state": []map[string]any{
		{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}},
	}})
	since := alice.Sync("", "", 0).Body["next_batch"].(string)
	if r := carol.Do("POST", "/_matrix/client/v3/join/"+esc(knockRoom), map[string]any{}); r.Status != 403 {
		t.Fatalf("joining a knock room without invite: %d", r.Status)
	}
	carol.MustDo("POST", "/_matrix/client/v3/knock/"+esc(knockRoom), map[string]any{"reason": "let me in"})
	if s := carol.Sync("", "", 0); s.Body["rooms"].(map[string]any)["knock"].(map[string]any)[knockRoom] == nil {
		t.Fatalf("carol's sync has no knock section: %s", s.Raw)
	}
	knocked := false
	for _, e := range timelineEvents(alice.Sync(since, "", 0), knockRoom) {
		knocked = knocked || (e["type"] == "m.room.member" && e["state_key"] == carol.UserID && e["content"].(map[string]any)["membership"] == "knock")
	}
	if !knocked {
		t.Fatal("alice did not see carol's knock")
	}
	alice.MustDo("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/invite", esc(knockRoom)), map[string]any{"user_id": carol.UserID})
	carol.MustDo("POST", "/_matrix/client/v3/join/"+esc(knockRoom), map[string]any{})

	// Upgrade: the new room keeps name and alias, the old one gets a tombstone and is closed
	// to ordinary members.
	if r := bob.Do("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/upgrade", esc(pub)), map[string]any{"new_version": "12"}); r.Status != 403 {
		t.Fatalf("upgrade by a member: %d", r.Status)
	}
	up := alice.MustDo("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/upgrade", esc(pub)), map[string]any{"new_version": "12"})
	newRoom := up.Body["replacement_room"].(string)
	tomb := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/m.room.tombstone", esc(pub)), nil)
	if tomb.Body["replacement_room"] != newRoom {
		t.Fatalf("tombstone %s", tomb.Raw)
	}
	create := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/m.room.create", esc(newRoom)), nil)
	if create.Body["predecessor"].(map[string]any)["room_id"] != pub {
		t.Fatalf("new room's create event %s", create.Raw)
	}
	if n := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/m.room.name", esc(newRoom)), nil); n.Body["name"] != "Lobby" {
		t.Fatalf("name not carried over: %s", n.Raw)
	}
	if a := srv.Do(t, "", "GET", "/_matrix/client/v3/directory/room/"+esc("#lobby:localhost"), nil); a.Body["room_id"] != newRoom {
		t.Fatalf("alias not moved: %s", a.Raw)
	}
	if r := bob.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/late", esc(pub)), map[string]any{"msgtype": "m.text", "body": "late"}); r.Status != 403 {
		t.Fatalf("bob could still talk in the old room: %d", r.Status)
	}
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(newRoom), map[string]any{})
}

// TestCanonicalAliasChecked: the canonical alias must be an alias of the room.
func TestCanonicalAliasChecked(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{"room_alias_name": "home"})
	alice.CreateRoom(map[string]any{"room_alias_name": "elsewhere"})
	path := fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/m.room.canonical_alias", esc(room))
	if r := alice.Do("PUT", path, map[string]any{"alias": "#elsewhere:localhost"}); r.Status != 400 || r.ErrCode() != "M_BAD_ALIAS" {
		t.Fatalf("alias of another room: %d %s", r.Status, r.Raw)
	}
	if r := alice.Do("PUT", path, map[string]any{"alias": "not-an-alias"}); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
		t.Fatalf("malformed alias: %d %s", r.Status, r.Raw)
	}
	alice.MustDo("PUT", "/_matrix/client/v3/directory/room/"+esc("#second:localhost"), map[string]any{"room_id": room})
	alice.MustDo("PUT", path, map[string]any{"alias": "#home:localhost", "alt_aliases": []string{"#second:localhost"}})
}

// TestDeleteCanonicalAlias: deleting the alias that is the room's canonical alias (or one of
// its alt_aliases) updates m.room.canonical_alias, and members see the update in /sync
// (directory.yaml DELETE /directory/room/{roomAlias}: "Servers may choose to update the
// alt_aliases for the m.room.canonical_alias state event in the room when an alias is
// removed"); a moderator deleting an alias they lack the power to unset still succeeds.
func TestDeleteCanonicalAlias(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "main"})
	join(bob, roomID)
	alice.MustDo("PUT", "/_matrix/client/v3/directory/room/"+esc("#alt:localhost"), map[string]any{"room_id": roomID})
	bob.MustDo("PUT", "/_matrix/client/v3/directory/room/"+esc("#bobs:localhost"), map[string]any{"room_id": roomID})
	expectOK(t, putState(alice, roomID, "m.room.canonical_alias", "", map[string]any{
		"alias": "#main:localhost", "alt_aliases": []string{"#alt:localhost", "#bobs:localhost"}}), "set canonical alias")
	bobSync := newSyncer(bob, "")
	bobSync.once(0)

	alice.MustDo("DELETE", "/_matrix/client/v3/directory/room/"+esc("#main:localhost"), nil)
	canonical := func(r Resp) map[string]any {
		for _, e := range list(obj(r.Body, "rooms", "join", roomID, "timeline"), "events") {
			if evType(e) == "m.room.canonical_alias" {
				return obj(e, "content")
			}
		}
		return nil
	}
	r := bobSync.until("the canonical alias update", func(r Resp) bool { return canonical(r) != nil })
	c := canonical(r)
	if _, has := c["alias"]; has || fmt.Sprint(c["alt_aliases"]) != "[#alt:localhost #bobs:localhost]" {
		t.Errorf("m.room.canonical_alias after deleting the canonical alias: %v", c)
	}

	alice.MustDo("DELETE", "/_matrix/client/v3/directory/room/"+esc("#alt:localhost"), nil)
	if c := stateEvent(bob, roomID, "m.room.canonical_alias", "").Body; fmt.Sprint(c["alt_aliases"]) != "[#bobs:localhost]" {
		t.Errorf("m.room.canonical_alias after deleting an alt alias: %v", c)
	}
	// bob (power 0) cannot change m.room.canonical_alias; deleting his alias still succeeds.
	bob.MustDo("DELETE", "/_matrix/client/v3/directory/room/"+esc("#bobs:localhost"), nil)
	if r := bob.Do("GET", "/_matrix/client/v3/directory/room/"+esc("#bobs:localhost"), nil); r.Status != 404 {
		t.Errorf("bob's alias after deleting it: %d", r.Status)
	}
}
