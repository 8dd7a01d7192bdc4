package e2e

import (
	"encoding/json"
	"testing"
)

// accountDataEvent finds the entry of type typ in a list of account data events.
func accountDataEvent(evs []event, typ string) event {
	for _, e := range evs {
		if evType(e) == typ {
			return e
		}
	}
	return nil
}

// TestAccountDataDeletion (MSC3391): DELETE under the unstable prefix and PUT {} delete global
// and room account data; GET answers 404 M_NOT_FOUND afterwards; an incremental /sync shows
// the deletion as {} content and an initial /sync leaves the entry out.
func TestAccountDataDeletion(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	global := "/_matrix/client/v3/user/" + esc(alice.UserID) + "/account_data/"
	room := "/_matrix/client/v3/user/" + esc(alice.UserID) + "/rooms/" + esc(roomID) + "/account_data/"
	unstable := "/_matrix/client/unstable/org.matrix.msc3391/user/" + esc(alice.UserID)

	for _, typ := range []string{"org.example.a", "org.example.b"} {
		alice.MustDo("PUT", global+typ, map[string]any{"v": 1})
		alice.MustDo("PUT", room+typ, map[string]any{"v": 1})
	}
	since := str(alice.Sync("", "", 0).Body, "next_batch")
	extBody := map[string]any{"lists": map[string]any{}, "extensions": map[string]any{"account_data": map[string]any{"enabled": true}}}
	pos := str(slidingOK(t, alice, "", 0, extBody).Body, "pos")

	// a: DELETE; b: PUT {}.
	expectOK(t, call(alice, "DELETE", unstable+"/account_data/org.example.a", nil), "DELETE global")
	expectOK(t, call(alice, "DELETE", unstable+"/rooms/"+esc(roomID)+"/account_data/org.example.a", nil), "DELETE room")
	expectOK(t, call(alice, "PUT", global+"org.example.b", map[string]any{}), "PUT {} global")
	expectOK(t, call(alice, "PUT", room+"org.example.b", []byte(" { } ")), "PUT {} room")
	for _, p := range []string{global + "org.example.a", global + "org.example.b", room + "org.example.a", room + "org.example.b"} {
		expectErr(t, call(alice, "GET", p, nil), "GET "+p+" after deletion", 404, "M_NOT_FOUND")
	}

	inc := alice.Sync(since, "", 0).Body
	roomData := list(obj(inc, "rooms", "join", roomID, "account_data"), "events")
	for _, typ := range []string{"org.example.a", "org.example.b"} {
		for what, evs := range map[string][]event{"global": list(obj(inc, "account_data"), "events"), "room": roomData} {
			e := accountDataEvent(evs, typ)
			if e == nil {
				t.Errorf("incremental sync: no %s %s deletion", what, typ)
			} else if c, _ := json.Marshal(e["content"]); string(c) != "{}" {
				t.Errorf("incremental sync: %s %s content %s, want {}", what, typ, c)
			}
		}
	}
	// Sliding sync's account_data extension: {} on the connection that had the entry, nothing
	// on a new one.
	ext := obj(slidingOK(t, alice, pos, 0, extBody).Body, "extensions", "account_data")
	if e := accountDataEvent(list(ext, "global"), "org.example.a"); e == nil || len(obj(e, "content")) != 0 {
		t.Errorf("sliding sync extension: global deletion of org.example.a = %v", e)
	}
	fresh := obj(slidingOK(t, alice, "", 0, extBody).Body, "extensions", "account_data")
	if accountDataEvent(list(fresh, "global"), "org.example.a") != nil || accountDataEvent(list(fresh, "global"), "org.example.b") != nil {
		t.Errorf("a new sliding sync connection lists deleted account data: %v", fresh)
	}
	initial := alice.Sync("", "", 0).Body
	for _, typ := range []string{"org.example.a", "org.example.b"} {
		if accountDataEvent(list(obj(initial, "account_data"), "events"), typ) != nil ||
			accountDataEvent(list(obj(initial, "rooms", "join", roomID, "account_data"), "events"), typ) != nil {
			t.Errorf("initial sync still lists deleted %s", typ)
		}
	}

	// Setting it again brings it back; deleting an absent entry succeeds.
	alice.MustDo("PUT", global+"org.example.a", map[string]any{"v": 2})
	if r := alice.MustDo("GET", global+"org.example.a", nil); r.Body["v"] != float64(2) {
		t.Errorf("GET after re-setting: %s", r.Raw)
	}
	expectOK(t, call(alice, "DELETE", unstable+"/account_data/org.example.never", nil), "DELETE absent")

	// Errors: someone else's data, and the types the server keeps itself.
	expectErr(t, call(bob, "DELETE", unstable+"/account_data/org.example.a", nil), "DELETE another user's", 403, "M_FORBIDDEN")
	expectErr(t, call(alice, "DELETE", unstable+"/account_data/m.push_rules", nil), "DELETE m.push_rules", 405, "M_BAD_JSON")
	expectErr(t, call(alice, "DELETE", unstable+"/rooms/"+esc(roomID)+"/account_data/m.fully_read", nil), "DELETE m.fully_read", 405, "M_BAD_JSON")

	if r := anon(t, srv, "GET", "/_matrix/client/versions", nil); obj(r.Body, "unstable_features")["org.matrix.msc3391"] != true {
		t.Errorf("/versions does not advertise org.matrix.msc3391: %s", r.Raw)
	}
}
