package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeGateway plays a push gateway (push gateway API) on loopback: it records the
// notifications it receives and rejects the pushkeys it is told to.
type fakeGateway struct {
	srv    *httptest.Server
	mu     sync.Mutex // guards got and reject
	got    []map[string]any
	reject []string
	ch     chan struct{} // a token per received notification
}

func newFakeGateway(t *testing.T) *fakeGateway {
	g := &fakeGateway{ch: make(chan struct{}, 100)}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/_matrix/push/v1/notify" {
			http.NotFound(w, r)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		var body struct {
			Notification map[string]any `json:"notification"`
		}
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("gateway: bad body %s", raw)
		}
		g.mu.Lock()
		g.got = append(g.got, body.Notification)
		reject := g.reject
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"rejected": append([]string{}, reject...)})
		g.ch <- struct{}{}
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// next waits for the next notification.
func (g *fakeGateway) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case <-g.ch:
	case <-time.After(15 * time.Second):
		t.Fatal("the push gateway received no notification")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.got[len(g.got)-1]
}

// count returns how many notifications the gateway has received.
func (g *fakeGateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.got)
}

// TestPushNotifications: bob registers an HTTP pusher and mutes one room; alice's mention of
// bob reaches the gateway with the spec's fields, a message in the muted room does not; bob's
// /sync counts the notifications until his read receipt, and /notifications lists them.
func TestPushNotifications(t *testing.T) {
	gw := newFakeGateway(t)
	srv := StartServer(t)
	alice, bob, carol := srv.Register(t, "alice"), srv.Register(t, "bob"), srv.Register(t, "carol")
	group := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Group"})
	muted := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	for _, c := range []*Client{bob, carol} {
		join(c, group)
		join(c, muted)
	}

	notifyURL := gw.srv.URL + "/_matrix/push/v1/notify"
	pusher := map[string]any{"kind": "http", "app_id": "org.example.app", "pushkey": "bobkey", "app_display_name": "Example",
		"device_display_name": "phone", "lang": "en", "data": map[string]any{"url": notifyURL, "custom": "kept"}}
	for what, bad := range map[string]map[string]any{
		"no data.url":  {"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A", "device_display_name": "D", "lang": "en", "data": map[string]any{}},
		"bad path":     {"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A", "device_display_name": "D", "lang": "en", "data": map[string]any{"url": gw.srv.URL + "/notify"}},
		"no lang":      {"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A", "device_display_name": "D", "data": map[string]any{"url": notifyURL}},
		"no pushkey":   {"kind": "http", "app_id": "a", "app_display_name": "A", "device_display_name": "D", "lang": "en", "data": map[string]any{"url": notifyURL}},
		"unknown kind": {"kind": "email", "app_id": "a", "pushkey": "k", "app_display_name": "A", "device_display_name": "D", "lang": "en", "data": map[string]any{"url": notifyURL}},
	} {
		if r := bob.Do("POST", "/_matrix/client/v3/pushers/set", bad); r.Status != 400 {
			t.Errorf("pushers/set with %s: %d %s, want 400", what, r.Status, r.Raw)
		}
	}
	bob.MustDo("POST", "/_matrix/client/v3/pushers/set", pusher)
	ps := list(bob.MustDo("GET", "/_matrix/client/v3/pushers", nil).Body, "pushers")
	if len(ps) != 1 || str(ps[0], "pushkey") != "bobkey" || str(ps[0], "kind") != "http" || str(obj(ps[0], "data"), "url") != notifyURL {
		t.Fatalf("GET /pushers = %v", ps)
	}
	bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/room/"+esc(muted), map[string]any{"actions": []any{}})

	// The mention reaches the gateway.
	mention := sendTxn(alice, group, "m.room.message", "m1", map[string]any{"msgtype": "m.text", "body": "bob: lunch?",
		"m.mentions": map[string]any{"user_ids": []string{bob.UserID}}})
	expectOK(t, mention, "send mention")
	mentionID := str(mention.Body, "event_id")
	n := gw.next(t)
	if str(n, "event_id") != mentionID || str(n, "room_id") != group || str(n, "sender") != alice.UserID ||
		str(n, "type") != "m.room.message" || str(n, "prio") != "high" || str(n, "room_name") != "Group" ||
		str(obj(n, "content"), "body") != "bob: lunch?" {
		t.Errorf("notification of the mention: %v", n)
	}
	if unread := obj(n, "counts")["unread"]; unread != float64(1) {
		t.Errorf("counts.unread = %v, want 1", unread)
	}
	devices, _ := n["devices"].([]any)
	if len(devices) != 1 {
		t.Fatalf("devices = %v", n["devices"])
	}
	dev := devices[0].(map[string]any)
	if str(dev, "pushkey") != "bobkey" || str(dev, "app_id") != "org.example.app" || obj(dev, "tweaks")["highlight"] != true ||
		str(obj(dev, "tweaks"), "sound") != "default" || str(obj(dev, "data"), "custom") != "kept" || obj(dev, "data")["url"] != nil {
		t.Errorf("devices[0] = %v", dev)
	}

	// Nothing for the muted room (nor for bob's own message); the next message of the group is the next notification.
	alice.Send(muted, "muted chatter")
	bob.Send(group, "my own message")
	plainID := alice.Send(group, "plain message")
	if n := gw.next(t); str(n, "event_id") != plainID || str(n, "prio") != "low" {
		t.Errorf("second notification %v, want the plain message %s with prio low", n, plainID)
	}
	if c := gw.count(); c != 2 {
		t.Errorf("the gateway received %d notifications, want 2", c)
	}

	// bob's /sync counts them; a read receipt on the latest event clears them.
	counts := func(r Resp, room string) (float64, float64) {
		u := obj(r.Body, "rooms", "join", room, "unread_notifications")
		nc, _ := u["notification_count"].(float64)
		hc, _ := u["highlight_count"].(float64)
		return nc, hc
	}
	bobSync := newSyncer(bob, "")
	r := bobSync.once(0)
	if nc, hc := counts(r, group); nc != 2 || hc != 1 {
		t.Errorf("group counts %v/%v, want 2 notifications, 1 highlight", nc, hc)
	}
	if u := obj(r.Body, "rooms", "join", muted, "unread_notifications"); u["notification_count"] != float64(0) {
		t.Errorf("muted room counts %v, want 0", u)
	}

	notes := list(bob.MustDo("GET", "/_matrix/client/v3/notifications", nil).Body, "notifications")
	if len(notes) != 2 || evID(obj(notes[0], "event")) != plainID || evID(obj(notes[1], "event")) != mentionID ||
		notes[0]["read"] != false || str(notes[1], "room_id") != group {
		t.Errorf("/notifications = %v", notes)
	}
	hl := list(bob.MustDo("GET", "/_matrix/client/v3/notifications?only=highlight", nil).Body, "notifications")
	if len(hl) != 1 || evID(obj(hl[0], "event")) != mentionID {
		t.Errorf("/notifications?only=highlight = %v", hl)
	}
	page := bob.MustDo("GET", "/_matrix/client/v3/notifications?limit=1", nil).Body
	next := str(page, "next_token")
	rest := list(bob.MustDo("GET", "/_matrix/client/v3/notifications?limit=1&from="+next, nil).Body, "notifications")
	if next == "" || len(rest) != 1 || evID(obj(rest[0], "event")) != mentionID {
		t.Errorf("second page from %q = %v", next, rest)
	}

	bob.MustDo("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/receipt/m.read/%s", esc(group), esc(plainID)), map[string]any{})
	bobSync.until("counts cleared by the receipt", func(r Resp) bool {
		u := obj(r.Body, "rooms", "join", group, "unread_notifications")
		return u != nil && u["notification_count"] == float64(0) && u["highlight_count"] == float64(0)
	})
	notes = list(bob.MustDo("GET", "/_matrix/client/v3/notifications", nil).Body, "notifications")
	if len(notes) != 2 || notes[0]["read"] != true || notes[1]["read"] != true {
		t.Errorf("/notifications after the receipt = %v", notes)
	}

	// A pushkey the gateway rejects loses its pusher.
	gw.mu.Lock()
	gw.reject = []string{"bobkey"}
	gw.mu.Unlock()
	alice.Send(group, "one more")
	gw.next(t)
	deadline := time.Now().Add(10 * time.Second)
	for len(list(bob.MustDo("GET", "/_matrix/client/v3/pushers", nil).Body, "pushers")) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the rejected pusher was not removed")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// With unread_thread_notifications, a thread's notifications are counted apart from the
	// main timeline ("one more" above); without it, together. Bob subscribes to the thread
	// first: a reply in a thread he is not subscribed to would not notify (MSC4306).
	bob.MustDo("PUT", "/_matrix/client/unstable/io.element.msc4306/rooms/"+esc(group)+"/thread/"+esc(mentionID)+"/subscription", map[string]any{})
	reply := sendTxn(alice, group, "m.room.message", "t1", map[string]any{"msgtype": "m.text", "body": "in thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": mentionID}})
	expectOK(t, reply, "send thread reply")
	threaded := bob.Sync("", `{"room":{"timeline":{"unread_thread_notifications":true}}}`, 0)
	if nc, _ := counts(threaded, group); nc != 1 {
		t.Errorf("main timeline count with threads apart = %v, want 1", nc)
	}
	th := obj(threaded.Body, "rooms", "join", group, "unread_thread_notifications", mentionID)
	if th["notification_count"] != float64(1) || th["highlight_count"] != float64(0) {
		t.Errorf("thread counts = %v, want 1 notification", obj(threaded.Body, "rooms", "join", group, "unread_thread_notifications"))
	}
	if nc, _ := counts(bob.Sync("", "", 0), group); nc != 2 {
		t.Errorf("room count without the thread filter = %v, want 2", nc)
	}

	// kind null deletes a pusher.
	pusher["pushkey"] = "second"
	bob.MustDo("POST", "/_matrix/client/v3/pushers/set", pusher)
	bob.MustDo("POST", "/_matrix/client/v3/pushers/set", map[string]any{"kind": nil, "app_id": "org.example.app", "pushkey": "second"})
	if ps := list(bob.MustDo("GET", "/_matrix/client/v3/pushers", nil).Body, "pushers"); len(ps) != 0 {
		t.Errorf("pushers after deleting = %v", ps)
	}
}

