package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// purgeHistory starts a purge through the admin API, polls its status until it is complete
// and returns its ID.
func purgeHistory(t *testing.T, admin *Client, path string, body map[string]any) string {
	t.Helper()
	r := admin.MustDo("POST", "/_synapse/admin/v1/purge_history/"+path, body)
	id := str(r.Body, "purge_id")
	if id == "" {
		t.Fatalf("purge_history: no purge_id: %s", r.Raw)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := admin.MustDo("GET", "/_synapse/admin/v1/purge_history_status/"+esc(id), nil)
		switch str(st.Body, "status") {
		case "complete":
			return id
		case "active":
		default:
			t.Fatalf("purge %s: %s", id, st.Raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("purge %s still active after 30s", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// searchIDs returns the IDs of every event /search finds for term, following next_batch.
func searchIDs(c *Client, term string) []string {
	c.t.Helper()
	var out []string
	next := ""
	for page := 0; page < 100; page++ {
		path := "/_matrix/client/v3/search"
		if next != "" {
			path += "?next_batch=" + url.QueryEscape(next)
		}
		r := c.MustDo("POST", path, map[string]any{"search_categories": map[string]any{
			"room_events": map[string]any{"search_term": term, "order_by": "recent"}}})
		res := obj(r.Body, "search_categories", "room_events")
		for _, v := range res["results"].([]any) {
			out = append(out, str(v.(map[string]any)["result"].(map[string]any), "event_id"))
		}
		if next = str(res, "next_batch"); next == "" {
			return out
		}
	}
	c.t.Fatal("/search pagination did not end")
	return nil
}

// checkPurged checks what clients observe of a purged room: /messages pages back to the
// purge point without gaps or errors, /context and /event of purged events are 404, /search
// does not find them, and /sync (with an old since-token and without) never returns them.
func checkPurged(t *testing.T, c *Client, roomID string, purged, kept []string, oldSince string) {
	t.Helper()
	isPurged := map[string]bool{}
	for _, id := range purged {
		isPurged[id] = true
	}
	var got []string
	for _, e := range paginateBack(c, roomID, "", 7, nil) {
		if isPurged[evID(e)] {
			t.Errorf("/messages returned purged event %s (%s)", evID(e), evBody(e))
		}
		if evType(e) == "m.room.message" {
			got = append(got, evID(e))
		}
	}
	checkSameIDs(t, "/messages after the purge", reversed(got), kept)
	for _, id := range purged {
		for _, path := range []string{"context", "event"} {
			r := c.Do("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/%s/%s", esc(roomID), path, esc(id)), nil)
			expectErr(t, r, "/"+path+" of a purged event", 404, "M_NOT_FOUND")
		}
	}
	r := c.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/context/%s", esc(roomID), esc(kept[0])), nil)
	if evID(obj(r.Body, "event")) != kept[0] {
		t.Errorf("/context of the oldest kept event: %.300s", r.Raw)
	}
	for _, e := range list(r.Body, "events_before") {
		if isPurged[evID(e)] {
			t.Errorf("/context events_before has purged event %s", evID(e))
		}
	}
	for _, id := range searchIDs(c, "purgeable") {
		if isPurged[id] {
			t.Errorf("/search found purged event %s", id)
		}
	}
	for _, since := range []string{oldSince, ""} {
		s := newSyncer(c, `{"room":{"timeline":{"limit":50}}}`)
		s.since = since
		s.once(0)
		for _, e := range s.tl[roomID] {
			if isPurged[evID(e)] {
				t.Errorf("/sync since=%q returned purged event %s", since, evID(e))
			}
		}
		for _, e := range list(obj(s.last.Body, "rooms", "join", roomID, "state"), "events") {
			if isPurged[evID(e)] {
				t.Errorf("/sync since=%q state has purged event %s", since, evID(e))
			}
		}
	}
}

// TestAdminPurgeHistory purges a room's history up to an event and up to a time while the
// room is in use, and checks what clients see afterwards.
func TestAdminPurgeHistory(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "purge me"})
	join(bob, room)
	bobSync := newSyncer(bob, "")
	bobSync.once(0)
	var old []string
	for i := range 30 {
		sender := alice
		if i%3 == 0 {
			sender = bob
		}
		old = append(old, sender.Send(room, fmt.Sprintf("purgeable old %d", i)))
		if i == 15 {
			bobSync.once(0) // a since-token from the middle of what is purged
		}
	}
	oldSince := bobSync.since
	// A reaction to an old message and a thread reply to the purge point.
	r := sendTxn(alice, room, "m.reaction", "react1", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": old[3], "key": "👍"}})
	old = append(old, str(r.Body, "event_id"))
	point := alice.Send(room, "purgeable boundary")
	kept := []string{point}
	for i := range 5 {
		kept = append(kept, bob.Send(room, fmt.Sprintf("purgeable new %d", i)))
	}

	// Non-admins may not purge.
	r = bob.Do("POST", "/_synapse/admin/v1/purge_history/"+esc(room)+"/"+esc(point), map[string]any{"delete_local_events": true})
	expectErr(t, r, "purge by a non-admin", 403, "M_FORBIDDEN")

	purgeHistory(t, admin, esc(room)+"/"+esc(point), map[string]any{"delete_local_events": true})
	checkPurged(t, bob, room, old, kept, oldSince)

	// The room still works: a message is sent and synced, also from the old since-token.
	fresh := alice.Send(room, "purgeable after")
	bobSync.waitEvent(room, fresh)
	kept = append(kept, fresh)
	checkPurged(t, bob, room, old, kept, oldSince)

	// By time, keeping local events (the default): they become invisible all the same.
	room2 := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, room2)
	var old2 []string
	for i := range 10 {
		old2 = append(old2, alice.Send(room2, fmt.Sprintf("purgeable second %d", i)))
	}
	time.Sleep(20 * time.Millisecond)
	first := alice.Send(room2, "purgeable second boundary")
	ts := obj(alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(room2), esc(first)), nil).Body)["origin_server_ts"].(float64)
	kept2 := []string{first, bob.Send(room2, "purgeable second new")}
	purgeID := purgeHistory(t, admin, esc(room2), map[string]any{"purge_up_to_ts": int64(ts)})
	checkPurged(t, bob, room2, old2, kept2, oldSince)
	// A purge's status outlives a restart; so does what it purged.
	srv.Stop()
	srv.Start()
	r = admin.MustDo("GET", "/_synapse/admin/v1/purge_history_status/"+esc(purgeID), nil)
	if str(r.Body, "status") != "complete" || len(r.Body) != 1 {
		t.Errorf("status after a restart: %s", r.Raw)
	}
	checkPurged(t, bob, room2, old2, kept2, oldSince)
	// The first room was left alone.
	if ids := searchIDs(bob, "purgeable"); len(ids) < len(kept)+len(kept2) {
		t.Errorf("search after both purges finds %d events, want at least %d", len(ids), len(kept)+len(kept2))
	}
}

