package e2e

import (
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"
)

// ephemeralRoom starts a server where alice created a public room that bob joined; charlie
// shares no room with them.
func ephemeralRoom(t *testing.T) (s *Server, alice, bob, charlie *Client, roomID string) {
	s = StartServer(t)
	alice, bob, charlie = s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "charlie")
	roomID = alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)
	return s, alice, bob, charlie, roomID
}

// ephemeral returns the ephemeral events of type typ in roomID's join section of a sync.
func ephemeral(r Resp, roomID, typ string) []event {
	return onlyType(list(obj(r.Body, "rooms", "join", roomID, "ephemeral"), "events"), typ)
}

// receiptOf returns the receipt of userID for eventID of receipt type typ in m.receipt
// events, or nil.
func receiptOf(evs []event, eventID, typ, userID string) map[string]any {
	for _, e := range evs {
		if rc := obj(e, "content", eventID, typ, userID); rc != nil {
			return rc
		}
	}
	return nil
}

func receiptPath(roomID, typ, eventID string) string {
	return fmt.Sprintf("/_matrix/client/v3/rooms/%s/receipt/%s/%s", esc(roomID), esc(typ), esc(eventID))
}

func TestEphemeralReceipts(t *testing.T) {
	_, alice, bob, charlie, roomID := ephemeralRoom(t)
	root := alice.Send(roomID, "thread root")
	second := alice.Send(roomID, "second")
	inThread := sendTxn(alice, roomID, "m.room.message", "thread1", map[string]any{
		"msgtype": "m.text", "body": "in the thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root},
	})
	expectOK(t, inThread, "send in thread")
	threadEv := str(inThread.Body, "event_id")
	aliceSync, bobSync := newSyncer(alice, ""), newSyncer(bob, "")
	aliceSync.once(0)
	bobSync.once(0)

	// A public receipt reaches alice, with its ts.
	expectOK(t, call(bob, "POST", receiptPath(roomID, "m.read", root), map[string]any{}), "m.read")
	r := aliceSync.until("bob's m.read", func(r Resp) bool {
		return receiptOf(ephemeral(r, roomID, "m.receipt"), root, "m.read", bob.UserID) != nil
	})
	if rc := receiptOf(ephemeral(r, roomID, "m.receipt"), root, "m.read", bob.UserID); rc["ts"] == nil || rc["ts"].(float64) <= 0 {
		t.Errorf("m.read receipt has no ts: %v", rc)
	}

	// A private receipt reaches bob only; a later public one shows alice's sync has moved past it.
	expectOK(t, call(bob, "POST", receiptPath(roomID, "m.read.private", second), map[string]any{}), "m.read.private")
	bobSync.until("bob's own m.read.private", func(r Resp) bool {
		return receiptOf(ephemeral(r, roomID, "m.receipt"), second, "m.read.private", bob.UserID) != nil
	})
	// A threaded receipt carries its thread_id; an empty body is an unthreaded receipt.
	expectOK(t, call(bob, "POST", receiptPath(roomID, "m.read", threadEv), map[string]any{"thread_id": root}), "threaded m.read")
	var sawPrivate bool
	r = aliceSync.until("bob's threaded m.read", func(r Resp) bool {
		evs := ephemeral(r, roomID, "m.receipt")
		sawPrivate = sawPrivate || receiptOf(evs, second, "m.read.private", bob.UserID) != nil
		return receiptOf(evs, threadEv, "m.read", bob.UserID) != nil
	})
	if sawPrivate {
		t.Errorf("alice saw bob's m.read.private receipt")
	}
	if rc := receiptOf(ephemeral(r, roomID, "m.receipt"), threadEv, "m.read", bob.UserID); str(rc, "thread_id") != root {
		t.Errorf("threaded receipt: thread_id %q, want %q (%v)", str(rc, "thread_id"), root, rc)
	}
	expectOK(t, call(alice, "POST", receiptPath(roomID, "m.read", second), map[string]any{"thread_id": "main"}), "main-thread m.read")
	r = aliceSync.until("alice's own main-thread m.read", func(r Resp) bool {
		return receiptOf(ephemeral(r, roomID, "m.receipt"), second, "m.read", alice.UserID) != nil
	})
	if rc := receiptOf(ephemeral(r, roomID, "m.receipt"), second, "m.read", alice.UserID); str(rc, "thread_id") != "main" {
		t.Errorf("main-thread receipt: thread_id %q, want main", str(rc, "thread_id"))
	}

	// Errors.
	expectErr(t, call(charlie, "POST", receiptPath(roomID, "m.read", root), map[string]any{}), "receipt by a non-member", 403, "M_FORBIDDEN")
	expectErr(t, call(bob, "POST", receiptPath(roomID, "m.read", "$nope:localhost"), map[string]any{}), "receipt for an unknown event", 404, "M_NOT_FOUND")
	expectErr(t, call(bob, "POST", receiptPath(roomID, "m.bogus", root), map[string]any{}), "unknown receipt type", 400, "M_INVALID_PARAM")
	expectErr(t, call(bob, "POST", receiptPath(roomID, "m.read", root), map[string]any{"thread_id": ""}), "empty thread_id", 400, "M_INVALID_PARAM")
	expectErr(t, call(bob, "POST", receiptPath(roomID, "m.fully_read", root), map[string]any{"thread_id": "main"}), "thread_id with m.fully_read", 400, "M_INVALID_PARAM")
	other := charlie.CreateRoom(map[string]any{})
	foreign := charlie.Send(other, "elsewhere")
	expectErr(t, call(bob, "POST", receiptPath(roomID, "m.read", foreign), map[string]any{}), "receipt for another room's event", 404, "M_NOT_FOUND")
}

