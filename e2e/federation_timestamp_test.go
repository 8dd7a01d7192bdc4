package e2e

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
)

// TestFederationInteropTimestampToEvent: GET /_matrix/client/v1/rooms/{roomId}/
// timestamp_to_event for a time before Lattice joined a room of the fake server: Lattice's
// own history does not reach that far, so it asks the fake (GET /_matrix/federation/v1/
// timestamp_to_event/{roomId}) and answers with the fake's event, in both directions. And
// Lattice serves the federation endpoint itself: the fake asks it about a room of Lattice.
func TestFederationInteropTimestampToEvent(t *testing.T) {
	lat, h := startInterop(t)
	host := "@host:" + string(h.fake.name)
	room := h.createRoom(t, gomatrixserverlib.RoomVersionV10, host, "Old times", "")
	var old []gomatrixserverlib.PDU
	for i := 0; i < 5; i++ {
		time.Sleep(5 * time.Millisecond) // distinct origin_server_ts
		old = append(old, h.emit(t, room, host, "m.room.message", nil, message(fmt.Sprintf("old %d", i))))
	}
	time.Sleep(5 * time.Millisecond)
	erin := lat.Register(t, "erin")
	if r := joinRoom(erin, room.id, string(h.fake.name)); r.Status != 200 {
		t.Fatalf("erin joining %s via the fake: %d %s", room.id, r.Status, r.Raw)
	}
	ask := func(ts int64, dir string) Resp {
		return call(erin, "GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/timestamp_to_event?ts=%d&dir=%s", esc(room.id), ts, dir), nil)
	}
	target := old[2]
	for _, tc := range []struct {
		dir  string
		ts   int64
		want gomatrixserverlib.PDU
	}{
		{"f", int64(target.OriginServerTS()) - 1, target},
		{"b", int64(target.OriginServerTS()) + 1, target},
	} {
		r := ask(tc.ts, tc.dir)
		if r.Status != 200 || str(r.Body, "event_id") != tc.want.EventID() {
			t.Errorf("timestamp_to_event dir=%s ts=%d (before erin joined): %d %s, want the fake's %s (ts %d); fake saw %v",
				tc.dir, tc.ts, r.Status, r.Raw, tc.want.EventID(), tc.want.OriginServerTS(), h.fake.requestsLike("timestamp_to_event"))
		} else if int64(r.Body["origin_server_ts"].(float64)) != int64(tc.want.OriginServerTS()) {
			t.Errorf("timestamp_to_event dir=%s: origin_server_ts %v, want %d", tc.dir, r.Body["origin_server_ts"], tc.want.OriginServerTS())
		}
	}

	// Served: the fake, in alice's room, asks about alice's messages.
	alice := lat.Register(t, "alice")
	lroom, _, _ := joinLatticeRoom(t, lat, h, alice, gomatrixserverlib.RoomVersionV10)
	var ids []string
	for i := 0; i < 3; i++ {
		time.Sleep(5 * time.Millisecond)
		ids = append(ids, say(alice, lroom.id, fmt.Sprintf("M%d", i)))
	}
	ev := call(alice, "GET", "/_matrix/client/v3/rooms/"+esc(lroom.id)+"/event/"+esc(ids[1]), nil)
	ts := int64(ev.Body["origin_server_ts"].(float64))
	for _, tc := range []struct {
		dir string
		ts  int64
	}{{"f", ts - 1}, {"b", ts + 1}} {
		r := h.fake.request(t, "GET", h.lat, fmt.Sprintf("/_matrix/federation/v1/timestamp_to_event/%s?ts=%d&dir=%s", url.PathEscape(lroom.id), tc.ts, tc.dir), nil)
		if r.Status != 200 || str(r.Body, "event_id") != ids[1] {
			t.Errorf("federation timestamp_to_event dir=%s ts=%d: %d %s, want alice's M1 %s", tc.dir, tc.ts, r.Status, r.Raw, ids[1])
		}
	}
	r := h.fake.request(t, "GET", h.lat, fmt.Sprintf("/_matrix/federation/v1/timestamp_to_event/%s?ts=%d&dir=f", url.PathEscape(lroom.id), time.Now().Add(time.Hour).UnixMilli()), nil)
	if r.Status != 404 || str(r.Body, "errcode") != "M_NOT_FOUND" {
		t.Errorf("federation timestamp_to_event after the last event: %d %s, want 404 M_NOT_FOUND", r.Status, r.Raw)
	}
	h.checkNoFailures(t)
}