// TestAdminPurgeHistoryErrors covers the purge routes' errors, for admins and non-admins.
func TestAdminPurgeHistoryErrors(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	other := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	ev := alice.Send(room, "hello")
	otherEv := alice.Send(other, "elsewhere")

	for _, rt := range []struct{ method, path string }{
		{"POST", "/_synapse/admin/v1/purge_history/" + esc(room)},
		{"POST", "/_synapse/admin/v1/purge_history/" + esc(room) + "/" + esc(ev)},
		{"GET", "/_synapse/admin/v1/purge_history_status/abc"},
	} {
		expectErr(t, alice.Do(rt.method, rt.path, map[string]any{"purge_up_to_ts": 1}), "non-admin "+rt.method+" "+rt.path, 403, "M_FORBIDDEN")
		expectErr(t, anon(t, srv, rt.method, rt.path, nil), "no token "+rt.path, 401, "M_MISSING_TOKEN")
	}
	base := "/_synapse/admin/v1/purge_history/"
	for _, c := range []struct {
		what   string
		path   string
		body   any
		status int
		code   string
	}{
		{"unknown room", base + esc("!nope:"+srv.Name), map[string]any{"purge_up_to_ts": 1}, 404, "M_NOT_FOUND"},
		{"invalid room ID", base + "nope", map[string]any{"purge_up_to_ts": 1}, 400, "M_INVALID_PARAM"},
		{"unknown event", base + esc(room) + "/" + esc("$nope"), nil, 404, "M_NOT_FOUND"},
		{"unknown event in body", base + esc(room), map[string]any{"purge_up_to_event_id": "$nope"}, 404, "M_NOT_FOUND"},
		{"event of another room", base + esc(room) + "/" + esc(otherEv), nil, 400, "M_INVALID_PARAM"},
		{"no purge point", base + esc(room), map[string]any{}, 400, "M_MISSING_PARAM"},
		{"ts not an integer", base + esc(room), map[string]any{"purge_up_to_ts": "yesterday"}, 400, "M_BAD_JSON"},
		{"delete_local_events not a boolean", base + esc(room), map[string]any{"purge_up_to_ts": 1, "delete_local_events": "yes"}, 400, "M_BAD_JSON"},
		{"nothing before ts", base + esc(room), map[string]any{"purge_up_to_ts": 1}, 400, "M_INVALID_PARAM"},
		{"body not an object", base + esc(room), []any{1}, 400, "M_BAD_JSON"},
	} {
		expectErr(t, admin.Do("POST", c.path, c.body), c.what, c.status, c.code)
	}
	expectErr(t, admin.Do("GET", "/_synapse/admin/v1/purge_history_status/unknown", nil), "unknown purge", 404, "M_NOT_FOUND")
}

