package e2e

import (
	"fmt"
	"net/url"
	"testing"
	"time"
)

// TestThreadSubscriptions (MSC4306 endpoints, MSC4308 extension and companion endpoint):
// subscribe manually and automatically, manual outranks automatic, an automatic subscription
// caused by an event older than the last unsubscription is refused with 409, a cause outside
// the thread is 400, unknown threads and outsiders get 404; sliding sync's extension reports
// the changes (and only the latest state of each thread), incrementally and with prev_batch
// past its limit, and the companion endpoint pages back through them.
func TestThreadSubscriptions(t *testing.T) {
	srv := StartServer(t)
	alice, bob, eve := srv.Register(t, "alice"), srv.Register(t, "bob"), srv.Register(t, "eve")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)
	root := alice.Send(roomID, "thread root")
	other := alice.Send(roomID, "not in the thread")
	txn := 0
	reply := func(body string) string {
		txn++
		return str(sendTxn(alice, roomID, "m.room.message", fmt.Sprintf("ts%d", txn), map[string]any{"msgtype": "m.text", "body": body,
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}}).Body, "event_id")
	}
	r1 := reply("one")
	path := func(thread string) string {
		return "/_matrix/client/unstable/io.element.msc4306/rooms/" + esc(roomID) + "/thread/" + esc(thread) + "/subscription"
	}
	get := func() Resp { return call(bob, "GET", path(root), nil) }

	first := slidingOK(t, bob, "", 0, map[string]any{"lists": map[string]any{},
		"extensions": map[string]any{"io.element.msc4308.thread_subscriptions": map[string]any{"enabled": true, "limit": 10}}})
	pos := str(first.Body, "pos")

	expectErr(t, get(), "GET before subscribing", 404, "M_NOT_FOUND")
	expectOK(t, call(bob, "PUT", path(root), map[string]any{"automatic": r1}), "automatic subscription")
	if r := get(); r.Status != 200 || r.Body["automatic"] != true {
		t.Errorf("GET after the automatic subscription: %d %s", r.Status, r.Raw)
	}
	expectOK(t, call(bob, "PUT", path(root), map[string]any{}), "manual subscription")
	expectOK(t, call(bob, "PUT", path(root), map[string]any{"automatic": r1}), "automatic over manual")
	if r := get(); r.Body["automatic"] != false {
		t.Errorf("an automatic subscription replaced a manual one: %s", r.Raw)
	}

	// The extension reports the newest state of the thread once.
	r := slidingOK(t, bob, pos, 0, map[string]any{"lists": map[string]any{}})
	ext := obj(r.Body, "extensions", "io.element.msc4308.thread_subscriptions")
	subscribed := obj(ext, "subscribed", roomID)
	sub := obj(subscribed, root)
	if sub == nil || sub["automatic"] != false || len(subscribed) != 1 || ext["unsubscribed"] != nil {
		t.Errorf("extension after subscribing: %s", r.Raw)
	}
	stamp, _ := sub["bump_stamp"].(float64)
	if stamp <= 0 {
		t.Errorf("extension after subscribing: no bump_stamp: %s", r.Raw)
	}
	pos = str(r.Body, "pos")

	// Unsubscribe; an automatic subscription caused by r1 (older) is refused, one caused by a
	// newer reply is accepted.
	expectOK(t, call(bob, "DELETE", path(root), nil), "unsubscribe")
	expectOK(t, call(bob, "DELETE", path(root), nil), "unsubscribe again")
	expectErr(t, get(), "GET after unsubscribing", 404, "M_NOT_FOUND")
	r = slidingOK(t, bob, pos, 0, map[string]any{"lists": map[string]any{}})
	ext = obj(r.Body, "extensions", "io.element.msc4308.thread_subscriptions")
	unsub := obj(ext, "unsubscribed", roomID, root)
	if unsubStamp, _ := unsub["bump_stamp"].(float64); len(unsub) != 1 || unsubStamp <= stamp || ext["subscribed"] != nil {
		t.Errorf("extension after unsubscribing: want unsubscribed %s with a higher bump_stamp than %v: %s", root, stamp, r.Raw)
	}
	pos = str(r.Body, "pos")
	expectErr(t, call(bob, "PUT", path(root), map[string]any{"automatic": r1}), "automatic, cause older than the unsubscription", 409, "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION")
	// The older boolean form names no cause: after an unsubscription it could resubscribe
	// forever, so it is refused too.
	expectErr(t, call(bob, "PUT", path(root), map[string]any{"automatic": true}), "automatic true after an unsubscription", 409, "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION")
	expectErr(t, get(), "GET after the refused boolean automatic subscription", 404, "M_NOT_FOUND")
	r2 := reply("two")
	expectOK(t, call(bob, "PUT", path(root), map[string]any{"automatic": r2}), "automatic, cause newer than the unsubscription")
	if r := get(); r.Body["automatic"] != true {
		t.Errorf("GET after the newer automatic subscription: %s", r.Raw)
	}

	// Errors.
	expectErr(t, call(bob, "PUT", path(root), map[string]any{"automatic": other}), "cause outside the thread", 400, "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD")
	expectErr(t, call(bob, "PUT", path(root), map[string]any{"automatic": 7}), "automatic a number", 400, "M_BAD_JSON")
	expectErr(t, call(bob, "PUT", path("$nope"), map[string]any{}), "unknown thread", 404, "M_NOT_FOUND")
	expectErr(t, call(eve, "PUT", path(root), map[string]any{}), "a user not in the room", 404, "M_NOT_FOUND")
	expectErr(t, call(eve, "GET", path(root), nil), "GET by a user not in the room", 404, "M_NOT_FOUND")

	// Past the limit: prev_batch, and the companion endpoint gives the rest.
	var roots []string
	for i := 0; i < 4; i++ {
		id := alice.Send(roomID, fmt.Sprintf("root %d", i))
		roots = append(roots, id)
		expectOK(t, call(bob, "PUT", path(id), map[string]any{}), "subscribe "+id)
	}
	r = slidingOK(t, bob, pos, 0, map[string]any{"lists": map[string]any{},
		"extensions": map[string]any{"io.element.msc4308.thread_subscriptions": map[string]any{"limit": 2}}})
	ext = obj(r.Body, "extensions", "io.element.msc4308.thread_subscriptions")
	got := obj(ext, "subscribed", roomID)
	if len(got) != 2 || got[roots[3]] == nil || got[roots[2]] == nil || str(ext, "prev_batch") == "" {
		t.Fatalf("extension with limit 2: %s", r.Raw)
	}
	q := url.Values{"dir": {"b"}, "from": {str(ext, "prev_batch")}, "to": {pos}, "limit": {"2"}}
	page := bob.MustDo("GET", "/_matrix/client/unstable/io.element.msc4308/thread_subscriptions?"+q.Encode(), nil).Body
	chunk := obj(page, "subscribed", roomID)
	if len(chunk) != 2 || chunk[roots[1]] == nil || chunk[roots[0]] == nil || obj(chunk, roots[1])["bump_stamp"] == nil || str(page, "end") == "" {
		t.Errorf("companion page 1: %v", page)
	}
	if _, ok := page["unsubscribed"].(map[string]any); !ok || page["chunk"] != nil {
		t.Errorf("companion page 1 lacks unsubscribed or has chunk: %v", page)
	}
	q.Set("from", str(page, "end"))
	page = bob.MustDo("GET", "/_matrix/client/unstable/io.element.msc4308/thread_subscriptions?"+q.Encode(), nil).Body
	if chunk := obj(page, "subscribed", roomID); len(chunk) != 1 || obj(chunk, root)["automatic"] != true || page["end"] != nil {
		t.Errorf("companion page 2: %v", page)
	}
	// Without to, the endpoint pages from the newest change back to the first: the
	// unsubscription of root is superseded, so only its newest state is there.
	page = bob.MustDo("GET", "/_matrix/client/unstable/io.element.msc4308/thread_subscriptions?dir=b&limit=100", nil).Body
	if all := obj(page, "subscribed", roomID); len(all) != 5 || len(obj(page, "unsubscribed")) != 0 {
		t.Errorf("companion endpoint without tokens: %v", page)
	}
	// "enabled" must be given and true: a new connection asking for the extension without it
	// gets nothing.
	r = slidingOK(t, bob, "", 0, map[string]any{"conn_id": "noext", "lists": map[string]any{},
		"extensions": map[string]any{"io.element.msc4308.thread_subscriptions": map[string]any{"limit": 10}}})
	if ext := obj(r.Body, "extensions", "io.element.msc4308.thread_subscriptions"); ext != nil {
		t.Errorf("the extension without enabled answered: %s", r.Raw)
	}
	expectErr(t, call(bob, "GET", "/_matrix/client/unstable/io.element.msc4308/thread_subscriptions?dir=f", nil), "dir f", 400, "M_INVALID_PARAM")
	expectErr(t, call(bob, "GET", "/_matrix/client/unstable/io.element.msc4308/thread_subscriptions?dir=b&from=zz", nil), "bad from", 400, "M_INVALID_PARAM")
	features := obj(anon(t, srv, "GET", "/_matrix/client/versions", nil).Body, "unstable_features")
	if features["org.matrix.msc4306"] != true || features["org.matrix.msc4308"] != true {
		t.Errorf("/versions does not advertise org.matrix.msc4306 and org.matrix.msc4308: %v", features)
	}
}

