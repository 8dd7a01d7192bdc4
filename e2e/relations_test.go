package e2e

import (
	"fmt"
	"net/url"
	"testing"
)

func (c *Client) sendContent(roomID, evType string, content map[string]any) Resp {
	c.t.Helper()
	return c.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/%s/r%d", esc(roomID), evType, c.txn.Add(1)), content)
}

func (c *Client) mustSendContent(roomID, evType string, content map[string]any) string {
	c.t.Helper()
	r := c.sendContent(roomID, evType, content)
	if r.Status != 200 {
		c.t.Fatalf("send %s: %d %s", evType, r.Status, r.Raw)
	}
	return r.Body["event_id"].(string)
}

// TestRelations covers threads, edits, reactions and references as the other client sees them.
func TestRelations(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{})

	root := alice.Send(room, "root")
	reply := func(text string) string {
		return bob.mustSendContent(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": text,
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	}
	reply("first reply")
	last := reply("second reply")
	edit := func(text string) string {
		return alice.mustSendContent(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* " + text,
			"m.new_content": map[string]any{"msgtype": "m.text", "body": text},
			"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": root}})
	}
	edit("root v2")
	latestEdit := edit("root v3")
	// bob's "edit" of alice's message is not a valid replacement and must not be bundled.
	bob.mustSendContent(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* hijack",
		"m.new_content": map[string]any{"msgtype": "m.text", "body": "hijack"},
		"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": root}})
	react := map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": root, "key": "👍"}}
	reaction := bob.mustSendContent(room, "m.reaction", react)
	if r := bob.sendContent(room, "m.reaction", react); r.Status != 400 || r.ErrCode() != "M_DUPLICATE_ANNOTATION" {
		t.Fatalf("duplicate reaction: %d %s", r.Status, r.Raw)
	}
	bob.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/redact/%s/x1", esc(room), esc(reaction)), map[string]any{})
	bob.mustSendContent(room, "m.reaction", react) // allowed again once the first is redacted
	bob.mustSendContent(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "see above",
		"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": root}})

	ev := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(room), esc(root)), nil)
	rels := ev.Body["unsigned"].(map[string]any)["m.relations"].(map[string]any)
	th := rels["m.thread"].(map[string]any)
	if th["count"].(float64) != 2 || th["current_user_participated"] != true || th["latest_event"].(map[string]any)["event_id"] != last {
		t.Fatalf("m.thread aggregation %v", th)
	}
	if got := rels["m.replace"].(map[string]any)["event_id"]; got != latestEdit {
		t.Fatalf("m.replace is %v, want the latest edit %s", got, latestEdit)
	}
	if _, ok := rels["m.annotation"]; ok {
		t.Fatal("annotations must not be aggregated")
	}
	if chunk := rels["m.reference"].(map[string]any)["chunk"].([]any); len(chunk) != 1 {
		t.Fatalf("m.reference chunk %v", chunk)
	}
	// bob, who replied, participated too; the thread shows in /sync for him with aggregations.
	s := bob.Sync("", "", 0)
	found := false
	for _, e := range timelineEvents(s, room) {
		if e["event_id"] == root {
			found = true
			th := e["unsigned"].(map[string]any)["m.relations"].(map[string]any)["m.thread"].(map[string]any)
			if th["current_user_participated"] != true {
				t.Fatalf("bob's sync: thread aggregation %v", th)
			}
		}
	}
	if !found {
		t.Fatal("root not in bob's initial sync")
	}

	base := fmt.Sprintf("/_matrix/client/v1/rooms/%s/relations/%s", esc(room), esc(root))
	all := alice.MustDo("GET", base, nil)
	if n := len(all.Body["chunk"].([]any)); n != 7 {
		t.Fatalf("/relations returned %d children, want 7: %s", n, all.Raw)
	}
	threads := alice.MustDo("GET", base+"/m.thread?limit=1", nil)
	chunk := threads.Body["chunk"].([]any)
	if len(chunk) != 1 || chunk[0].(map[string]any)["event_id"] != last || threads.Body["next_batch"] == nil {
		t.Fatalf("first page of m.thread relations: %s", threads.Raw)
	}
	next := alice.MustDo("GET", base+"/m.thread?limit=1&from="+url.QueryEscape(threads.Body["next_batch"].(string)), nil)
	if c := next.Body["chunk"].([]any); len(c) != 1 || c[0].(map[string]any)["event_id"] == last {
		t.Fatalf("second page of m.thread relations: %s", next.Raw)
	}
	if r := alice.MustDo("GET", base+"/m.annotation/m.reaction", nil); len(r.Body["chunk"].([]any)) != 1 {
		t.Fatalf("annotations by type: %s", r.Raw)
	}
	tl := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/threads", esc(room)), nil)
	if c := tl.Body["chunk"].([]any); len(c) != 1 || c[0].(map[string]any)["event_id"] != root {
		t.Fatalf("/threads: %s", tl.Raw)
	}
	if r := alice.Do("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/relations/%s", esc(room), esc("$unknown")), nil); r.Status != 404 {
		t.Fatalf("relations of an unknown event: %d", r.Status)
	}
}