// TestRetention runs the message retention job with a short max_lifetime (the room's
// m.room.retention event) and purge interval: expired messages and the local media only they
// referred to go; newer messages, shared media, the room and since-tokens keep working.
func TestRetention(t *testing.T) {
	srv := StartServer(t)
	srv.Stop()
	cfg, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(cfg), "  enabled: false\n  # The policy of rooms", "  enabled: true\n  # The policy of rooms", 1)
	text = strings.Replace(text, `  purge_interval: "1h"`, `  purge_interval: "200ms"`, 1)
	if text == string(cfg) || !strings.Contains(text, `purge_interval: "200ms"`) {
		t.Fatal("no retention section in the generated config")
	}
	if err := os.WriteFile(srv.ConfigPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Start()

	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	const lifetime = 8 * time.Second
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []any{map[string]any{
		"type": "m.room.retention", "state_key": "", "content": map[string]any{"max_lifetime": lifetime.Milliseconds()}}}})
	join(bob, room)
	// A room without a policy keeps everything (no default policy configured).
	keepRoom := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	forever := alice.Send(keepRoom, "retained forever")

	bobSync := newSyncer(bob, "")
	bobSync.once(0)
	only := upload(t, alice, []byte("only in expiring messages"), "text/plain", "only.txt")
	shared := upload(t, alice, []byte("also in a newer message"), "text/plain", "shared.txt")
	image := func(uri, body string) string {
		r := sendTxn(alice, room, "m.room.message", "img"+body, map[string]any{"msgtype": "m.file", "body": body, "url": uri})
		return str(r.Body, "event_id")
	}
	sent := time.Now()
	var old []string
	for i := range 5 {
		old = append(old, alice.Send(room, fmt.Sprintf("purgeable expiring %d", i)))
	}
	old = append(old, image(only, "purgeable only file"), image(shared, "purgeable shared file"))
	bobSync.waitEvent(room, old[len(old)-1])
	oldSince := bobSync.since

	// Newer messages, sent half a lifetime later.
	time.Sleep(lifetime / 2)
	kept := []string{alice.Send(room, "purgeable newer"), image(shared, "purgeable shared again")}

	// Wait for the old messages to go.
	deadline := sent.Add(lifetime + 15*time.Second)
	for {
		r := bob.Do("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(room), esc(old[len(old)-1])), nil)
		if r.Status == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired messages still there after %v", time.Since(sent))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if time.Since(sent) > lifetime*3/2 {
		t.Fatalf("the purge took until %v after sending: the newer messages may have expired too", time.Since(sent))
	}
	checkPurged(t, bob, room, old, kept, oldSince)
	if r := srv.media(t, bob.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(only), nil, ""); r.Status != http.StatusNotFound {
		t.Errorf("download of media only expired messages referred to: %d, want 404", r.Status)
	}
	if r := srv.media(t, bob.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(shared), nil, ""); r.Status != 200 {
		t.Errorf("download of media a newer message refers to: %d, want 200", r.Status)
	}
	alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(keepRoom), esc(forever)), nil)
	// The retention policy itself is state: kept.
	if r := stateEvent(bob, room, "m.room.retention", ""); r.Status != 200 {
		t.Errorf("m.room.retention after the purge: %d %s", r.Status, r.Raw)
	}
	// The room still works.
	fresh := alice.Send(room, "after retention")
	bobSync.waitEvent(room, fresh)
}