// TestPushGatewayBlocked: pusher URLs are chosen by users, so a gateway on loopback (or any
// other non-public address) is not reached unless push.gateway_allowed_ip_ranges lets it be;
// the notification is still listed in /notifications.
func TestPushGatewayBlocked(t *testing.T) {
	gw := newFakeGateway(t)
	srv := StartServer(t)
	srv.Stop()
	srv.editConfig(t, gatewayLoopbackAllowed, "gateway_allowed_ip_ranges: []")
	srv.Start()
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "trusted_private_chat", "invite": []string{bob.UserID}, "is_direct": true})
	join(bob, roomID)
	bob.MustDo("POST", "/_matrix/client/v3/pushers/set", map[string]any{"kind": "http", "app_id": "org.example.app", "pushkey": "bobkey",
		"app_display_name": "Example", "device_display_name": "phone", "lang": "en",
		"data": map[string]any{"url": gw.srv.URL + "/_matrix/push/v1/notify"}})
	sent := str(alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/send/m.room.message/b1",
		map[string]any{"msgtype": "m.text", "body": "ping"}).Body, "event_id")
	deadline := time.Now().Add(10 * time.Second)
	for {
		ns := list(bob.MustDo("GET", "/_matrix/client/v3/notifications", nil).Body, "notifications")
		if len(ns) > 0 && str(obj(ns[0], "event"), "event_id") == sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the message never appeared in /notifications: %v", ns)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the pusher's first attempt has long been made by now
	if n := gw.count(); n != 0 {
		t.Fatalf("a gateway on loopback received %d notifications", n)
	}
	if !strings.Contains(srv.Log(), "blocked") {
		t.Errorf("the server log does not say the gateway's address is blocked")
	}
}
