package e2e

import (
	"net/url"
	"strconv"
	"testing"
	"time"
)

// Simplified Sliding Sync (MSC4186) through the real server, with the request shapes
// matrix-rust-sdk (Element X) sends: pos and timeout as query parameters, lists with ranges,
// required_state as [type, state_key] pairs.

const slidingPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// slidingSync posts one sliding sync request; pos "" starts a connection.
func slidingSync(c *Client, pos string, timeoutMS int, body map[string]any) Resp {
	c.t.Helper()
	q := url.Values{}
	if pos != "" {
		q.Set("pos", pos)
	}
	q.Set("timeout", strconv.Itoa(timeoutMS))
	return call(c, "POST", slidingPath+"?"+q.Encode(), body)
}

// slidingOK is slidingSync that fails the test unless it answers 200 with a pos.
func slidingOK(t *testing.T, c *Client, pos string, timeoutMS int, body map[string]any) Resp {
	t.Helper()
	r := slidingSync(c, pos, timeoutMS, body)
	if r.Status != 200 || str(r.Body, "pos") == "" {
		t.Fatalf("sliding sync (pos %q): %d %s", pos, r.Status, r.Raw)
	}
	return r
}

func slidingRoom(r Resp, roomID string) map[string]any { return obj(r.Body, "rooms", roomID) }

func num(m map[string]any, key string) float64 {
	v, _ := m[key].(float64)
	return v
}

// allRooms is the list Element X's room list starts with.
func allRooms(end, timeline int) map[string]any {
	return map[string]any{"lists": map[string]any{"all": map[string]any{
		"ranges":         [][2]int{{0, end}},
		"timeline_limit": timeline,
		"required_state": [][2]string{{"m.room.name", ""}, {"m.room.create", ""}, {"m.room.member", "$LAZY"}, {"m.room.member", "$ME"}},
	}}}
}

func TestSlidingSyncListsAndIncremental(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	if r := alice.Do("GET", "/_matrix/client/versions", nil); obj(r.Body, "unstable_features")["org.matrix.simplified_msc3575"] != true {
		t.Fatalf("unstable_features lacks org.matrix.simplified_msc3575: %s", r.Raw)
	}
	a := alice.CreateRoom(map[string]any{"name": "Room A"})
	b := alice.CreateRoom(map[string]any{"name": "Room B"})
	c := alice.CreateRoom(map[string]any{"name": "Room C"})
	alice.Send(a, "a1")
	alice.Send(b, "b1")
	alice.Send(c, "c1")
	alice.Send(a, "a2")

	// Initial: the two most recent rooms (A, then C), with name, state and timeline.
	r := slidingOK(t, alice, "", 0, allRooms(1, 2))
	if got := num(obj(r.Body, "lists", "all"), "count"); got != 3 {
		t.Errorf("count = %v, want 3; %s", got, r.Raw)
	}
	ra, rc := slidingRoom(r, a), slidingRoom(r, c)
	if ra == nil || rc == nil || slidingRoom(r, b) != nil {
		t.Fatalf("rooms = %v, want A and C only", obj(r.Body, "rooms"))
	}
	if str(ra, "name") != "Room A" || ra["initial"] != true || str(ra, "membership") != "join" {
		t.Errorf("room A = %v", ra)
	}
	if num(ra, "bump_stamp") <= num(rc, "bump_stamp") {
		t.Errorf("bump_stamp A %v <= C %v", ra["bump_stamp"], rc["bump_stamp"])
	}
	tl := list(ra, "timeline")
	if len(tl) != 2 || evBody(tl[1]) != "a2" || evBody(tl[0]) != "a1" || ra["limited"] != true || str(ra, "prev_batch") == "" {
		t.Errorf("room A timeline = %v limited %v", tl, ra["limited"])
	}
	types := map[string]bool{}
	for _, ev := range list(ra, "required_state") {
		types[evType(ev)+"|"+str(ev, "state_key")] = true
	}
	if !types["m.room.create|"] || !types["m.room.name|"] || !types["m.room.member|"+alice.UserID] || types["m.room.power_levels|"] {
		t.Errorf("room A required_state = %v", types)
	}
	if num(ra, "joined_count") != 1 {
		t.Errorf("joined_count = %v", ra["joined_count"])
	}

	// Nothing new: an immediate empty answer, with the lists.
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, allRooms(1, 2))
	if len(obj(r.Body, "rooms")) != 0 {
		t.Errorf("no change, rooms = %v", obj(r.Body, "rooms"))
	}

	// A message bumps B into the range: sent whole, as the connection never had it.
	alice.Send(b, "b2")
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, allRooms(1, 2))
	rb := slidingRoom(r, b)
	if rb == nil || rb["initial"] != true || len(obj(r.Body, "rooms")) != 1 {
		t.Fatalf("after b2: rooms %v", obj(r.Body, "rooms"))
	}
	// A message in A: only the new event, not initial, live.
	id := alice.Send(a, "a3")
	pos := str(r.Body, "pos")
	r = slidingOK(t, alice, pos, 0, allRooms(1, 2))
	ra = slidingRoom(r, a)
	tl = list(ra, "timeline")
	if ra == nil || ra["initial"] == true || len(tl) != 1 || evID(tl[0]) != id || num(ra, "num_live") != 1 {
		t.Fatalf("after a3: room A %v", ra)
	}
	if ra["name"] != nil || ra["required_state"] != nil {
		t.Errorf("unchanged name or state sent again: %v", ra)
	}
	// A retry with the previous pos works too (the response may have been lost).
	r2 := slidingOK(t, alice, pos, 0, allRooms(1, 2))
	if slidingRoom(r2, a) == nil {
		t.Errorf("retry with the same pos lost room A: %s", r2.Raw)
	}

	// A room subscription with a larger timeline: more history, expanded_timeline.
	sub := allRooms(1, 2)
	sub["room_subscriptions"] = map[string]any{a: map[string]any{"timeline_limit": 10, "required_state": [][2]string{{"*", "*"}}}}
	r = slidingOK(t, alice, str(r2.Body, "pos"), 0, sub)
	ra = slidingRoom(r, a)
	if ra == nil || ra["expanded_timeline"] != true || len(list(ra, "timeline")) < 3 {
		t.Errorf("subscription: room A %v", ra)
	}

	// An unknown pos restarts the connection; bad bodies are client errors.
	expectErr(t, slidingSync(alice, "12345", 0, allRooms(1, 2)), "unknown pos", 400, "M_UNKNOWN_POS")
	expectErr(t, call(alice, "POST", slidingPath, "{not json"), "bad JSON", 400, "M_NOT_JSON")
	expectErr(t, call(alice, "POST", slidingPath, `{"lists": 3}`), "wrong type", 400, "M_BAD_JSON")
	expectErr(t, call(alice, "POST", slidingPath, map[string]any{"lists": map[string]any{"x": map[string]any{"ranges": [][2]int{{5, 1}}, "timeline_limit": 1}}}),
		"reversed range", 400, "M_INVALID_PARAM")
}

