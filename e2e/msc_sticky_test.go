package e2e

import (
	"fmt"
	"testing"
	"time"
)

const stickyParam = "org.matrix.msc4354.sticky_duration_ms"

// sendSticky sends an event with PUT /send?org.matrix.msc4354.sticky_duration_ms=duration.
func sendSticky(c *Client, roomID, evType, duration string, content any) Resp {
	c.t.Helper()
	return call(c, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/%s/s%d?%s=%s",
		esc(roomID), esc(evType), c.txn.Add(1), stickyParam, duration), content)
}

// stickySection returns the sticky events (MSC4354's msc4354_sticky section) of roomID in
// a /sync response, by event ID.
func stickySection(r Resp, roomID string) map[string]event {
	out := map[string]event{}
	for _, e := range list(obj(r.Body, "rooms", "join", roomID, "msc4354_sticky"), "events") {
		out[evID(e)] = e
	}
	return out
}

// timelineIDs returns the event IDs of roomID's timeline in a /sync response.
func timelineIDs(r Resp, roomID string) map[string]bool {
	out := map[string]bool{}
	for _, e := range list(obj(r.Body, "rooms", "join", roomID, "timeline"), "events") {
		out[evID(e)] = true
	}
	return out
}

// TestStickyEvents drives MSC4354 through its unstable names: a sticky event is delivered
// in another member's /sync sticky section, initial and incremental, past the timeline limit
// and only while it is sticky; the duration is capped at an hour; bad durations are refused.
func TestStickyEvents(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)

	v := anon(t, s, "GET", "/_matrix/client/versions", nil)
	if obj(v.Body, "unstable_features")["org.matrix.msc4354"] != true {
		t.Errorf("/versions does not advertise org.matrix.msc4354: %s", v.Raw)
	}

	const one = `{"room":{"timeline":{"limit":1}}}`
	since0 := str(bob.Sync("", one, 0).Body, "next_batch")

	// A 4 s sticky event, then enough messages to push it out of a one-event timeline.
	sent := time.Now()
	r := sendSticky(alice, roomID, "org.example.member", "4000", map[string]any{"msc4354_sticky_key": "laptop"})
	expectOK(t, r, "send sticky")
	stickyID := str(r.Body, "event_id")
	for i := 0; i < 3; i++ {
		alice.Send(roomID, fmt.Sprintf("after %d", i))
	}

	ev := alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(stickyID), nil)
	if d := obj(ev.Body, "msc4354_sticky")["duration_ms"]; d != float64(4000) {
		t.Errorf("event's msc4354_sticky.duration_ms = %v, want 4000: %s", d, ev.Raw)
	}

	checkSticky := func(what string, r Resp) {
		t.Helper()
		e := stickySection(r, roomID)[stickyID]
		if e == nil {
			t.Fatalf("%s: sticky event %s not in the sticky section: %.3000s", what, stickyID, r.Raw)
		}
		if timelineIDs(r, roomID)[stickyID] {
			t.Errorf("%s: sticky event both in the timeline and the sticky section", what)
		}
		if obj(e, "msc4354_sticky")["duration_ms"] != float64(4000) || str(e, "type") != "org.example.member" ||
			str(obj(e, "content"), "msc4354_sticky_key") != "laptop" || str(e, "sender") != alice.UserID {
			t.Errorf("%s: sticky event %v", what, e)
		}
		ttl, ok := obj(e, "unsigned")["msc4354_sticky_duration_ttl_ms"].(float64)
		if left := 4000 - time.Since(sent).Milliseconds(); !ok || ttl <= 0 || ttl > 4000 || ttl < float64(left-1000) {
			t.Errorf("%s: unsigned.msc4354_sticky_duration_ttl_ms = %v, want about %d", what, ttl, left)
		}
	}

	// Incremental, with the sticky event outside the limited timeline.
	inc := bob.Sync(since0, one, 0)
	checkSticky("incremental sync", inc)
	// Stream-like: the next incremental sync does not repeat it.
	if got := stickySection(bob.Sync(str(inc.Body, "next_batch"), one, 0), roomID); len(got) != 0 {
		t.Errorf("the sticky event came again in the next incremental sync: %v", got)
	}
	// Initial sync: every event still sticky.
	checkSticky("initial sync", bob.Sync("", one, 0))
	// Within the timeline it is not repeated in the sticky section, and keeps its sticky key.
	full := bob.Sync(since0, "", 0)
	if !timelineIDs(full, roomID)[stickyID] || stickySection(full, roomID)[stickyID] != nil {
		t.Errorf("with a timeline holding the sticky event: timeline %v, sticky section %v",
			timelineIDs(full, roomID), stickySection(full, roomID))
	}
	for _, e := range list(obj(full.Body, "rooms", "join", roomID, "timeline"), "events") {
		if evID(e) != stickyID {
			continue
		}
		if obj(e, "msc4354_sticky")["duration_ms"] != float64(4000) {
			t.Errorf("timeline copy of the sticky event lacks msc4354_sticky: %v", e)
		}
		if ttl, _ := obj(e, "unsigned")["msc4354_sticky_duration_ttl_ms"].(float64); ttl <= 0 || ttl > 4000 {
			t.Errorf("timeline copy of the sticky event: unsigned.msc4354_sticky_duration_ttl_ms = %v", ttl)
		}
	}

	// A duration above an hour is capped to an hour.
	r = sendSticky(alice, roomID, "org.example.member", "7200000", map[string]any{})
	expectOK(t, r, "send sticky for two hours")
	longID := str(r.Body, "event_id")
	ev = alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(longID), nil)
	if d := obj(ev.Body, "msc4354_sticky")["duration_ms"]; d != float64(3600000) {
		t.Errorf("two hours: msc4354_sticky.duration_ms = %v, want 3600000", d)
	}
	alice.Send(roomID, "after the long one")

	// Once expired, the first event is no longer delivered as sticky; the capped one still is.
	time.Sleep(time.Until(sent.Add(4500 * time.Millisecond)))
	for what, r := range map[string]Resp{"initial sync": bob.Sync("", one, 0), "incremental sync": bob.Sync(since0, one, 0)} {
		got := stickySection(r, roomID)
		if got[stickyID] != nil {
			t.Errorf("%s after expiry: the expired event is still in the sticky section", what)
		}
		if got[longID] == nil {
			t.Errorf("%s: the hour-long sticky event is missing: %v", what, got)
		}
	}

	// A user who joins later gets the unexpired sticky events in the sync after the join,
	// whatever the history visibility.
	alice.MustDo("PUT", statePath(roomID, "m.room.history_visibility", ""), map[string]any{"history_visibility": "joined"})
	charlie := s.Register(t, "charlie")
	cSince := str(charlie.Sync("", one, 0).Body, "next_batch")
	join(charlie, roomID)
	alice.Send(roomID, "welcome")
	if got := stickySection(charlie.Sync(cSince, one, 0), roomID); got[longID] == nil || got[stickyID] != nil {
		t.Errorf("charlie's sync after joining: sticky section %v, want %s only", got, longID)
	}
	// A redacted sticky event is sticky no more.
	expectOK(t, call(alice, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/redact/%s/r1", esc(roomID), esc(longID)), map[string]any{}), "redact")
	if got := stickySection(bob.Sync("", one, 0), roomID); got[longID] != nil {
		t.Errorf("a redacted sticky event is still in the sticky section")
	}

	ev = alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(stickyID), nil)
	if ttl, ok := obj(ev.Body, "unsigned")["msc4354_sticky_duration_ttl_ms"]; ok {
		t.Errorf("an expired sticky event still has unsigned.msc4354_sticky_duration_ttl_ms = %v", ttl)
	}

	// Bad durations.
	for _, d := range []string{"-1", "abc", "1.5", ""} {
		expectErr(t, sendSticky(alice, roomID, "org.example.member", d, map[string]any{}), "duration "+d, 400, "M_INVALID_PARAM")
	}
	expectErr(t, call(alice, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/sd?%s=-5&org.matrix.msc4140.delay=1000",
		esc(roomID), stickyParam), map[string]any{}), "delayed with a bad duration", 400, "M_INVALID_PARAM")

	// Sticky delayed events (MSC4354 with MSC4140, as MatrixRTC's leave event): both
	// scheduling forms; the event is sticky once sent.
	bs := newSyncer(bob, "")
	bs.once(0)
	d1 := mustDelayID(t, call(alice, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/org.example.member/sd1?%s=600000&org.matrix.msc4140.delay=500",
		esc(roomID), stickyParam), map[string]any{"msc4354_sticky_key": "leave1"}), "sticky delayed via /send")
	d2 := mustDelayID(t, call(alice, "PUT", fmt.Sprintf("%s/rooms/%s/delayed_event/org.example.member/sd2?%s=700000",
		delayedPrefix, esc(roomID), stickyParam), map[string]any{"delay": 500, "content": map[string]any{"msc4354_sticky_key": "leave2"}}), "sticky delayed_event")
	want := map[string]float64{d1: 600000, d2: 700000}
	bs.until("the sticky delayed events", func(Resp) bool {
		n := 0
		for _, e := range bs.tl[roomID] {
			if id := str(obj(e, "content"), "msc4354_sticky_key"); id == "leave1" || id == "leave2" {
				n++
			}
		}
		return n == 2
	})
	for _, e := range bs.tl[roomID] {
		key := str(obj(e, "content"), "msc4354_sticky_key")
		d := map[string]string{"leave1": d1, "leave2": d2}[key]
		if d == "" {
			continue
		}
		if got := obj(e, "msc4354_sticky")["duration_ms"]; got != want[d] {
			t.Errorf("delayed event %s sent with msc4354_sticky.duration_ms %v, want %v", key, got, want[d])
		}
	}
}