// TestRelationsStayInTheirRoom checks that relations only count between events of one room
// (client-server API, "Forming relationships between events": a relationship between events
// of different rooms is "simply ignored"). mallory, who left room X, points thread, annotation,
// reference and edit relations from her own room Y at events of X; alice, in X, must see none
// of them anywhere, and mallory's reaction in X is no duplicate of the one she planted from Y.
func TestRelationsStayInTheirRoom(t *testing.T) {
	srv := StartServer(t)
	alice, mallory, bob := srv.Register(t, "alice"), srv.Register(t, "mallory"), srv.Register(t, "bob")
	x := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	root := alice.Send(x, "root")
	join(mallory, x)
	own := mallory.Send(x, "mallory's message in X")
	mallory.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(x)+"/leave", map[string]any{})
	y := mallory.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, y) // a one-to-one room: every message notifies bob

	rel := func(relType, parent string, extra map[string]any) map[string]any {
		r := map[string]any{"rel_type": relType, "event_id": parent}
		for k, v := range extra {
			r[k] = v
		}
		return r
	}
	msg := func(body string, relatesTo map[string]any) map[string]any {
		return map[string]any{"msgtype": "m.text", "body": body, "m.relates_to": relatesTo}
	}
	react := map[string]any{"m.relates_to": rel("m.annotation", root, map[string]any{"key": "👍"})}
	planted := []string{
		mallory.mustSendContent(y, "m.room.message", msg("thread reply from Y", rel("m.thread", root, nil))),
		mallory.mustSendContent(y, "m.room.message", msg("thread on her own event", rel("m.thread", own, nil))),
		mallory.mustSendContent(y, "m.reaction", react),
		mallory.mustSendContent(y, "m.room.message", msg("see X", rel("m.reference", root, nil))),
		mallory.mustSendContent(y, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* hijacked",
			"m.new_content": map[string]any{"msgtype": "m.text", "body": "hijacked"},
			"m.relates_to":  rel("m.replace", own, nil)}),
	}

	for _, parent := range []string{root, own} {
		r := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/relations/%s", esc(x), esc(parent)), nil)
		if c := list(r.Body, "chunk"); len(c) != 0 {
			t.Errorf("/relations of %s in X lists events of Y: %v", parent, ids(c))
		}
		r = alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/relations/%s?recurse=true", esc(x), esc(parent)), nil)
		if c := list(r.Body, "chunk"); len(c) != 0 {
			t.Errorf("recursive /relations of %s in X lists events of Y: %v", parent, ids(c))
		}
		ev := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(x), esc(parent)), nil)
		if rels := obj(ev.Body, "unsigned", "m.relations"); rels != nil {
			t.Errorf("/event %s has aggregations of events of Y: %v", parent, rels)
		}
		if parent == own && evBody(ev.Body) != "mallory's message in X" {
			t.Errorf("/event %s content replaced: %v", parent, ev.Body["content"])
		}
	}
	cx := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/context/%s", esc(x), esc(root)), nil)
	if rels := obj(cx.Body, "event", "unsigned", "m.relations"); rels != nil {
		t.Errorf("/context of the root has aggregations of events of Y: %v", rels)
	}
	for _, e := range timelineEvents(alice.Sync("", "", 0), x) {
		if rels := obj(e, "unsigned", "m.relations"); rels != nil {
			t.Errorf("/sync: %s has aggregations of events of Y: %v", evID(e), rels)
		}
		for _, p := range planted {
			if evID(e) == p {
				t.Errorf("/sync: event %s of Y in X's timeline", p)
			}
		}
	}
	for _, e := range pageBack(t, alice, x) {
		if rels := obj(e, "unsigned", "m.relations"); rels != nil {
			t.Errorf("/messages: %s has aggregations of events of Y: %v", evID(e), rels)
		}
	}
	threads := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/threads", esc(x)), nil)
	if c := list(threads.Body, "chunk"); len(c) != 0 {
		t.Errorf("/threads of X lists threads started from Y: %v", ids(c))
	}
	threads = mallory.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/threads", esc(y)), nil)
	if c := list(threads.Body, "chunk"); len(c) != 0 {
		t.Errorf("/threads of Y lists roots of X: %v", ids(c))
	}

	// bob's notifications in Y are not counted in a "thread" rooted in X.
	threaded := bob.Sync("", `{"room":{"timeline":{"unread_thread_notifications":true}}}`, 0)
	if th := obj(threaded.Body, "rooms", "join", y, "unread_thread_notifications"); len(th) != 0 {
		t.Errorf("bob's unread thread notifications in Y: %v, want none", th)
	}

	// Back in X, mallory's reaction is her first there, not a duplicate of the one from Y.
	join(mallory, x)
	if r := mallory.sendContent(x, "m.reaction", react); r.Status != 200 {
		t.Fatalf("reaction in X after one planted from Y: %d %s", r.Status, r.Raw)
	}
	r := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/relations/%s/m.annotation", esc(x), esc(root)), nil)
	if c := list(r.Body, "chunk"); len(c) != 1 {
		t.Errorf("annotations of the root: %v, want only the one sent in X", ids(c))
	}
}