func TestSlidingSyncInvite(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	r := slidingOK(t, alice, "", 0, allRooms(9, 1))
	room := bob.CreateRoom(map[string]any{"name": "Bob's room", "invite": []string{alice.UserID}})
	body := allRooms(9, 1)
	body["lists"].(map[string]any)["invites"] = map[string]any{"ranges": [][2]int{{0, 9}}, "timeline_limit": 1, "filters": map[string]any{"is_invite": true}}
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, body)
	ri := slidingRoom(r, room)
	if ri == nil || str(ri, "membership") != "invite" || ri["initial"] != true {
		t.Fatalf("invite: %s", r.Raw)
	}
	found := false
	for _, ev := range list(ri, "invite_state") {
		if evType(ev) == "m.room.member" && str(ev, "state_key") == alice.UserID {
			found = true
		}
	}
	if !found || len(list(ri, "timeline")) != 0 {
		t.Errorf("invite_state lacks the invite, or a timeline leaked: %v", ri)
	}
	if num(obj(r.Body, "lists", "invites"), "count") != 1 {
		t.Errorf("invites count: %s", r.Raw)
	}
	// Joining turns it into a joined room, sent whole.
	join(alice, room)
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, body)
	if rj := slidingRoom(r, room); rj == nil || str(rj, "membership") != "join" || rj["initial"] != true || str(rj, "name") != "Bob's room" {
		t.Errorf("after join: %s", r.Raw)
	}
	if num(obj(r.Body, "lists", "invites"), "count") != 0 {
		t.Errorf("invites count after join: %s", r.Raw)
	}
}