// TestStickyEventsFederation checks that a sticky event sent on one Lattice is accepted by
// another (its hashes and signatures cover the sticky key) and delivered there in the
// sticky section while it is sticky.
func TestStickyEventsFederation(t *testing.T) {
	ca := newTestCA(t)
	a, b := startFederatedServer(t, ca), startFederatedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	expectOK(t, joinRoom(bob, roomID, a.Name), "bob joins over federation")

	r := sendSticky(alice, roomID, "org.example.member", "600000", map[string]any{"msc4354_sticky_key": "phone"})
	expectOK(t, r, "send sticky")
	stickyID := str(r.Body, "event_id")
	last := say(alice, roomID, "after")
	bs := newSyncer(bob, "")
	bs.waitEvent(roomID, last)
	if !bs.seen[stickyID] {
		t.Fatalf("bob's server did not accept the sticky event %s", stickyID)
	}
	for _, e := range bs.tl[roomID] {
		if evID(e) == stickyID && obj(e, "msc4354_sticky")["duration_ms"] != float64(600000) {
			t.Errorf("the federated sticky event lost its msc4354_sticky: %v", e)
		}
	}
	e := stickySection(bob.Sync("", `{"room":{"timeline":{"limit":1}}}`, 0), roomID)[stickyID]
	if e == nil {
		t.Fatal("bob's initial sync has no sticky section with the federated sticky event")
	}
	if ttl, _ := obj(e, "unsigned")["msc4354_sticky_duration_ttl_ms"].(float64); ttl <= 500000 || ttl > 600000 {
		t.Errorf("federated sticky event's ttl = %v, want just under 600000", ttl)
	}
}

