package federationapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/lattice-chat/lattice/roomserver"
)

// nopListener ignores committed events.
type nopListener struct{}

func (nopListener) EventsCommitted(int64, []string) {}

// withRoomserver gives ts a roomserver on its database.
func withRoomserver(t *testing.T, ts *testServer) *roomserver.Server {
	t.Helper()
	rs := roomserver.New(roomserver.Config{ServerName: ts.cfg.ServerName, KeyID: ts.cfg.KeyID, PrivateKey: ts.cfg.PrivateKey, DefaultVersion: "12"},
		ts.db, nopListener{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ts.SetRoomserver(rs)
	return rs
}

// TestEventEndpoints drives the event read endpoints through the router, signed by a server
// with no member in the room: refused while the room's history is shared, answered in the
// spec's shapes once it is world-readable.
func TestEventEndpoints(t *testing.T) {
	ts := newTestServer(t)
	rs := withRoomserver(t, ts)
	ctx := context.Background()
	const alice = "@alice:lattice.test"
	roomID, err := rs.CreateRoom(ctx, alice, "A", roomserver.CreateRoomRequest{Preset: roomserver.PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	send := func(body string) string {
		t.Helper()
		id, err := rs.SendMessage(ctx, roomserver.Sender{UserID: alice, DeviceID: "A"}, roomID, "m.room.message", json.RawMessage(`{"body":"`+body+`"}`), "")
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	hidden := send("before")
	remote := newIdentity(t, "remote.test", "ed25519:r1")
	ts.cacheKeys(t, remote.keys(t, ts.now.Add(time.Hour)))
	get := func(uri string) (int, map[string]any) {
		t.Helper()
		return ts.do(t, signedRequest(t, remote, ourName, "GET", uri, nil))
	}
	room := url.PathEscape(roomID)

	if code, body := get("/_matrix/federation/v1/event/" + url.PathEscape(hidden)); code != 403 || body["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("event of a shared room to a stranger: %d %v", code, body)
	}
	if _, err := rs.SetState(ctx, roomserver.Sender{UserID: alice}, roomID, "m.room.history_visibility", "", json.RawMessage(`{"history_visibility":"world_readable"}`)); err != nil {
		t.Fatal(err)
	}
	m1 := send("one")
	m2 := send("two")

	code, body := get("/_matrix/federation/v1/event/" + url.PathEscape(m2))
	pdus, _ := body["pdus"].([]any)
	if code != 200 || body["origin"] != string(ourName) || body["origin_server_ts"] == nil || len(pdus) != 1 {
		t.Fatalf("event: %d %v", code, body)
	}
	if content := pdus[0].(map[string]any)["content"].(map[string]any); content["body"] != "two" {
		t.Fatalf("event content: %v", content)
	}

	code, body = get("/_matrix/federation/v1/state_ids/" + room + "?event_id=" + url.QueryEscape(m1))
	ids, _ := body["pdu_ids"].([]any)
	chain, _ := body["auth_chain_ids"].([]any)
	if code != 200 || len(ids) < 5 || len(chain) < 3 {
		t.Fatalf("state_ids: %d %v", code, body)
	}
	code, body = get("/_matrix/federation/v1/state/" + room + "?event_id=" + url.QueryEscape(m1))
	if full, _ := body["pdus"].([]any); code != 200 || len(full) != len(ids) || body["auth_chain"] == nil {
		t.Fatalf("state: %d %v", code, body)
	}
	code, body = get("/_matrix/federation/v1/event_auth/" + room + "/" + url.PathEscape(m2))
	if chain, _ := body["auth_chain"].([]any); code != 200 || len(chain) != 3 {
		t.Fatalf("event_auth: %d %v", code, body)
	}
	code, body = get("/_matrix/federation/v1/backfill/" + room + "?v=" + url.QueryEscape(m2) + "&limit=2")
	if pdus, _ := body["pdus"].([]any); code != 200 || len(pdus) != 2 || body["origin"] != string(ourName) {
		t.Fatalf("backfill: %d %v", code, body)
	}
	code, body = ts.do(t, signedRequest(t, remote, ourName, "POST", "/_matrix/federation/v1/get_missing_events/"+room,
		map[string]any{"earliest_events": []string{m1}, "latest_events": []string{m2}}))
	if evs, _ := body["events"].([]any); code != 200 || len(evs) != 0 {
		t.Fatalf("get_missing_events with nothing missing: %d %v", code, body)
	}

	errs := []struct {
		name, uri string
		status    int
		errcode   string
	}{
		{"unknown event", "/_matrix/federation/v1/event/%24nope", 404, "M_NOT_FOUND"},
		{"state without event_id", "/_matrix/federation/v1/state_ids/" + room, 400, "M_MISSING_PARAM"},
		{"state of an unknown room", "/_matrix/federation/v1/state_ids/%21nope%3Alattice.test?event_id=" + url.QueryEscape(m1), 404, "M_NOT_FOUND"},
		{"backfill without limit", "/_matrix/federation/v1/backfill/" + room + "?v=" + url.QueryEscape(m2), 400, "M_MISSING_PARAM"},
		{"make_join for another server's user", "/_matrix/federation/v1/make_join/" + room + "/%40mallory%3Aelsewhere.test?ver=12", 403, "M_FORBIDDEN"},
		{"make_knock without ver", "/_matrix/federation/v1/make_knock/" + room + "/%40bob%3Aremote.test", 400, "M_MISSING_PARAM"},
	}
	for _, tc := range errs {
		if code, body := get(tc.uri); code != tc.status || body["errcode"] != tc.errcode {
			t.Errorf("%s: %d %v, want %d %s", tc.name, code, body, tc.status, tc.errcode)
		}
	}

	code, body = get("/_matrix/federation/v1/make_join/" + room + "/%40bob%3Aremote.test?ver=12")
	event, _ := body["event"].(map[string]any)
	if code != 200 || body["room_version"] != "12" || event["sender"] != "@bob:remote.test" || event["origin"] != string(ourName) || event["origin_server_ts"] == nil {
		t.Fatalf("make_join: %d %v", code, body)
	}
	if code, body := get("/_matrix/federation/v1/make_join/" + room + "/%40bob%3Aremote.test?ver=1&ver=2"); code != 400 ||
		body["errcode"] != "M_INCOMPATIBLE_ROOM_VERSION" || body["room_version"] != "12" {
		t.Fatalf("make_join without the room's version: %d %v", code, body)
	}
}

// TestSendJoin checks the send_join handshake through the router: the event must be the one
// of the path, and the answer has the spec's shape.
func TestSendJoin(t *testing.T) {
	ts := newTestServer(t)
	rs := withRoomserver(t, ts)
	ctx := context.Background()
	roomID, err := rs.CreateRoom(ctx, "@alice:lattice.test", "A", roomserver.CreateRoomRequest{Preset: roomserver.PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	remote := newIdentity(t, "remote.test", "ed25519:r1")
	ts.cacheKeys(t, remote.keys(t, time.Now().Add(time.Hour)))
	room := url.PathEscape(roomID)
	code, body := ts.do(t, signedRequest(t, remote, ourName, "GET", "/_matrix/federation/v1/make_join/"+room+"/%40bob%3Aremote.test?ver=12", nil))
	if code != 200 {
		t.Fatalf("make_join: %d %v", code, body)
	}
	raw, _ := json.Marshal(body["event"])
	var proto gomatrixserverlib.ProtoEvent
	if err := json.Unmarshal(raw, &proto); err != nil {
		t.Fatal(err)
	}
	ver := gomatrixserverlib.MustGetRoomVersion("12")
	join, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), remote.name, remote.keyID, remote.priv)
	if err != nil {
		t.Fatal(err)
	}
	put := func(eventID string) (int, map[string]any) {
		return ts.do(t, signedRequest(t, remote, ourName, "PUT", "/_matrix/federation/v2/send_join/"+room+"/"+url.PathEscape(eventID), json.RawMessage(join.JSON())))
	}
	if code, body := put("$other"); code != 400 || body["errcode"] != "M_INVALID_PARAM" {
		t.Fatalf("send_join for another event ID: %d %v", code, body)
	}
	code, body = put(join.EventID())
	state, _ := body["state"].([]any)
	chain, _ := body["auth_chain"].([]any)
	event, _ := body["event"].(map[string]any)
	if code != 200 || len(state) < 5 || len(chain) < 3 || body["origin"] != string(ourName) || body["members_omitted"] != false || event["sender"] != "@bob:remote.test" {
		t.Fatalf("send_join: %d %v", code, body)
	}
	if m, _ := rs.Membership(ctx, roomID, "@bob:remote.test"); m != "join" {
		t.Fatalf("bob's membership: %q", m)
	}
}
