package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"testing"
	"time"
)

// stateIDs lists a sliding sync room's required_state as "type|state_key|event_id", sorted.
func stateIDs(room map[string]any) []string {
	var out []string
	for _, e := range list(room, "required_state") {
		out = append(out, fmt.Sprintf("%s|%s|%s", evType(e), str(e, "state_key"), evID(e)))
	}
	sort.Strings(out)
	return out
}

// TestSlidingSyncRequiredStateForms (MSC4186): the shipped form of required_state (a list of
// [type, state_key] pairs with "*", "$ME" and "$LAZY") and the newer object form
// ({include, exclude, lazy_members} of RequiredStateElement objects, an omitted field matching
// everything) select the same state.
func TestSlidingSyncRequiredStateForms(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Forms", "topic": "both"})
	join(bob, roomID)
	putState(alice, roomID, "org.example.custom", "a", map[string]any{"v": 1})
	putState(alice, roomID, "org.example.custom", "b", map[string]any{"v": 2})
	bob.Send(roomID, "hello from bob")

	for _, c := range []struct {
		name         string
		pairs, shape any
	}{
		{"named, lazy and $ME",
			[][2]string{{"m.room.name", ""}, {"m.room.create", ""}, {"m.room.member", "$LAZY"}, {"m.room.member", "$ME"}, {"org.example.custom", "*"}},
			map[string]any{"include": []any{
				map[string]any{"type": "m.room.name", "state_key": ""}, map[string]any{"type": "m.room.create", "state_key": ""},
				map[string]any{"type": "m.room.member", "state_key": "$ME"}, map[string]any{"type": "org.example.custom"},
			}, "lazy_members": true}},
		{"everything",
			[][2]string{{"*", "*"}},
			map[string]any{"include": []any{map[string]any{}}}},
		{"one state key of any type",
			[][2]string{{"*", "a"}},
			map[string]any{"include": []any{map[string]any{"state_key": "a"}}}},
	} {
		var got [2][]string
		for i, rs := range []any{c.pairs, c.shape} {
			body := map[string]any{"conn_id": fmt.Sprintf("form%d", i), "lists": map[string]any{"all": map[string]any{
				"ranges": [][2]int{{0, 10}}, "timeline_limit": 1, "required_state": rs}}}
			got[i] = stateIDs(slidingRoom(slidingOK(t, alice, "", 0, body), roomID))
		}
		if len(got[0]) == 0 {
			t.Errorf("%s: the pair form returned no state", c.name)
		}
		checkSameIDs(t, c.name+": object form against pair form", got[1], got[0])
	}
	// An object form that excludes: everything but the create event.
	body := map[string]any{"lists": map[string]any{"all": map[string]any{"ranges": [][2]int{{0, 10}}, "timeline_limit": 1,
		"required_state": map[string]any{"include": []any{map[string]any{}}, "exclude": []any{map[string]any{"type": "m.room.create"}}}}}}
	for _, id := range stateIDs(slidingRoom(slidingOK(t, alice, "", 0, body), roomID)) {
		if id[:len("m.room.create|")] == "m.room.create|" {
			t.Errorf("exclude did not drop the create event: %s", id)
		}
	}
	expectErr(t, slidingSync(alice, "", 0, map[string]any{"lists": map[string]any{"all": map[string]any{
		"ranges": [][2]int{{0, 10}}, "timeline_limit": 1, "required_state": "m.room.name"}}}), "required_state a string", 400, "M_INVALID_PARAM", "M_BAD_JSON")
}

