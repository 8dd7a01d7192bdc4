package e2e

import "testing"

// TestFilterValidation: a filter is checked against the spec's schema when uploaded or given
// inline (filter.yaml: "400 The filter was invalid"), so the client learns of its mistake.
func TestFilterValidation(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	path := "/_matrix/client/v3/user/" + esc(alice.UserID) + "/filter"
	for what, f := range map[string]any{
		"a room that is no room ID":  map[string]any{"room": map[string]any{"rooms": []string{"notaroom"}}},
		"a not_room of wrong type":   map[string]any{"room": map[string]any{"not_rooms": []any{5}}},
		"a sender that is no user":   map[string]any{"room": map[string]any{"timeline": map[string]any{"senders": []string{"bob"}}}},
		"not_senders of wrong type":  map[string]any{"room": map[string]any{"timeline": map[string]any{"not_senders": []any{5}}}},
		"a timeline room not an ID":  map[string]any{"room": map[string]any{"timeline": map[string]any{"rooms": []string{"#alias:localhost"}}}},
		"an unknown event_format":    map[string]any{"event_format": "xml"},
		"a negative limit":           map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": -1}}},
		"a limit that is a string":   map[string]any{"presence": map[string]any{"limit": "10"}},
		"types that are not strings": map[string]any{"account_data": map[string]any{"types": []any{1}}},
	} {
		expectErr(t, call(alice, "POST", path, f), "filter with "+what, 400, "M_BAD_JSON")
		expectErr(t, call(alice, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+esc(jsonString(f)), nil), "inline /sync filter with "+what, 400, "M_BAD_JSON")
	}
	good := map[string]any{"event_format": "client", "presence": map[string]any{"not_types": []string{"*"}},
		"room": map[string]any{"rooms": []string{"!abc:localhost"}, "timeline": map[string]any{"limit": 0, "senders": []string{alice.UserID}}}}
	r := call(alice, "POST", path, good)
	expectOK(t, r, "a valid filter")
	expectOK(t, call(alice, "GET", path+"/"+str(r.Body, "filter_id"), nil), "get the filter")
	expectErr(t, call(alice, "GET", "/_matrix/client/v3/user/"+esc("@bob:localhost")+"/filter/1", nil), "another user's filter", 403, "M_FORBIDDEN")
}

// TestImpossibleState: state no sender could ever send is M_BAD_JSON, not 403 or 500: a
// second m.room.create, and v12 power levels that name a room creator (rooms/v12.md: creators
// "cannot be specified in the m.room.power_levels event").
func TestImpossibleState(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	for _, v := range []string{"10", "12"} {
		roomID := alice.CreateRoom(map[string]any{"room_version": v})
		r := putState(alice, roomID, "m.room.create", "", map[string]any{})
		expectErr(t, r, "a second m.room.create in room version "+v, 400, "M_BAD_JSON")
	}
	roomID := alice.CreateRoom(map[string]any{"room_version": "12"})
	r := putState(alice, roomID, "m.room.power_levels", "", map[string]any{"users": map[string]any{alice.UserID: 100}})
	expectErr(t, r, "v12 power levels naming the creator", 400, "M_BAD_JSON")
	r = putState(alice, roomID, "m.room.power_levels", "", map[string]any{"users": map[string]any{"@bob:localhost": 50}})
	expectOK(t, r, "v12 power levels without the creator")
}