// TestIgnoredUsers checks that the messages and invites of ignored users are not sent, while
// their state events are.
func TestIgnoredUsers(t *testing.T) {
	srv := StartServer(t)
	alice, bob, carol := srv.Register(t, "alice"), srv.Register(t, "bob"), srv.Register(t, "carol")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{})
	carol.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{})
	since := bob.Sync("", "", 0).Body["next_batch"].(string)
	bob.MustDo("PUT", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/account_data/m.ignored_user_list",
		map[string]any{"ignored_users": map[string]any{carol.UserID: map[string]any{}}})
	carol.Send(room, "from carol")
	alice.Send(room, "from alice")
	carol.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(carol.UserID)+"/displayname", map[string]any{"displayname": "Carol"})
	dm := carol.CreateRoom(map[string]any{"invite": []string{bob.UserID}})

	r := bob.Sync(since, "", 0)
	var bodies []string
	topic := false // carol's state event (her member event) must still arrive
	for _, e := range timelineEvents(r, room) {
		if e["type"] == "m.room.message" {
			bodies = append(bodies, e["content"].(map[string]any)["body"].(string))
		}
		topic = topic || (e["type"] == "m.room.member" && e["sender"] == carol.UserID)
	}
	if len(bodies) != 1 || bodies[0] != "from alice" || !topic {
		t.Fatalf("bob's sync: messages %v, carol's member event %v", bodies, topic)
	}
	if inv, _ := r.Body["rooms"].(map[string]any)["invite"].(map[string]any); inv[dm] != nil {
		t.Fatal("invite from an ignored user was sent")
	}
	hist := pageBack(t, bob, room)
	for _, e := range hist {
		if e["sender"] == carol.UserID && e["type"] == "m.room.message" {
			t.Fatal("/messages returned a message of an ignored user")
		}
	}
}

// TestHistoryVisibilityJoined checks that a user joining a room with history_visibility
// "joined" sees nothing from before the join in /sync, /messages or /event.
func TestHistoryVisibilityJoined(t *testing.T) {
	srv := StartServer(t)
	alice, dave := srv.Register(t, "alice"), srv.Register(t, "dave")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}},
	}})
	secret := alice.Send(room, "before dave")
	dave.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{})
	after := alice.Send(room, "after dave")

	r := dave.Sync("", "", 0)
	sawAfter := false
	for _, e := range timelineEvents(r, room) {
		if e["event_id"] == secret {
			t.Fatal("dave's sync shows a message from before he joined")
		}
		sawAfter = sawAfter || e["event_id"] == after
	}
	if !sawAfter {
		t.Fatal("dave's sync lacks the message sent after he joined")
	}
	for _, e := range pageBack(t, dave, room) {
		if e["event_id"] == secret {
			t.Fatal("/messages shows a message from before dave joined")
		}
	}
	if r := dave.Do("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(room), esc(secret)), nil); r.Status != 404 {
		t.Fatalf("/event of a hidden message: %d", r.Status)
	}
	// alice, a member throughout, sees both.
	if r := alice.Do("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(room), esc(secret)), nil); r.Status != 200 {
		t.Fatalf("alice /event: %d", r.Status)
	}
}

// TestRelationsPagedFromSyncToken checks /relations with the tokens of /sync and /messages,
// which relations.yaml allows for from and to: a token is a point between two events, so
// paging forwards from a /sync next_batch returns the relations sent after that sync, and
// backwards the ones sent before it; as a to token, it bounds the page at the same point.
func TestRelationsPagedFromSyncToken(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	root := alice.Send(room, "root")
	reply := func(text string) string {
		return alice.mustSendContent(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": text,
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	}
	before := reply("before the sync")
	sync := str(alice.Sync("", "", 0).Body, "next_batch")
	after := reply("after the sync")
	// The end of a backwards page of one event is the point just before that event.
	end := getMessages(alice, room, "b", "", 1).end
	latest := reply("after /messages")

	base := fmt.Sprintf("/_matrix/client/v1/rooms/%s/relations/%s?", esc(room), esc(root))
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"dir=f&from=" + url.QueryEscape(sync), []string{after, latest}},
		{"dir=b&from=" + url.QueryEscape(sync), []string{before}},
		{"dir=b&to=" + url.QueryEscape(sync), []string{latest, after}},
		{"dir=f&to=" + url.QueryEscape(sync), []string{before}},
		{"dir=f&from=" + url.QueryEscape(sync) + "&to=" + url.QueryEscape(sync), nil},
		{"dir=b&from=" + url.QueryEscape(end), []string{before}},
		{"dir=f&from=" + url.QueryEscape(end), []string{after, latest}},
		{"dir=b&to=" + url.QueryEscape(end), []string{latest, after}},
		{"dir=f&to=" + url.QueryEscape(end), []string{before}},
	} {
		r := alice.MustDo("GET", base+c.query, nil)
		checkSameIDs(t, "/relations?"+c.query, ids(list(r.Body, "chunk")), c.want)
	}
}
