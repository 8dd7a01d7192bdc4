package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

const delayedPrefix = "/_matrix/client/unstable/org.matrix.msc4140"

// sendDelayed schedules a message with PUT /send?org.matrix.msc4140.delay=ms.
func sendDelayed(c *Client, roomID string, delayMS int64, content any) Resp {
	c.t.Helper()
	return call(c, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/d%d?org.matrix.msc4140.delay=%d",
		esc(roomID), c.txn.Add(1), delayMS), content)
}

// stateDelayed schedules a state event with PUT /state?org.matrix.msc4140.delay=ms.
func stateDelayed(c *Client, roomID, evType, stateKey string, delayMS int64, content any) Resp {
	c.t.Helper()
	return call(c, "PUT", statePath(roomID, evType, stateKey)+fmt.Sprintf("?org.matrix.msc4140.delay=%d", delayMS), content)
}

// mustDelayID checks that r scheduled a delayed event and returns its delay ID.
func mustDelayID(t *testing.T, r Resp, what string) string {
	t.Helper()
	id := str(r.Body, "delay_id")
	if r.Status != 200 || id == "" || r.Body["event_id"] != nil {
		t.Fatalf("%s: %d %s, want {delay_id}", what, r.Status, r.Raw)
	}
	return id
}

// delayed returns the user's delayed events by delay ID, following next_batch.
func delayed(c *Client, status string) map[string]event {
	c.t.Helper()
	out := map[string]event{}
	from := ""
	for {
		q := url.Values{}
		if status != "" {
			q.Set("status", status)
		}
		if from != "" {
			q.Set("from", from)
		}
		r := c.MustDo("GET", delayedPrefix+"/delayed_events?"+q.Encode(), nil)
		for _, d := range list(r.Body, "delayed_events") {
			out[str(d, "delay_id")] = d
		}
		if from = str(r.Body, "next_batch"); from == "" {
			return out
		}
	}
}

// act applies a management action in the per-action form, without an access token.
func act(t *testing.T, s *Server, delayID, action string) Resp {
	t.Helper()
	return anon(t, s, "POST", delayedPrefix+"/delayed_events/"+esc(delayID)+"/"+action, map[string]any{})
}