func TestEphemeralReadMarkers(t *testing.T) {
	_, alice, bob, _, roomID := ephemeralRoom(t)
	first := alice.Send(roomID, "one")
	second := alice.Send(roomID, "two")
	bobSync := newSyncer(bob, "")
	bobSync.once(0)

	expectOK(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/read_markers",
		map[string]any{"m.fully_read": first, "m.read": second}), "read_markers")
	var fullyRead string
	var sawReceipt bool
	bobSync.until("m.fully_read account data and m.read", func(r Resp) bool {
		room := obj(r.Body, "rooms", "join", roomID)
		for _, e := range onlyType(list(obj(room, "account_data"), "events"), "m.fully_read") {
			fullyRead = str(obj(e, "content"), "event_id")
		}
		sawReceipt = sawReceipt || receiptOf(ephemeral(r, roomID, "m.receipt"), second, "m.read", bob.UserID) != nil
		return fullyRead != "" && sawReceipt
	})
	if fullyRead != first {
		t.Errorf("m.fully_read event_id %q, want %q", fullyRead, first)
	}
	// m.fully_read through /receipt moves the same marker; the account data API reads it.
	expectOK(t, call(bob, "POST", receiptPath(roomID, "m.fully_read", second), map[string]any{}), "m.fully_read receipt")
	ad := call(bob, "GET", fmt.Sprintf("/_matrix/client/v3/user/%s/rooms/%s/account_data/m.fully_read", esc(bob.UserID), esc(roomID)), nil)
	if str(ad.Body, "event_id") != second {
		t.Errorf("m.fully_read after /receipt: %s", ad.Raw)
	}
	expectErr(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/read_markers",
		map[string]any{"m.fully_read": "$missing:localhost"}), "read marker at an unknown event", 404, "M_NOT_FOUND")
}

func typingPath(roomID, userID string) string {
	return fmt.Sprintf("/_matrix/client/v3/rooms/%s/typing/%s", esc(roomID), esc(userID))
}