// TestStickyEventsSlidingSync drives MSC4480's sliding sync extension under its unstable name
// org.matrix.msc4354.sticky_events: sticky events outside the timeline, the since/next_batch
// stream and the limit.
func TestStickyEventsSlidingSync(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)
	const ext = "org.matrix.msc4354.sticky_events"
	body := func(extCfg map[string]any) map[string]any {
		b := allRooms(9, 1)
		b["extensions"] = map[string]any{ext: extCfg}
		return b
	}
	extEvents := func(r Resp) []string {
		var out []string
		for _, e := range list(obj(r.Body, "extensions", ext, "rooms", roomID), "events") {
			out = append(out, evID(e))
			if ttl, _ := obj(e, "unsigned")["msc4354_sticky_duration_ttl_ms"].(float64); ttl <= 0 {
				t.Errorf("extension event %s without unsigned.msc4354_sticky_duration_ttl_ms: %v", evID(e), e)
			}
		}
		return out
	}
	stickyNow := func(key string) string {
		r := sendSticky(alice, roomID, "org.example.member", "600000", map[string]any{"msc4354_sticky_key": key})
		expectOK(t, r, "send sticky "+key)
		return str(r.Body, "event_id")
	}

	first := stickyNow("a")
	alice.Send(roomID, "after a")
	r := slidingOK(t, bob, "", 0, body(map[string]any{"enabled": true}))
	if got := extEvents(r); len(got) != 1 || got[0] != first {
		t.Fatalf("new connection: extension events %v, want [%s]: %.3000s", got, first, r.Raw)
	}
	since := str(obj(r.Body, "extensions", ext), "next_batch")
	if since == "" {
		t.Fatalf("no next_batch: %s", r.Raw)
	}
	pos := str(r.Body, "pos")

	// Stream-like: nothing new, nothing sent; then only the new sticky events, up to the limit.
	second, third := stickyNow("b"), stickyNow("c")
	alice.Send(roomID, "after c")
	r = slidingOK(t, bob, pos, 0, body(map[string]any{"enabled": true, "since": since, "limit": 1}))
	if got := extEvents(r); len(got) != 1 || got[0] != second {
		t.Fatalf("limit 1: extension events %v, want [%s]: %.3000s", got, second, r.Raw)
	}
	since, pos = str(obj(r.Body, "extensions", ext), "next_batch"), str(r.Body, "pos")
	r = slidingOK(t, bob, pos, 0, body(map[string]any{"enabled": true, "since": since}))
	if got := extEvents(r); len(got) != 1 || got[0] != third {
		t.Fatalf("after the limit: extension events %v, want [%s]: %.3000s", got, third, r.Raw)
	}
	since, pos = str(obj(r.Body, "extensions", ext), "next_batch"), str(r.Body, "pos")
	alice.Send(roomID, "plain")
	r = slidingOK(t, bob, pos, 0, body(map[string]any{"enabled": true, "since": since}))
	if got := extEvents(r); len(got) != 0 {
		t.Errorf("no new sticky event: extension events %v", got)
	}
	expectErr(t, slidingSync(bob, str(r.Body, "pos"), 0, body(map[string]any{"enabled": true, "since": "x"})), "bad since", 400, "M_INVALID_PARAM")
}