// TestSlidingSyncSurvivesRestart (MSC4186): a client that reconnects with its pos after the
// server restarted gets an incremental answer (only what is new, no room sent again whole),
// not M_UNKNOWN_POS; its extension configs and lists carry on. A pos that was never given
// out is still M_UNKNOWN_POS.
func TestSlidingSyncSurvivesRestart(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	var rooms []string
	for i := 0; i < 3; i++ {
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": fmt.Sprintf("room %d", i)})
		join(bob, roomID)
		bob.Send(roomID, fmt.Sprintf("before %d", i))
		rooms = append(rooms, roomID)
	}
	body := allRooms(10, 5)
	body["extensions"] = map[string]any{"account_data": map[string]any{"enabled": true}}
	first := slidingOK(t, alice, "", 0, body)
	for _, roomID := range rooms {
		if slidingRoom(first, roomID) == nil {
			t.Fatalf("initial sliding sync lacks %s: %s", roomID, first.Raw)
		}
	}
	m1 := bob.Send(rooms[0], "m1")
	second := slidingOK(t, alice, str(first.Body, "pos"), 0, body)
	if ids := ids(list(slidingRoom(second, rooms[0]), "timeline")); len(ids) != 1 || ids[0] != m1 {
		t.Fatalf("incremental before the restart: timeline %v, want [%s]: %s", ids, m1, second.Raw)
	}
	pos := str(second.Body, "pos")

	srv.Stop()
	srv.Start()

	m2 := bob.Send(rooms[1], "m2")
	alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/org.example.after", map[string]any{"v": 1})
	// The request leaves the extensions out: the connection's configs carry on.
	third := slidingSync(alice, pos, 0, allRooms(10, 5))
	if third.Status != 200 {
		t.Fatalf("sliding sync with the pos from before the restart: %d %s", third.Status, third.Raw)
	}
	if r := slidingRoom(third, rooms[0]); r != nil {
		t.Errorf("room 0 (nothing new) was sent again after the restart: %.300v", r)
	}
	r1 := slidingRoom(third, rooms[1])
	if ids := ids(list(r1, "timeline")); len(ids) != 1 || ids[0] != m2 {
		t.Errorf("after the restart: timeline of room 1 %v, want only [%s]", ids, m2)
	}
	if r1["initial"] == true {
		t.Errorf("room 1 came back as initial after the restart: %.300v", r1)
	}
	if r := slidingRoom(third, rooms[2]); r != nil {
		t.Errorf("room 2 (nothing new) was sent again after the restart")
	}
	if accountDataEvent(list(obj(third.Body, "extensions", "account_data"), "global"), "org.example.after") == nil {
		t.Errorf("the account_data extension did not carry on after the restart: %s", third.Raw)
	}
	if num(obj(third.Body, "lists", "all"), "count") != 3 {
		t.Errorf("list count after the restart: %s", third.Raw)
	}

	// The connection goes on from there, through a second restart with no change at all and
	// with a long-poll in flight (as Element X always has), which the restart cuts off.
	pos = str(third.Body, "pos")
	polled := make(chan string, 1) // the pos of the long-poll's answer, "" if cut off
	go func() {
		q := url.Values{"pos": {pos}, "timeout": {"20000"}}
		js, _ := json.Marshal(allRooms(10, 5))
		req, _ := http.NewRequest("POST", srv.URL+slidingPath+"?"+q.Encode(), bytes.NewReader(js))
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			polled <- ""
			return
		}
		defer resp.Body.Close()
		var body struct {
			Pos string `json:"pos"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		polled <- body.Pos
	}()
	time.Sleep(300 * time.Millisecond)
	srv.Stop()
	if p := <-polled; p != "" {
		pos = p // answered before the server went: the client goes on from that answer
	}
	t.Logf("the long-poll in flight was answered: %v", pos != str(third.Body, "pos"))
	srv.Start()
	if r := slidingSync(alice, pos, 0, allRooms(10, 5)); r.Status != 200 || len(obj(r.Body, "rooms")) != 0 {
		t.Errorf("sliding sync after a second restart: %d %.500s", r.Status, r.Raw)
	}
	expectErr(t, slidingSync(alice, "12345", 0, allRooms(10, 5)), "a pos never given out", 400, "M_UNKNOWN_POS")
}