// typers returns the user_ids of the last m.typing event of roomID in a sync, and whether
// there was one.
func typers(r Resp, roomID string) ([]string, bool) {
	evs := ephemeral(r, roomID, "m.typing")
	if len(evs) == 0 {
		return nil, false
	}
	raw, _ := obj(evs[len(evs)-1], "content")["user_ids"].([]any)
	out := []string{}
	for _, u := range raw {
		s, _ := u.(string)
		out = append(out, s)
	}
	return out, true
}

// longPoll starts a /sync with a 10 s timeout in the background, returning its response and
// how long it took.
func longPoll(c *Client, since string) <-chan struct {
	r   Resp
	err error
	d   time.Duration
} {
	ch := make(chan struct {
		r   Resp
		err error
		d   time.Duration
	}, 1)
	go func() {
		start := time.Now()
		r, err := rawDo(c.srv, c.Token, "GET", "/_matrix/client/v3/sync?timeout=10000&since="+url.QueryEscape(since), nil)
		ch <- struct {
			r   Resp
			err error
			d   time.Duration
		}{r, err, time.Since(start)}
	}()
	return ch
}

func TestEphemeralTyping(t *testing.T) {
	_, alice, bob, charlie, roomID := ephemeralRoom(t)
	bobSync := newSyncer(bob, "")
	bobSync.once(0)

	// A long-polling sync returns promptly when alice starts typing.
	poll := longPoll(bob, bobSync.since)
	time.Sleep(300 * time.Millisecond) // let the long-poll start waiting
	expectOK(t, call(alice, "PUT", typingPath(roomID, alice.UserID), map[string]any{"typing": true, "timeout": 30000}), "typing true")
	res := <-poll
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.d > 5*time.Second {
		t.Errorf("long-poll took %v to report typing", res.d)
	}
	bobSync.record(res.r)
	users, ok := typers(res.r, roomID)
	if !ok || !slices.Equal(users, []string{alice.UserID}) {
		users, ok = typers(bobSync.until("alice typing", func(r Resp) bool { _, ok := typers(r, roomID); return ok }), roomID)
	}
	if !ok || !slices.Equal(users, []string{alice.UserID}) {
		t.Fatalf("m.typing user_ids %v, want [alice]", users)
	}

	// Stopping empties the set.
	expectOK(t, call(alice, "PUT", typingPath(roomID, alice.UserID), map[string]any{"typing": false}), "typing false")
	r := bobSync.until("typing stopped", func(r Resp) bool { _, ok := typers(r, roomID); return ok })
	if users, _ := typers(r, roomID); len(users) != 0 {
		t.Errorf("after stop: m.typing user_ids %v, want []", users)
	}

	// A short timeout expires by itself and wakes the long-poll.
	expectOK(t, call(alice, "PUT", typingPath(roomID, alice.UserID), map[string]any{"typing": true, "timeout": 1500}), "typing 1.5 s")
	r = bobSync.until("alice typing again", func(r Resp) bool { _, ok := typers(r, roomID); return ok })
	if users, _ := typers(r, roomID); !slices.Equal(users, []string{alice.UserID}) {
		t.Errorf("m.typing user_ids %v, want [alice]", users)
	}
	poll = longPoll(bob, bobSync.since)
	res = <-poll
	if res.err != nil {
		t.Fatal(res.err)
	}
	bobSync.record(res.r)
	if users, ok := typers(res.r, roomID); !ok || len(users) != 0 {
		t.Errorf("after expiry (%v): m.typing %v (present %v), want []; %s", res.d, users, ok, res.r.Raw)
	}
	if res.d > 5*time.Second {
		t.Errorf("expiry took %v to wake the long-poll", res.d)
	}

	expectErr(t, call(alice, "PUT", typingPath(roomID, bob.UserID), map[string]any{"typing": true}), "typing as another user", 403, "M_FORBIDDEN")
	expectErr(t, call(charlie, "PUT", typingPath(roomID, charlie.UserID), map[string]any{"typing": true}), "typing in a room not joined", 403, "M_FORBIDDEN")
	expectErr(t, call(alice, "PUT", typingPath(roomID, alice.UserID), map[string]any{"timeout": 100}), "typing without typing", 400, "M_MISSING_PARAM", "M_BAD_JSON")
}