// timelineBodies returns the room's m.room.message events by body.
func timelineBodies(c *Client, roomID string) map[string][]event {
	c.t.Helper()
	out := map[string][]event{}
	for _, e := range history(c, roomID, 100) {
		if evType(e) == "m.room.message" {
			out[evBody(e)] = append(out[evBody(e)], e)
		}
	}
	return out
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDelayedEvents drives MSC4140: schedule, list, cancel, restart, send now, replacement
// by another user's state write, and the errors.
func TestDelayedEvents(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat",
		"power_level_content_override": map[string]any{"users": map[string]any{bob.UserID: 50}}})
	join(bob, roomID)

	v := anon(t, s, "GET", "/_matrix/client/versions", nil)
	if obj(v.Body, "unstable_features")["org.matrix.msc4140"] != true {
		t.Errorf("/versions does not advertise org.matrix.msc4140: %s", v.Raw)
	}

	t.Run("timeout", func(t *testing.T) {
		before := time.Now().UnixMilli()
		id := mustDelayID(t, sendDelayed(alice, roomID, 1500, map[string]any{"msgtype": "m.text", "body": "timed"}), "schedule")
		d := delayed(alice, "scheduled")[id]
		if d == nil || str(d, "room_id") != roomID || str(d, "type") != "m.room.message" || d["delay"] != float64(1500) ||
			str(obj(d, "content"), "body") != "timed" || d["state_key"] != nil {
			t.Fatalf("scheduled list entry: %v", d)
		}
		if rs, _ := d["running_since"].(float64); int64(rs) < before-1000 {
			t.Errorf("running_since %v before the request (%d)", d["running_since"], before)
		}
		if len(timelineBodies(alice, roomID)["timed"]) != 0 {
			t.Fatal("the delayed event was sent at once")
		}
		waitFor(t, "the delayed event", 10*time.Second, func() bool { return len(timelineBodies(alice, roomID)["timed"]) == 1 })
		ev := timelineBodies(alice, roomID)["timed"][0]
		if ts, _ := ev["origin_server_ts"].(float64); int64(ts) < before+1500 {
			t.Errorf("sent at %v, before its time %d", ev["origin_server_ts"], before+1500)
		}
		if got := str(obj(ev, "unsigned"), "org.matrix.msc4140.delay_id"); got != id {
			t.Errorf("sender's unsigned delay_id = %q, want %q", got, id)
		}
		if obj(ev, "unsigned")["transaction_id"] != nil {
			t.Errorf("a delayed event shows a transaction_id: %v", obj(ev, "unsigned"))
		}
		if got := timelineBodies(bob, roomID)["timed"]; len(got) != 1 || obj(got[0], "unsigned")["org.matrix.msc4140.delay_id"] != nil {
			t.Errorf("bob sees %v, want the event without the delay ID", got)
		}
		waitFor(t, "the finalised entry", 5*time.Second, func() bool { return delayed(alice, "finalised")[id] != nil })
		f := delayed(alice, "finalised")[id]
		if str(f, "event_id") != evID(ev) || str(f, "outcome") != "send" || str(f, "reason") != "delay" {
			t.Errorf("finalised entry: %v, want event %s", f, evID(ev))
		}
		if delayed(alice, "scheduled")[id] != nil {
			t.Error("a sent delayed event is still listed as scheduled")
		}
		g := alice.MustDo("GET", delayedPrefix+"/delayed_events/"+esc(id), nil)
		if str(g.Body, "event_id") != evID(ev) {
			t.Errorf("GET one: %s", g.Raw)
		}
		expectErr(t, bob.Do("GET", delayedPrefix+"/delayed_events/"+esc(id), nil), "GET another user's delayed event", 404, "M_NOT_FOUND")

		// A client's own transaction ID that looks like a delayed event's stays its own.
		own := sendTxn(alice, roomID, "m.room.message", "delayed."+id, map[string]any{"msgtype": "m.text", "body": "mine"})
		expectOK(t, own, "send with a delayed-looking transaction ID")
		if str(own.Body, "event_id") == evID(ev) {
			t.Fatal("a client's transaction ID collided with a delayed event's")
		}
		mine := timelineBodies(alice, roomID)["mine"]
		if len(mine) != 1 || str(obj(mine[0], "unsigned"), "transaction_id") != "delayed."+id || obj(mine[0], "unsigned")["org.matrix.msc4140.delay_id"] != nil {
			t.Errorf("own event's unsigned: %v", mine)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		id := mustDelayID(t, sendDelayed(alice, roomID, 60_000, map[string]any{"msgtype": "m.text", "body": "never"}), "schedule")
		expectOK(t, act(t, s, id, "cancel"), "cancel")
		expectOK(t, act(t, s, id, "cancel"), "cancel again")
		expectErr(t, act(t, s, id, "send"), "send a cancelled one", 409, "M_UNKNOWN")
		expectErr(t, act(t, s, id, "restart"), "restart a cancelled one", 409, "M_UNKNOWN")
		f := delayed(alice, "finalised")[id]
		if str(f, "outcome") != "cancel" || str(f, "reason") != "action" || f["event_id"] != nil {
			t.Errorf("cancelled entry: %v", f)
		}
		expectErr(t, act(t, s, "nosuchdelay", "cancel"), "cancel an unknown delay", 404, "M_NOT_FOUND")
		expectErr(t, act(t, s, id, "explode"), "an unknown action", 400, "M_INVALID_PARAM")
	})

	t.Run("send now", func(t *testing.T) {
		id := mustDelayID(t, sendDelayed(alice, roomID, 60_000, map[string]any{"msgtype": "m.text", "body": "now"}), "schedule")
		// The earlier form: the action in the body (matrix-js-sdk 37 sends it with a token).
		expectOK(t, alice.Do("POST", delayedPrefix+"/delayed_events/"+esc(id), map[string]any{"action": "send"}), "send")
		if got := timelineBodies(alice, roomID)["now"]; len(got) != 1 {
			t.Fatalf("after send: %d events, want 1", len(got))
		}
		expectOK(t, act(t, s, id, "send"), "send again")
		expectErr(t, act(t, s, id, "cancel"), "cancel a sent one", 409, "M_UNKNOWN")
		if got := timelineBodies(alice, roomID)["now"]; len(got) != 1 {
			t.Errorf("after a second send: %d events, want 1", len(got))
		}
		if f := delayed(alice, "finalised")[id]; str(f, "reason") != "action" || str(f, "event_id") == "" {
			t.Errorf("sent-now entry: %v", f)
		}
		expectErr(t, alice.Do("POST", delayedPrefix+"/delayed_events/"+esc(id), map[string]any{}), "action body without action", 400, "M_MISSING_PARAM")
	})

	t.Run("restart", func(t *testing.T) {
		id := mustDelayID(t, sendDelayed(alice, roomID, 4000, map[string]any{"msgtype": "m.text", "body": "heartbeat"}), "schedule")
		time.Sleep(1500 * time.Millisecond)
		restarted := time.Now().UnixMilli()
		expectOK(t, act(t, s, id, "restart"), "restart")
		time.Sleep(3000 * time.Millisecond) // past the first deadline, before the new one
		if got := timelineBodies(alice, roomID)["heartbeat"]; len(got) != 0 {
			t.Fatal("sent at its first deadline despite the restart")
		}
		if d := delayed(alice, "scheduled")[id]; d == nil || int64(d["running_since"].(float64)) < restarted-50 {
			t.Errorf("running_since not moved by the restart: %v", d)
		}
		waitFor(t, "the restarted event", 10*time.Second, func() bool { return len(timelineBodies(alice, roomID)["heartbeat"]) == 1 })
		ev := timelineBodies(alice, roomID)["heartbeat"][0]
		if ts := int64(ev["origin_server_ts"].(float64)); ts < restarted+4000 {
			t.Errorf("sent at %d, before the restarted deadline %d", ts, restarted+4000)
		}
	})

	t.Run("state replaced by another user", func(t *testing.T) {
		const typ = "org.matrix.msc3401.call.member"
		leave := map[string]any{}
		// Element Call's state key for a device's membership; one starting with @ would be
		// alice's alone.
		key := "_" + alice.UserID + "_DEVICE"
		id := mustDelayID(t, stateDelayed(alice, roomID, typ, key, 60_000, leave), "schedule state")
		if d := delayed(alice, "scheduled")[id]; str(d, "state_key") != key {
			t.Errorf("scheduled state entry: %v", d)
		}
		// alice's own write leaves her delayed event alone.
		expectOK(t, putState(alice, roomID, typ, key, map[string]any{"joined": true}), "alice's state")
		if delayed(alice, "scheduled")[id] == nil {
			t.Fatal("alice's own state write cancelled her delayed event")
		}
		expectOK(t, putState(bob, roomID, typ, key, map[string]any{"by": "bob"}), "bob's state")
		f := delayed(alice, "finalised")[id]
		if str(f, "outcome") != "cancel" || str(obj(f, "error"), "org.matrix.msc4140.errcode") != "M_CANCELLED_BY_STATE_UPDATE" {
			t.Fatalf("after bob's write: %v, want cancelled by the state update", f)
		}
		expectErr(t, act(t, s, id, "send"), "send one cancelled by a state update", 409, "M_UNKNOWN")
		if c := stateEvent(alice, roomID, typ, key); str(c.Body, "by") != "bob" {
			t.Errorf("state after: %s", c.Raw)
		}
		// A delayed state event that is due is sent as a state event.
		id = mustDelayID(t, stateDelayed(alice, roomID, typ, key, 300, leave), "schedule state")
		waitFor(t, "the delayed state", 10*time.Second, func() bool { return stateEvent(alice, roomID, typ, key).Body["by"] == nil })
		if f := delayed(alice, "finalised")[id]; str(f, "outcome") != "send" {
			t.Errorf("delayed state entry: %v", f)
		}
	})

	t.Run("newer scheduling endpoint", func(t *testing.T) {
		r := call(alice, "PUT", delayedPrefix+"/rooms/"+esc(roomID)+"/delayed_event/m.room.message/n1",
			map[string]any{"delay": 60_000, "content": map[string]any{"msgtype": "m.text", "body": "newer"}})
		id := mustDelayID(t, r, "PUT delayed_event")
		again := call(alice, "PUT", delayedPrefix+"/rooms/"+esc(roomID)+"/delayed_event/m.room.message/n1",
			map[string]any{"delay": 60_000, "content": map[string]any{"msgtype": "m.text", "body": "newer"}})
		if got := mustDelayID(t, again, "retried PUT delayed_event"); got != id {
			t.Errorf("retried transaction: delay_id %s, want %s", got, id)
		}
		path := fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/retried?org.matrix.msc4140.delay=60000", esc(roomID))
		first := mustDelayID(t, call(alice, "PUT", path, map[string]any{"body": "r"}), "send")
		if second := mustDelayID(t, call(alice, "PUT", path, map[string]any{"body": "r"}), "retried send"); second != first {
			t.Errorf("retried PUT /send: delay_id %s, want %s", second, first)
		}
		expectOK(t, act(t, s, first, "cancel"), "cancel")
		if d := delayed(alice, "")[id]; str(obj(d, "content"), "body") != "newer" {
			t.Errorf("listed: %v", d)
		}
		expectOK(t, act(t, s, id, "cancel"), "cancel")
		expectErr(t, call(alice, "PUT", delayedPrefix+"/rooms/"+esc(roomID)+"/delayed_event/m.room.message/n2",
			map[string]any{"content": map[string]any{}}), "without delay", 400, "M_MISSING_PARAM")
		expectErr(t, call(alice, "PUT", delayedPrefix+"/rooms/"+esc(roomID)+"/delayed_event/m.room.message/n3",
			map[string]any{"delay": 1000, "content": "text"}), "content not an object", 400, "M_BAD_JSON")
	})

	t.Run("errors", func(t *testing.T) {
		for _, q := range []string{"abc", "0", "-5", "1.5"} {
			r := call(alice, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/e%s?org.matrix.msc4140.delay=%s", esc(roomID), q, q),
				map[string]any{"body": "x"})
			expectErr(t, r, "delay="+q, 400, "M_INVALID_PARAM")
		}
		expectErr(t, alice.Do("GET", delayedPrefix+"/delayed_events?status=bogus", nil), "status=bogus", 400, "M_INVALID_PARAM")
		expectErr(t, alice.Do("GET", delayedPrefix+"/delayed_events?from=zzz", nil), "from=zzz", 400, "M_INVALID_PARAM")
		expectErr(t, anon(t, s, "GET", delayedPrefix+"/delayed_events", nil), "list without a token", 401, "M_MISSING_TOKEN")
		for _, q := range []string{"order_by=bogus", "dir=x", "outcome=maybe", "reason=why", "since_ts=end"} {
			expectErr(t, alice.Do("GET", delayedPrefix+"/delayed_events?"+q, nil), q, 400, "M_INVALID_PARAM")
		}
		// The MSC's filters: what subtests above cancelled by action, sent, and in reverse order.
		r := alice.MustDo("GET", delayedPrefix+"/delayed_events?outcome=cancel&room_id="+url.QueryEscape(roomID), nil)
		cancelled := list(r.Body, "delayed_events")
		if len(cancelled) == 0 {
			t.Errorf("outcome=cancel: %s", r.Raw)
		}
		for _, d := range cancelled {
			if str(d, "outcome") != "cancel" || str(d, "reason") != "action" {
				t.Errorf("outcome=cancel listed %v", d)
			}
		}
		sentList := list(alice.MustDo("GET", delayedPrefix+"/delayed_events?outcome=send&order_by=origin_server_ts&dir=b", nil).Body, "delayed_events")
		for i, d := range sentList {
			if str(d, "outcome") != "send" {
				t.Errorf("outcome=send listed %v", d)
			}
			if i > 0 && d["origin_server_ts"].(float64) > sentList[i-1]["origin_server_ts"].(float64) {
				t.Errorf("dir=b: %v after %v", d["origin_server_ts"], sentList[i-1]["origin_server_ts"])
			}
		}
		if len(sentList) < 3 {
			t.Errorf("outcome=send: %d entries, want the 3 or more sent above", len(sentList))
		}
		// Power levels apply when the event is sent: bob (50) may schedule a power levels
		// change, which then fails and is finalised with the error.
		id := mustDelayID(t, stateDelayed(bob, roomID, "m.room.power_levels", "", 200, map[string]any{}), "schedule a forbidden event")
		waitFor(t, "the failed delayed event", 10*time.Second, func() bool { return delayed(bob, "finalised")[id] != nil })
		if f := delayed(bob, "finalised")[id]; str(obj(f, "error"), "errcode") != "M_FORBIDDEN" || f["event_id"] != nil {
			t.Errorf("failed entry: %v", f)
		}
	})
}