func TestSlidingSyncToDeviceAndE2EE(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"invite": []string{bob.UserID}})
	join(bob, room)
	ext := func(since string) map[string]any {
		b := allRooms(9, 1)
		td := map[string]any{"enabled": true}
		if since != "" {
			td["since"] = since
		}
		b["extensions"] = map[string]any{"to_device": td, "e2ee": map[string]any{"enabled": true}}
		return b
	}
	r := slidingOK(t, alice, "", 0, ext(""))
	e2ee := obj(r.Body, "extensions", "e2ee")
	if e2ee == nil || num(obj(e2ee, "device_one_time_keys_count"), "signed_curve25519") != 0 {
		t.Errorf("e2ee = %v", e2ee)
	}
	since := str(obj(r.Body, "extensions", "to_device"), "next_batch")
	if since == "" {
		t.Fatalf("to_device = %s", r.Raw)
	}

	sendToDevice(bob, "m.test", "txn1", map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"n": 1}}})
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, ext(since))
	td := obj(r.Body, "extensions", "to_device")
	evs := list(td, "events")
	if len(evs) != 1 || evType(evs[0]) != "m.test" || str(evs[0], "sender") != bob.UserID {
		t.Fatalf("to-device events = %v", evs)
	}
	// The next request acknowledges it: not delivered again.
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, ext(str(td, "next_batch")))
	if evs := list(obj(r.Body, "extensions", "to_device"), "events"); len(evs) != 0 {
		t.Errorf("to-device delivered twice: %v", evs)
	}

	// Bob's new device keys: alice's e2ee extension lists bob as changed.
	key := newSigningKey(t)
	if up := uploadKeys(bob, map[string]any{"device_keys": deviceKeys(t, bob, key)}); up.Status != 200 {
		t.Fatalf("keys/upload: %d %s", up.Status, up.Raw)
	}
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, ext(str(obj(r.Body, "extensions", "to_device"), "next_batch")))
	changed := obj(r.Body, "extensions", "e2ee", "device_lists")["changed"]
	if got, _ := changed.([]any); len(got) != 1 || got[0] != bob.UserID {
		t.Errorf("device_lists.changed = %v; %s", changed, r.Raw)
	}
}

func TestSlidingSyncLongPoll(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"invite": []string{bob.UserID}})
	join(bob, room)
	r := slidingOK(t, alice, "", 0, allRooms(9, 1))

	// Nothing new: the request waits for its timeout.
	start := time.Now()
	r = slidingOK(t, alice, str(r.Body, "pos"), 300, allRooms(9, 1))
	if time.Since(start) < 250*time.Millisecond || len(obj(r.Body, "rooms")) != 0 {
		t.Errorf("empty long-poll returned after %v with %s", time.Since(start), r.Raw)
	}
	// A message wakes it.
	done := make(chan Resp, 1)
	pos := str(r.Body, "pos")
	go func() { done <- slidingSync(alice, pos, 20000, allRooms(9, 1)) }()
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	id := bob.Send(room, "wake up")
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll not woken by a message")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("woken after %v", time.Since(start))
	}
	tl := list(slidingRoom(r, room), "timeline")
	if r.Status != 200 || len(tl) != 1 || evID(tl[0]) != id {
		t.Errorf("woken response: %d %s", r.Status, r.Raw)
	}
}

func TestSlidingSyncAccountDataReceiptsTyping(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"invite": []string{bob.UserID}})
	join(bob, room)
	body := allRooms(9, 1)
	body["extensions"] = map[string]any{
		"account_data": map[string]any{"enabled": true},
		"receipts":     map[string]any{"enabled": true},
		"typing":       map[string]any{"enabled": true},
	}
	r := slidingOK(t, alice, "", 0, body)

	alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/m.test", map[string]any{"a": 1})
	alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/rooms/"+esc(room)+"/account_data/m.room.test", map[string]any{"b": 2})
	id := bob.Send(room, "hello")
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(id), map[string]any{})
	bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/typing/"+esc(bob.UserID), map[string]any{"typing": true, "timeout": 30000})

	// The extensions are sticky: this request leaves them out.
	r = slidingOK(t, alice, str(r.Body, "pos"), 0, allRooms(9, 1))
	ext := obj(r.Body, "extensions")
	global := list(obj(ext, "account_data"), "global")
	if len(global) != 1 || evType(global[0]) != "m.test" {
		t.Errorf("account_data.global = %v", global)
	}
	if evs := list(obj(ext, "account_data", "rooms"), room); len(evs) != 1 || evType(evs[0]) != "m.room.test" {
		t.Errorf("account_data.rooms = %v", obj(ext, "account_data", "rooms"))
	}
	rec := obj(ext, "receipts", "rooms", room)
	if evType(rec) != "m.receipt" || obj(rec, "content", id, "m.read", bob.UserID) == nil {
		t.Errorf("receipts = %v", obj(ext, "receipts"))
	}
	typ := obj(ext, "typing", "rooms", room)
	if users, _ := obj(typ, "content")["user_ids"].([]any); len(users) != 1 || users[0] != bob.UserID {
		t.Errorf("typing = %v", obj(ext, "typing"))
	}
}
