package e2e

import (
	"fmt"
	"testing"
)

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

// TestFilterSemantics: a timeline limit of 0 gives rooms with their state and no timeline
// events, joined and left alike (limited, so the client knows there is history);
// contains_url keeps or drops events with a content.url in /messages; the search filter's
// limit is the page size, with next_batch to the rest.
func TestFilterSemantics(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Filters"})
	join(bob, roomID)
	for i := 0; i < 15; i++ {
		alice.Send(roomID, fmt.Sprintf("searchable message %d", i))
	}
	withURL := str(sendTxn(alice, roomID, "m.room.message", "img", map[string]any{"msgtype": "m.image", "body": "cat.png", "url": "mxc://localhost/abc"}).Body, "event_id")
	expectOK(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/leave", map[string]any{}), "bob leaves")

	zero := jsonString(map[string]any{"room": map[string]any{"include_leave": true, "timeline": map[string]any{"limit": 0}}})
	for who, c := range map[string]*Client{"joined": alice, "left": bob} {
		r := call(c, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+esc(zero), nil)
		expectOK(t, r, who+" sync with limit 0")
		section := "join"
		if who == "left" {
			section = "leave"
		}
		room := obj(obj(r.Body, "rooms"), section, roomID)
		tl := obj(room, "timeline")
		if evs := list(tl, "events"); len(evs) != 0 || tl["limited"] != true {
			t.Errorf("%s room with timeline limit 0: %d events, limited %v; want none, limited", who, len(evs), tl["limited"])
		}
		names := 0
		for _, e := range list(obj(room, "state"), "events") {
			if evType(e) == "m.room.name" {
				names++
			}
		}
		if names != 1 {
			t.Errorf("%s room with timeline limit 0: state has %d m.room.name events, want 1", who, names)
		}
	}

	for _, c := range []struct {
		containsURL bool
		want        func(event) bool
	}{{true, func(e event) bool { return evID(e) == withURL }}, {false, func(e event) bool { return evID(e) != withURL }}} {
		f := jsonString(map[string]any{"contains_url": c.containsURL, "types": []string{"m.room.message"}})
		r := call(alice, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/messages?dir=b&limit=50&filter="+esc(f), nil)
		expectOK(t, r, "messages with contains_url")
		chunk := list(r.Body, "chunk")
		if len(chunk) == 0 {
			t.Errorf("contains_url %v: empty page", c.containsURL)
		}
		for _, e := range chunk {
			if !c.want(e) {
				t.Errorf("contains_url %v: got %s %q", c.containsURL, evType(e), evBody(e))
			}
		}
	}

	// A filtered page is full: the server reads on past events the filter drops, and end is
	// given until the history has been read.
	onlyMessages := esc(jsonString(map[string]any{"types": []string{"m.room.message"}}))
	got, from := map[string]bool{}, ""
	for page := 0; ; page++ {
		path := "/_matrix/client/v3/rooms/" + esc(roomID) + "/messages?dir=b&limit=4&filter=" + onlyMessages
		if from != "" {
			path += "&from=" + esc(from)
		}
		r := call(alice, "GET", path, nil)
		expectOK(t, r, "filtered /messages page")
		chunk := list(r.Body, "chunk")
		for _, e := range chunk {
			if got[evID(e)] || evType(e) != "m.room.message" {
				t.Fatalf("page %d: %s %s again or of the wrong type", page, evType(e), evID(e))
			}
			got[evID(e)] = true
		}
		from = str(r.Body, "end")
		if from == "" {
			break
		}
		if len(chunk) != 4 {
			t.Errorf("filtered page %d has %d events and an end token, want 4", page, len(chunk))
		}
		if page > 10 {
			t.Fatal("paging the filtered history does not end")
		}
	}
	if len(got) != 16 {
		t.Errorf("paging only the messages found %d of 16", len(got))
	}

	search := func(nextBatch string) Resp {
		path := "/_matrix/client/v3/search"
		if nextBatch != "" {
			path += "?next_batch=" + esc(nextBatch)
		}
		return call(alice, "POST", path, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{
			"search_term": "searchable", "order_by": "recent", "filter": map[string]any{"limit": 4},
			"event_context": map[string]any{"before_limit": 1, "after_limit": 1}}}})
	}
	seen := map[string]bool{}
	next := ""
	for page := 0; page < 10; page++ {
		r := search(next)
		expectOK(t, r, "search page")
		events := obj(obj(r.Body, "search_categories"), "room_events")
		results, _ := events["results"].([]any)
		if len(results) > 4 {
			t.Fatalf("search page of %d results, want at most the filter's limit of 4", len(results))
		}
		for _, res := range results {
			seen[evID(obj(res.(map[string]any), "result"))] = true
		}
		next = str(events, "next_batch")
		if next == "" {
			break
		}
	}
	if len(seen) != 15 {
		t.Errorf("paging the search found %d of the 15 messages", len(seen))
	}
}