// TestDelayedEventLimits checks the configured maximum delay and number of delayed events.
func TestDelayedEventLimits(t *testing.T) {
	s := StartServer(t)
	s.Stop()
	editConfig(t, s, "  max_delay: \"24h\"\n  max_per_user: 100", "  max_delay: \"10s\"\n  max_per_user: 3")
	s.Start()
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)

	r := sendDelayed(alice, roomID, 10_001, map[string]any{"body": "late"})
	expectErr(t, r, "delay over the maximum", 400, "M_UNKNOWN")
	if str(r.Body, "org.matrix.msc4140.errcode") != "M_MAX_DELAY_EXCEEDED" || r.Body["org.matrix.msc4140.max_delay"] != float64(10_000) ||
		r.Body["max_delay"] != float64(10_000) {
		t.Errorf("max delay error: %s", r.Raw)
	}
	var ids []string
	for i := range 3 {
		ids = append(ids, mustDelayID(t, sendDelayed(alice, roomID, int64(5000+i*1000), map[string]any{"body": "ok"}), "schedule"))
	}
	r = sendDelayed(alice, roomID, 1000, map[string]any{"body": "one too many"})
	expectErr(t, r, "over the number of delayed events", 429, "M_LIMIT_EXCEEDED")
	if ra, _ := r.Body["retry_after_ms"].(float64); ra <= 0 || ra > 5000 {
		t.Errorf("retry_after_ms = %v, want the time until the next one is sent", r.Body["retry_after_ms"])
	}
	mustDelayID(t, sendDelayed(bob, roomID, 1000, map[string]any{"body": "bob's own"}), "another user's")

	// A shadow-banned user is answered as usual, and nothing is scheduled.
	root := s.RegisterAdmin(t, "root")
	root.MustDo("POST", "/_synapse/admin/v1/users/"+esc(bob.UserID)+"/shadow_ban", map[string]any{})
	fake := mustDelayID(t, sendDelayed(bob, roomID, 1000, map[string]any{"body": "shadow"}), "shadow-banned schedule")
	if _, ok := delayed(bob, "")[fake]; ok {
		t.Error("a shadow-banned user's delayed event was scheduled")
	}
	expectOK(t, act(t, s, ids[0], "cancel"), "cancel")
	mustDelayID(t, sendDelayed(alice, roomID, 1000, map[string]any{"body": "room again"}), "after a cancel")

	// An address that keeps naming unknown delay IDs is slowed down.
	limited := false
	for i := 0; i < 30 && !limited; i++ {
		r := act(t, s, fmt.Sprintf("guess%d", i), "send")
		if r.Status == 429 {
			expectErr(t, r, "guessing delay IDs", 429, "M_LIMIT_EXCEEDED")
			limited = true
		} else {
			expectErr(t, r, "an unknown delay ID", 404, "M_NOT_FOUND")
		}
	}
	if !limited {
		t.Error("30 unknown delay IDs in a row were all answered 404, never 429")
	}
}