func presencePath(userID string) string {
	return "/_matrix/client/v3/presence/" + esc(userID) + "/status"
}

// presenceOf returns the content of the last m.presence event from sender in a sync, or nil.
func presenceOf(r Resp, sender string) map[string]any {
	var out map[string]any
	for _, e := range onlyType(list(obj(r.Body, "presence"), "events"), "m.presence") {
		if str(e, "sender") == sender {
			out = obj(e, "content")
		}
	}
	return out
}

func TestEphemeralPresence(t *testing.T) {
	_, alice, bob, charlie, _ := ephemeralRoom(t)
	bobSync, charlieSync := newSyncer(bob, ""), newSyncer(charlie, "")
	bobSync.once(0)
	charlieSync.once(0)

	expectOK(t, call(alice, "PUT", presencePath(alice.UserID), map[string]any{"presence": "online", "status_msg": "writing tests"}), "set presence")
	r := bobSync.until("alice's presence", func(r Resp) bool { return str(presenceOf(r, alice.UserID), "status_msg") == "writing tests" })
	if c := presenceOf(r, alice.UserID); str(c, "presence") != "online" || c["currently_active"] != true || c["last_active_ago"] == nil {
		t.Errorf("alice's m.presence in bob's sync: %v", c)
	}
	got := call(bob, "GET", presencePath(alice.UserID), nil)
	expectOK(t, got, "bob gets alice's presence")
	if str(got.Body, "presence") != "online" || str(got.Body, "status_msg") != "writing tests" {
		t.Errorf("GET alice's presence: %s", got.Raw)
	}
	if ago, ok := got.Body["last_active_ago"].(float64); !ok || ago < 0 || ago > 60000 {
		t.Errorf("last_active_ago: %s", got.Raw)
	}

	// charlie shares no room: forbidden, and nothing in his sync.
	expectErr(t, call(charlie, "GET", presencePath(alice.UserID), nil), "presence of a stranger", 403, "M_FORBIDDEN")
	for _, r := range []Resp{charlieSync.once(0), charlie.Sync("", "", 0)} {
		if c := presenceOf(r, alice.UserID); c != nil {
			t.Errorf("charlie sees alice's presence: %v", c)
		}
	}

	// Changes keep flowing; only one's own presence may be set.
	expectOK(t, call(alice, "PUT", presencePath(alice.UserID), map[string]any{"presence": "unavailable"}), "set unavailable")
	bobSync.until("alice unavailable", func(r Resp) bool { return str(presenceOf(r, alice.UserID), "presence") == "unavailable" })
	expectErr(t, call(alice, "PUT", presencePath(bob.UserID), map[string]any{"presence": "online"}), "set another user's presence", 403, "M_FORBIDDEN")
	expectErr(t, call(alice, "PUT", presencePath(alice.UserID), map[string]any{"presence": "away"}), "unknown presence", 400, "M_INVALID_PARAM")
	expectErr(t, call(alice, "GET", "/_matrix/client/v3/sync?set_presence=busy", nil), "bad set_presence", 400, "M_INVALID_PARAM")

	// A sync with set_presence=offline changes nothing; the default marks an offline user online.
	expectOK(t, call(charlie, "PUT", presencePath(charlie.UserID), map[string]any{"presence": "offline"}), "charlie offline")
	expectOK(t, call(charlie, "GET", "/_matrix/client/v3/sync?set_presence=offline&timeout=0", nil), "sync set_presence=offline")
	if got := call(charlie, "GET", presencePath(charlie.UserID), nil); str(got.Body, "presence") != "offline" {
		t.Errorf("after set_presence=offline: %s", got.Raw)
	}
	charlie.Sync("", "", 0)
	if got := call(charlie, "GET", presencePath(charlie.UserID), nil); str(got.Body, "presence") != "online" {
		t.Errorf("after a sync: %s", got.Raw)
	}
}
