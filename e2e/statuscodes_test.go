package e2e

import (
	"fmt"
	"testing"
)

// TestForgetJoinedRoom: forgetting a room the user is still in is 400 M_UNKNOWN (the forget
// endpoint: "The user has not left the room"), not a server error.
func TestForgetJoinedRoom(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	expectErr(t, call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/forget", map[string]any{}), "forget a joined room", 400, "M_UNKNOWN")
}

// TestMessagesInForgottenRoom: once a user has left and forgotten a room they can no longer
// read its history (the forget endpoint), so /messages is 403 M_FORBIDDEN; membership is
// checked before the query parameters, so a missing dir does not turn it into a 400 (as in
// the reference server, which never asks a non-member for valid parameters).
func TestMessagesInForgottenRoom(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, room)
	hello := alice.Send(room, "hello")
	path := "/_matrix/client/v3/rooms/" + esc(room) + "/messages"
	expectErr(t, call(bob, "GET", path, nil), "joined member without dir", 400, "M_INVALID_PARAM", "M_MISSING_PARAM")
	expectOK(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}), "leave")
	expectOK(t, call(bob, "GET", path+"?dir=b", nil), "left (not forgotten) member reads history up to the leave")
	expectOK(t, call(bob, "GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(hello), nil), "left (not forgotten) member reads an event")
	expectOK(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/forget", map[string]any{}), "forget")
	expectErr(t, call(bob, "GET", path+"?dir=b", nil), "forgotten room with dir", 403, "M_FORBIDDEN")
	expectErr(t, call(bob, "GET", path, nil), "forgotten room without dir", 403, "M_FORBIDDEN")
	expectErr(t, call(bob, "GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(hello), nil), "an event of a forgotten room", 404, "M_NOT_FOUND")
}

// TestWrongMethod: a known endpoint asked with a method it does not have is 405
// M_UNRECOGNIZED (the spec's "Common error codes"), an unknown one 404 M_UNRECOGNIZED.
func TestWrongMethod(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	for _, tc := range []struct{ method, path string }{
		{"DELETE", "/_matrix/client/v3/createRoom"},
		{"GET", "/_matrix/client/v3/createRoom"},
		{"GET", "/_matrix/client/v3/rooms/" + esc(room) + "/send/m.room.message/txn1"},
		{"POST", "/_matrix/client/v3/rooms/" + esc(room) + "/send/m.room.message/txn1"},
		{"GET", "/_matrix/client/v3/user_directory/search"},
		{"PUT", "/_matrix/client/v3/sync"},
		{"POST", "/_matrix/client/v3/account/whoami"},
		{"DELETE", "/_matrix/client/v1/media/config"},
		{"PUT", "/_matrix/client/versions"},
	} {
		for _, token := range []string{alice.Token, ""} {
			r := srv.Do(t, token, tc.method, tc.path, nil)
			expectErr(t, r, fmt.Sprintf("%s %s (token %v)", tc.method, tc.path, token != ""), 405, "M_UNRECOGNIZED")
		}
	}
	expectErr(t, call(alice, "GET", "/_matrix/client/v3/no/such/endpoint", nil), "unknown endpoint", 404, "M_UNRECOGNIZED")
}

// TestUIAAsAnotherUser: completing user-interactive authentication with another user's
// password is 403 M_FORBIDDEN (the spec's "User-interactive authentication API": the
// password stage authenticates the user the request is for).
func TestUIAAsAnotherUser(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	for _, id := range []string{bob.UserID, "bob"} {
		body := map[string]any{"devices": []string{alice.DeviceID}}
		session := uiaChallenge(alice, "POST", "/_matrix/client/v3/delete_devices", body)
		r := call(alice, "POST", "/_matrix/client/v3/delete_devices", withAuth(body, passwordAuth(id, testPassword, session)))
		expectErr(t, r, "UIA with "+id+"'s password", 403, "M_FORBIDDEN")
	}
	expectOK(t, whoami(alice), "alice's device is still there")
}

// TestBadDeviceKeys: malformed device keys in /keys/upload are 400 (keys.yaml), never 500.
func TestBadDeviceKeys(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	key := newSigningKey(t)
	variants := map[string]func(dk map[string]any){
		"other user":         func(dk map[string]any) { dk["user_id"] = "@bob:" + srv.Name },
		"other device":       func(dk map[string]any) { dk["device_id"] = "OTHER" },
		"no user_id":         func(dk map[string]any) { delete(dk, "user_id") },
		"no device_id":       func(dk map[string]any) { delete(dk, "device_id") },
		"no algorithms":      func(dk map[string]any) { delete(dk, "algorithms") },
		"no keys":            func(dk map[string]any) { delete(dk, "keys") },
		"no signatures":      func(dk map[string]any) { delete(dk, "signatures") },
		"keys not an object": func(dk map[string]any) { dk["keys"] = "x" },
		"key not a string":   func(dk map[string]any) { dk["keys"] = map[string]any{"ed25519:" + alice.DeviceID: 5} },
		"signatures wrong":   func(dk map[string]any) { dk["signatures"] = map[string]any{alice.UserID: "x"} },
		"signatures list":    func(dk map[string]any) { dk["signatures"] = []any{1} },
		"algorithms object":  func(dk map[string]any) { dk["algorithms"] = map[string]any{} },
	}
	for name, mutate := range variants {
		dk := deviceKeys(t, alice, key)
		mutate(dk)
		r := uploadKeys(alice, map[string]any{"device_keys": dk})
		if r.Status != 400 {
			t.Errorf("%s: status %d, want 400; body %s", name, r.Status, r.Raw)
		}
	}
	for _, raw := range []string{`{"device_keys": "x"}`, `{"device_keys": [1]}`, `{"device_keys": 5}`, `{"one_time_keys": {"signed_curve25519:A": 5}}`, `{"one_time_keys": "x"}`} {
		r := call(alice, "POST", "/_matrix/client/v3/keys/upload", []byte(raw))
		if r.Status != 400 {
			t.Errorf("%s: status %d, want 400; body %s", raw, r.Status, r.Raw)
		}
	}
}

// TestHugePowerLevel: a power level outside the canonical JSON integer range (beyond
// 2^53-1) is refused with 400, not a server error, and the room's power levels stay.
func TestHugePowerLevel(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	for _, level := range []string{"9007199254740992", "1e300", "-9007199254740993", "99999999999999999999999"} {
		body := []byte(`{"users": {"` + alice.UserID + `": ` + level + `}}`)
		r := call(alice, "PUT", statePath(room, "m.room.power_levels", ""), body)
		if r.Status != 400 {
			t.Errorf("power level %s: status %d, want 400; body %s", level, r.Status, r.Raw)
		}
		body = []byte(`{"users": {"` + alice.UserID + `": 100}, "events": {"m.room.name": ` + level + `}}`)
		r = call(alice, "PUT", statePath(room, "m.room.power_levels", ""), body)
		if r.Status != 400 {
			t.Errorf("event level %s: status %d, want 400; body %s", level, r.Status, r.Raw)
		}
	}
	alice.Send(room, "still in charge")
	r := sendTxn(alice, room, "m.room.message", "huge", []byte(`{"msgtype": "m.text", "body": "x", "n": 9007199254740992}`))
	expectErr(t, r, "message with an integer beyond 2^53-1", 400, "M_BAD_JSON")
	r = call(alice, "POST", "/_matrix/client/v3/createRoom", []byte(`{"power_level_content_override": {"users_default": 9007199254740992}}`))
	if r.Status != 400 {
		t.Errorf("createRoom with a huge power level: status %d, want 400; body %s", r.Status, r.Raw)
	}
}