// TestThreadSubscriptionPushRules (MSC4306 push rules, unstable names): the rules start
// disabled, so that a thread reply notifies as before; once a client enables them, a reply in
// a thread the user is not subscribed to does not notify, unless it mentions them; in a subscribed
// thread every reply notifies with a sound, even in a room the user muted; the postcontent
// kind takes no user rules; disabling the unsubscribed_thread rule restores the old
// behaviour.
func TestThreadSubscriptionPushRules(t *testing.T) {
	srv := StartServer(t)
	alice, bob, carol := srv.Register(t, "alice"), srv.Register(t, "bob"), srv.Register(t, "carol")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)
	join(carol, roomID)
	root := alice.Send(roomID, "root")
	txn := 0
	reply := func(content map[string]any) string {
		txn++
		content["msgtype"], content["m.relates_to"] = "m.text", map[string]any{"rel_type": "m.thread", "event_id": root}
		return str(sendTxn(alice, roomID, "m.room.message", fmt.Sprintf("pr%d", txn), content).Body, "event_id")
	}
	// notified returns bob's notification for eventID (nil if none), after a marker message
	// in another room that always notifies has arrived.
	other := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, other)
	notified := func(eventID string) event {
		t.Helper()
		marker := alice.Send(other, "marker")
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			notes := list(bob.MustDo("GET", "/_matrix/client/v3/notifications?limit=50", nil).Body, "notifications")
			found := map[string]event{}
			for _, n := range notes {
				found[evID(obj(n, "event"))] = n
			}
			if found[marker] != nil {
				return found[eventID]
			}
		}
		t.Fatal("the marker message never notified bob")
		return nil
	}

	if n := notified(reply(map[string]any{"body": "rules off"})); n == nil {
		t.Error("with the thread rules disabled (the default), a thread reply did not notify")
	}
	for _, id := range []string{".io.element.msc4306.rule.unsubscribed_thread", ".io.element.msc4306.rule.subscribed_thread"} {
		bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/postcontent/"+id+"/enabled", map[string]any{"enabled": true})
	}
	if n := notified(reply(map[string]any{"body": "unsubscribed"})); n != nil {
		t.Errorf("a reply in an unsubscribed thread notified: %v", n)
	}
	if n := notified(reply(map[string]any{"body": "hey bob", "m.mentions": map[string]any{"user_ids": []string{bob.UserID}}})); n == nil {
		t.Error("a mention in an unsubscribed thread did not notify")
	}
	bob.MustDo("PUT", "/_matrix/client/unstable/io.element.msc4306/rooms/"+esc(roomID)+"/thread/"+esc(root)+"/subscription", map[string]any{})
	bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/room/"+esc(roomID), map[string]any{"actions": []any{}})
	n := notified(reply(map[string]any{"body": "subscribed"}))
	if n == nil {
		t.Fatal("a reply in a subscribed thread of a muted room did not notify")
	}
	if actions, _ := n["actions"].([]any); len(actions) != 2 {
		t.Errorf("actions of a subscribed thread's reply = %v, want notify and a sound", actions)
	}
	if n := notified(alice.Send(roomID, "main timeline, muted room")); n != nil {
		t.Errorf("the muted room's main timeline notified: %v", n)
	}

	expectErr(t, call(bob, "PUT", "/_matrix/client/v3/pushrules/global/postcontent/mine", map[string]any{"actions": []any{"notify"}}),
		"a user rule of kind postcontent", 400, "M_INVALID_PARAM")
	bob.MustDo("DELETE", "/_matrix/client/unstable/io.element.msc4306/rooms/"+esc(roomID)+"/thread/"+esc(root)+"/subscription", nil)
	bob.MustDo("DELETE", "/_matrix/client/v3/pushrules/global/room/"+esc(roomID), nil)
	bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/postcontent/.io.element.msc4306.rule.unsubscribed_thread/enabled", map[string]any{"enabled": false})
	if n := notified(reply(map[string]any{"body": "rule disabled"})); n == nil {
		t.Error("with unsubscribed_thread disabled, a thread reply did not notify")
	}
}