// TestDelayedEventsPaging (MSC4140): past a page of delayed events, dir=f pages with
// next_batch and no prev_batch, dir=b with prev_batch and no next_batch, each in its order.
func TestDelayedEventsPaging(t *testing.T) {
	const n = 55 // more than the server's page of 50
	s := StartServer(t)
	alice := s.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	for i := range n {
		mustDelayID(t, sendDelayed(alice, roomID, int64(3_600_000+i*1000), map[string]any{"msgtype": "m.text", "body": fmt.Sprint(i)}), "schedule")
	}
	for _, dir := range []string{"f", "b"} {
		token, other := "next_batch", "prev_batch"
		if dir == "b" {
			token, other = other, token
		}
		var got []float64
		from, pages := "", 0
		for {
			q := url.Values{"dir": {dir}}
			if from != "" {
				q.Set("from", from)
			}
			r := alice.MustDo("GET", delayedPrefix+"/delayed_events?"+q.Encode(), nil)
			pages++
			if _, ok := r.Body[other]; ok {
				t.Errorf("dir=%s: page %d has %s: %v", dir, pages, other, r.Body[other])
			}
			for _, d := range list(r.Body, "delayed_events") {
				got = append(got, d["running_since"].(float64)+d["delay"].(float64))
			}
			if from = str(r.Body, token); from == "" || pages > 5 {
				break
			}
		}
		if len(got) != n || pages != 2 {
			t.Errorf("dir=%s: %d events in %d pages, want %d in 2", dir, len(got), pages, n)
		}
		for i := 1; i < len(got); i++ {
			if dir == "f" && got[i] < got[i-1] || dir == "b" && got[i] > got[i-1] {
				t.Errorf("dir=%s: send_ts %v after %v", dir, got[i], got[i-1])
				break
			}
		}
	}
}

