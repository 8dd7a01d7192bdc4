package e2e

import (
	"bytes"
	"os"
	"testing"
)

// enableServerNotices restarts srv with server notices sent by @notices.
func enableServerNotices(t *testing.T, srv *Server) {
	t.Helper()
	cfg, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte(`system_mxid_localpart: ""`), []byte(`system_mxid_localpart: "notices"`), 1)
	if err := os.WriteFile(srv.ConfigPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Start()
}

// TestAdminServerNotices: /_synapse/admin/v1/send_server_notice puts the notice in the user's
// own notices room, tagged m.server_notice and sent by the notices account; the user cannot
// reject its invite (M_CANNOT_LEAVE_SERVER_NOTICE_ROOM), later notices reuse the room, and a
// user who left it is invited back to the same room; PUT with a transaction ID sends once.
func TestAdminServerNotices(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	const path = "/_synapse/admin/v1/send_server_notice"
	notice := func(body string) map[string]any {
		return map[string]any{"user_id": alice.UserID, "content": map[string]any{
			"msgtype": "m.server_notice", "body": body, "server_notice_type": "m.server_notice.usage_limit_reached",
			"admin_contact": "mailto:admin@example.org", "limit_type": "monthly_active_user",
		}}
	}
	expectErr(t, call(admin, "POST", path, notice("off")), "notices disabled", 400, "M_UNKNOWN")
	enableServerNotices(t, srv)

	r := call(admin, "POST", path, notice("first"))
	expectOK(t, r, "first notice")
	first := str(r.Body, "event_id")
	if first == "" {
		t.Fatalf("first notice: %s", r.Raw)
	}

	// Alice is invited by the notices account and cannot reject the invite.
	s := newSyncer(alice, "")
	r = s.until("invite to the notices room", func(r Resp) bool { return len(obj(r.Body, "rooms", "invite")) == 1 })
	var room string
	for id := range obj(r.Body, "rooms", "invite") {
		room = id
	}
	expectErr(t, call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}), "reject notices invite", 403, "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM")
	expectErr(t, putState(alice, room, "m.room.member", alice.UserID, map[string]any{"membership": "leave"}), "reject notices invite with PUT state", 403, "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM")

	// Joined, she sees the notice from @notices and the m.server_notice tag.
	join(alice, room)
	s.waitEvent(room, first)
	var got event
	for _, e := range s.tl[room] {
		if evID(e) == first {
			got = e
		}
	}
	if str(got, "sender") != "@notices:"+srv.Name || str(obj(got, "content"), "msgtype") != "m.server_notice" || str(obj(got, "content"), "body") != "first" {
		t.Errorf("notice event: %v", got)
	}
	tagged := func(r Resp) bool {
		for _, e := range list(obj(r.Body, "rooms", "join", room, "account_data"), "events") {
			if evType(e) == "m.tag" && obj(e, "content", "tags", "m.server_notice") != nil {
				return true
			}
		}
		return false
	}
	if !tagged(alice.Sync("", "", 0)) {
		t.Errorf("the notices room is not tagged m.server_notice in /sync")
	}
	if r := call(alice, "GET", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/rooms/"+esc(room)+"/tags", nil); obj(r.Body, "tags", "m.server_notice") == nil {
		t.Errorf("tags: %s", r.Raw)
	}
	if r := call(alice, "PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/t1", map[string]any{"msgtype": "m.text", "body": "hi"}); r.Status != 403 {
		t.Errorf("alice may send in the notices room: %d %s", r.Status, r.Raw)
	}

	// A second notice goes to the same room.
	second := str(call(admin, "POST", path, notice("second")).Body, "event_id")
	s.waitEvent(room, second)

	// Joined, she may leave (as the spec recommends); the next notice invites her back into
	// the same room.
	expectOK(t, call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}), "leave after joining")
	third := str(call(admin, "POST", path, notice("third")).Body, "event_id")
	s.until("invite back", func(r Resp) bool { return obj(r.Body, "rooms", "invite", room) != nil })
	join(alice, room)
	s = newSyncer(alice, "") // a rejoined room's timeline starts over
	s.waitEvent(room, third)
	if r := call(alice, "GET", "/_matrix/client/v3/joined_rooms", nil); len(r.Body["joined_rooms"].([]any)) != 1 {
		t.Errorf("alice is in more than one room: %s", r.Raw)
	}

	// PUT with a transaction ID sends once per ID.
	a := call(admin, "PUT", path+"/txn1", notice("txn"))
	b := call(admin, "PUT", path+"/txn1", notice("txn"))
	c := call(admin, "PUT", path+"/txn2", notice("txn"))
	if str(a.Body, "event_id") == "" || str(a.Body, "event_id") != str(b.Body, "event_id") || str(c.Body, "event_id") == str(a.Body, "event_id") {
		t.Errorf("txn idempotence: %s %s %s", a.Raw, b.Raw, c.Raw)
	}

	// A state event, with type and state_key.
	r = call(admin, "POST", path, map[string]any{"user_id": alice.UserID, "type": "m.room.topic", "state_key": "", "content": map[string]any{"topic": "notices"}})
	expectOK(t, r, "state notice")
	s.waitEvent(room, str(r.Body, "event_id"))

	// Bad requests.
	expectErr(t, call(admin, "POST", path, map[string]any{"content": map[string]any{}}), "no user_id", 400, "M_MISSING_PARAM")
	expectErr(t, call(admin, "POST", path, map[string]any{"user_id": alice.UserID}), "no content", 400, "M_MISSING_PARAM")
	expectErr(t, call(admin, "POST", path, map[string]any{"user_id": "@bob:elsewhere.org", "content": map[string]any{}}), "remote user", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "POST", path, map[string]any{"user_id": "@nobody:" + srv.Name, "content": map[string]any{}}), "unknown user", 404, "M_NOT_FOUND")

	// Non-admins are refused.
	expectErr(t, call(alice, "POST", path, notice("x")), "non-admin POST", 403, "M_FORBIDDEN")
	expectErr(t, call(alice, "PUT", path+"/t", notice("x")), "non-admin PUT", 403, "M_FORBIDDEN")
}
