package e2e

import (
	"net/url"
	"strings"
	"testing"
)

// TestMalformedInput: bad requests get the spec's error codes (client-server-api/_index.md
// "Common error codes"), never a 5xx.
func TestMalformedInput(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat"})

	// M_NOT_JSON: "Request did not contain valid JSON."
	for _, body := range []string{`{not json`, `{"name": "x"`, `nul`} {
		r := call(alice, "POST", "/_matrix/client/v3/createRoom", []byte(body))
		expectErr(t, r, "createRoom with body "+body, 400, "M_NOT_JSON")
	}
	// M_BAD_JSON: "Request contained valid JSON, but it was malformed in some way".
	for _, body := range []string{`[1,2,3]`, `"a string"`, `42`, `{"name": 5}`, `{"invite": "notalist"}`, `{"invite": [5]}`, `{"preset": ["private_chat"]}`, `{"is_direct": "yes"}`} {
		r := call(alice, "POST", "/_matrix/client/v3/createRoom", []byte(body))
		expectErr(t, r, "createRoom with body "+body, 400, "M_BAD_JSON")
	}
	// Event content must be a JSON object too.
	r := call(alice, "PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/send/m.room.message/arr1", []byte(`["x"]`))
	expectErr(t, r, "send with array content", 400, "M_BAD_JSON")
	r = call(alice, "PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/send/m.room.message/bad1", []byte(`{"body":`))
	expectErr(t, r, "send with invalid JSON", 400, "M_NOT_JSON")
	// Content is free-form: a numeric body is not the server's business.
	r = sendTxn(alice, roomID, "m.room.message", "num1", map[string]any{"msgtype": "m.text", "body": 5})
	expectOK(t, r, "send with numeric body")

	// Unknown room: the spec leaves 403 vs 404 open (room_send.yaml lists neither explicitly).
	r = sendTxn(alice, "!doesnotexist:localhost", "m.room.message", "x1", map[string]any{"msgtype": "m.text", "body": "hi"})
	if !(r.Status == 403 && r.ErrCode() == "M_FORBIDDEN") && !(r.Status == 404 && r.ErrCode() == "M_NOT_FOUND") {
		t.Errorf("send to unknown room: %d %s, want 403 M_FORBIDDEN or 404 M_NOT_FOUND", r.Status, r.Raw)
	}
	// Unknown event: rooms.yaml GET /rooms/{roomId}/event/{eventId} -> 404 M_NOT_FOUND.
	r = call(alice, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc("$doesnotexist"), nil)
	expectErr(t, r, "get unknown event", 404, "M_NOT_FOUND")
	// Unknown state: room_state.yaml GET .../state/{type}/{key} -> 404 M_NOT_FOUND.
	r = stateEvent(alice, roomID, "m.room.topic", "")
	expectErr(t, r, "get absent state event", 404, "M_NOT_FOUND")
	r = call(alice, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.topic/", nil)
	expectErr(t, r, "get absent state event (trailing slash form)", 404, "M_NOT_FOUND")

	// Body over the 1 MiB default limit (config limits.max_request_bytes) -> 413 M_TOO_LARGE.
	r, err := rawDo(srv, alice.Token, "POST", "/_matrix/client/v3/createRoom", bigBody(2<<20))
	if err != nil {
		t.Errorf("oversized createRoom: transport error %v, want a 413 response", err)
	} else {
		expectErr(t, r, "oversized createRoom", 413, "M_TOO_LARGE")
	}
	r, err = rawDo(srv, alice.Token, "PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/send/m.room.message/big1", []byte(`{"msgtype":"m.text","body":"`+strings.Repeat("b", 3<<20)+`"}`))
	if err != nil {
		t.Errorf("oversized send: transport error %v, want a 413 response", err)
	} else {
		expectErr(t, r, "oversized send", 413, "M_TOO_LARGE")
	}
	// The server is still fine afterwards.
	expectOK(t, whoami(alice), "whoami after oversized requests")

	// Authentication errors (client-server-api/_index.md "Common error codes").
	r = anon(t, srv, "GET", "/_matrix/client/v3/account/whoami", nil)
	expectErr(t, r, "whoami without token", 401, "M_MISSING_TOKEN")
	r = srv.Do(t, "not-a-real-token", "GET", "/_matrix/client/v3/account/whoami", nil)
	expectErr(t, r, "whoami with bad token", 401, "M_UNKNOWN_TOKEN")
	r = anon(t, srv, "GET", "/_matrix/client/v3/account/whoami?access_token=nope", nil)
	expectErr(t, r, "whoami with bad query-string token", 401, "M_UNKNOWN_TOKEN")
	r = anon(t, srv, "POST", "/_matrix/client/v3/createRoom", map[string]any{})
	expectErr(t, r, "createRoom without token", 401, "M_MISSING_TOKEN")
	r = anon(t, srv, "GET", "/_matrix/client/v3/sync", nil)
	expectErr(t, r, "sync without token", 401, "M_MISSING_TOKEN")

	other := srv.Login(t, "alice")
	expectOK(t, whoami(other), "whoami before logout")
	expectOK(t, call(other, "POST", "/_matrix/client/v3/logout", map[string]any{}), "logout")
	expectErr(t, whoami(other), "whoami after logout", 401, "M_UNKNOWN_TOKEN")
	expectErr(t, call(other, "GET", "/_matrix/client/v3/sync?timeout=0", nil), "sync after logout", 401, "M_UNKNOWN_TOKEN")
	expectOK(t, whoami(alice), "other device's token still valid after logout")

	// Transaction idempotency (client-server-api/_index.md "Transaction identifiers").
	content := map[string]any{"msgtype": "m.text", "body": "only once"}
	r1 := sendTxn(alice, roomID, "m.room.message", "retry-me", content)
	expectOK(t, r1, "first send")
	r2 := sendTxn(alice, roomID, "m.room.message", "retry-me", content)
	expectOK(t, r2, "retried send")
	if id1, id2 := str(r1.Body, "event_id"), str(r2.Body, "event_id"); id1 == "" || id1 != id2 {
		t.Errorf("retried send returned event_id %q, first returned %q", id2, id1)
	}
	// The same txnId from another device is a different transaction.
	alice2 := srv.Login(t, "alice")
	r3 := sendTxn(alice2, roomID, "m.room.message", "retry-me", content)
	expectOK(t, r3, "same txnId from another device")
	if str(r3.Body, "event_id") == str(r1.Body, "event_id") {
		t.Errorf("same txnId from a different device was deduplicated to %s", str(r1.Body, "event_id"))
	}
	copies := 0
	for _, e := range paginateBack(alice, roomID, "", 50, nil) {
		if evType(e) == "m.room.message" && evBody(e) == "only once" {
			copies++
		}
	}
	if copies != 2 {
		t.Errorf("/messages shows %d copies of the retried message (plus the other device's), want 2 (1 + 1)", copies)
	}

	// Unknown endpoint -> 404 M_UNRECOGNIZED; known endpoint with wrong method -> 405 M_UNRECOGNIZED.
	r = call(alice, "GET", "/_matrix/client/v3/this/does/not/exist", nil)
	expectErr(t, r, "unknown endpoint", 404, "M_UNRECOGNIZED")
	r = anon(t, srv, "GET", "/_matrix/client/v3/nope", nil)
	expectErr(t, r, "unknown endpoint without token", 404, "M_UNRECOGNIZED")
	r = call(alice, "DELETE", "/_matrix/client/v3/createRoom", nil)
	expectErr(t, r, "wrong method on known endpoint", 405, "M_UNRECOGNIZED")

	// Assorted garbage must never produce a 5xx (call/anon check every response).
	garbage := []struct{ method, path string }{
		{"GET", "/_matrix/client/v3/sync?since=garbage&timeout=0"},
		{"GET", "/_matrix/client/v3/sync?since=s99999999_99999999&timeout=0"},
		{"GET", "/_matrix/client/v3/sync?filter=" + url.QueryEscape("{notjson") + "&timeout=0"},
		{"GET", "/_matrix/client/v3/sync?filter=nosuchfilterid&timeout=0"},
		{"GET", "/_matrix/client/v3/sync?timeout=-5"},
		{"GET", "/_matrix/client/v3/rooms/" + esc(roomID) + "/messages?dir=x"},
		{"GET", "/_matrix/client/v3/rooms/" + esc(roomID) + "/messages?dir=b&from=garbage"},
		{"GET", "/_matrix/client/v3/rooms/" + esc(roomID) + "/messages?dir=b&limit=notanumber"},
		{"GET", "/_matrix/client/v3/rooms/" + esc(roomID) + "/messages?dir=b&limit=-1"},
		{"GET", "/_matrix/client/v3/rooms/notaroomid/messages?dir=b"},
		{"GET", "/_matrix/client/v3/rooms/" + esc("!nope:localhost") + "/messages?dir=b"},
		{"GET", "/_matrix/client/v3/rooms/" + esc("!nope:localhost") + "/state"},
		{"GET", "/_matrix/client/v3/rooms/" + esc(roomID) + "/event/notaneventid"},
		{"POST", "/_matrix/client/v3/join/" + esc("!nope:localhost")},
		{"POST", "/_matrix/client/v3/join/notaroom"},
		{"POST", "/_matrix/client/v3/rooms/" + esc(roomID) + "/kick"},
		{"POST", "/_matrix/client/v3/rooms/" + esc(roomID) + "/invite"},
		{"GET", "/_matrix/client/v3/profile/" + esc("@nobody:localhost")},
		{"GET", "/_matrix/client/v3/profile/notauserid"},
		{"PUT", "/_matrix/client/v3/profile/" + esc("@nobody:localhost") + "/displayname"},
		{"GET", "/_matrix/client/v3/devices/NOSUCHDEVICE"},
	}
	for _, g := range garbage {
		r := call(alice, g.method, g.path, []byte(`{"user_id": 12, "displayname": []}`))
		if r.Status == 200 && strings.Contains(g.path, "nope") {
			t.Errorf("%s %s: unexpected 200 %s", g.method, g.path, r.Raw)
		}
		if r.Status != 200 && r.ErrCode() == "" {
			t.Errorf("%s %s: error %d without errcode: %s", g.method, g.path, r.Status, r.Raw)
		}
	}
	expectOK(t, whoami(alice), "server still healthy")
}