// TestDelayedEventsSurviveKill schedules many delayed events at random times, kills the
// server (SIGKILL) while they fire and starts it again: each is sent exactly once, none is
// lost, none is early. It logs how late they were.
func TestDelayedEventsSurviveKill(t *testing.T) {
	const n = 200
	const window = 20 * time.Second
	s := StartServer(t)
	s.Stop()
	editConfig(t, s, "  max_per_user: 100", "  max_per_user: 1000")
	s.Start()
	alice := s.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat"})

	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, n)
	for i := range n {
		delay := 2000 + rng.Int64N(int64(window/time.Millisecond))
		ids[i] = mustDelayID(t, sendDelayed(alice, roomID, delay, map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("d%03d", i)}), "schedule")
	}
	due := map[string]int64{} // body -> send time
	sched := delayed(alice, "scheduled")
	for i, id := range ids {
		d := sched[id]
		if d == nil {
			t.Fatalf("delayed event %d not listed", i)
		}
		due[fmt.Sprintf("d%03d", i)] = int64(d["running_since"].(float64) + d["delay"].(float64))
	}

	time.Sleep(7 * time.Second)
	s.Kill()
	killed := time.Now().UnixMilli()
	time.Sleep(time.Second)
	s.Start()
	restarted := time.Now().UnixMilli()

	last := slices.Max(mapValues(due))
	time.Sleep(time.Until(time.UnixMilli(last)))
	var bodies map[string][]event
	waitFor(t, "every delayed event", 20*time.Second, func() bool {
		bodies = timelineBodies(alice, roomID)
		return len(bodies) >= n
	})
	var lateAll, lateNormal []int64
	for body, at := range due {
		evs := bodies[body]
		if len(evs) != 1 {
			t.Errorf("%s sent %d times, want once", body, len(evs))
			continue
		}
		ts := int64(evs[0]["origin_server_ts"].(float64))
		if ts < at {
			t.Errorf("%s sent at %d, %d ms early", body, ts, at-ts)
		}
		lateAll = append(lateAll, ts-at)
		if at < killed-200 || at > restarted+200 {
			lateNormal = append(lateNormal, ts-at) // not due while the server was down
		}
	}
	if len(bodies) != n {
		var extra []string
		for b := range bodies {
			if _, ok := due[b]; !ok {
				extra = append(extra, b)
			}
		}
		t.Errorf("%d distinct messages, want %d (unexpected: %s)", len(bodies), n, strings.Join(extra, ", "))
	}
	if f := delayed(alice, "scheduled"); len(f) != 0 {
		t.Errorf("%d delayed events still scheduled", len(f))
	}
	t.Logf("%d delayed events, server down %d ms (SIGKILL to ready): lateness p50 %d ms, p99 %d ms, max %d ms; "+
		"the %d not due during the downtime: p50 %d ms, p99 %d ms",
		n, restarted-killed, pct(lateAll, 50), pct(lateAll, 99), pct(lateAll, 100), len(lateNormal), pct(lateNormal, 50), pct(lateNormal, 99))
}

func mapValues(m map[string]int64) []int64 {
	out := make([]int64, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// pct is the p-th percentile of xs (nearest rank).
func pct(xs []int64, p int) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)]
}

// TestDelayedStateReplacedOverFederation: a remote user's write of the same state cancels
// a local user's delayed state event, as a local user's does.
func TestDelayedStateReplacedOverFederation(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	const typ = "org.matrix.msc3401.call.member"
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat",
		"power_level_content_override": map[string]any{"events": map[string]any{typ: 0}}})
	if r := joinRoom(bob, roomID, a.Name); r.Status != 200 {
		t.Fatalf("bob joining over federation: %d %s", r.Status, r.Raw)
	}
	key := "_" + alice.UserID + "_DEVICE"
	id := mustDelayID(t, stateDelayed(alice, roomID, typ, key, 60_000, map[string]any{}), "schedule state")
	expectOK(t, putState(bob, roomID, typ, key, map[string]any{"by": "bob"}), "bob's state on his server")
	waitFor(t, "bob's state on alice's server", 30*time.Second, func() bool { return str(stateEvent(alice, roomID, typ, key).Body, "by") == "bob" })
	waitFor(t, "alice's delayed state to be cancelled", 5*time.Second, func() bool { return delayed(alice, "finalised")[id] != nil })
	f := delayed(alice, "finalised")[id]
	if str(f, "outcome") != "cancel" || str(obj(f, "error"), "org.matrix.msc4140.errcode") != "M_CANCELLED_BY_STATE_UPDATE" {
		t.Errorf("after bob's remote write: %v", f)
	}
}
