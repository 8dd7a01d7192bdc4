package e2e

import (
	"fmt"
	"testing"
)

// TestRestartAfterSIGKILL: everything a client was told succeeded survives a crash; tokens,
// sync positions and history stay valid across the restart.
func TestRestartAfterSIGKILL(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")

	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "durable"})
	join(bob, roomID)

	var before []string
	for i := 0; i < 10; i++ {
		sender := alice
		if i%2 == 1 {
			sender = bob
		}
		before = append(before, sender.Send(roomID, fmt.Sprintf("before %d", i)))
	}
	bobSync := newSyncer(bob, "")
	bobSync.once(0)
	bobSync.waitEvent(roomID, before[len(before)-1])
	since := bobSync.since
	seenBefore := len(onlyType(bobSync.tl[roomID], "m.room.message"))

	// Acknowledged right before the crash: must survive it.
	lastBeforeCrash := alice.Send(roomID, "acknowledged just before the crash")
	profile := call(alice, "PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/displayname", map[string]any{"displayname": "Alice Crash"})
	expectOK(t, profile, "set displayname before crash")

	// A stored filter (filter.yaml POST /user/{userId}/filter) outlives the crash.
	fr := call(bob, "POST", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 2}}})
	expectOK(t, fr, "create filter")
	filterID := str(fr.Body, "filter_id")

	// A send whose response the client may have lost in the crash; it retries after restart.
	crashTxn := sendTxn(alice, roomID, "m.room.message", "crash-retry", map[string]any{"msgtype": "m.text", "body": "retried across the crash"})
	expectOK(t, crashTxn, "send before crash")

	srv.Kill()
	srv.Start()

	// Transaction IDs stay idempotent across the restart (client-server-api/_index.md
	// "Transaction identifiers").
	retry := sendTxn(alice, roomID, "m.room.message", "crash-retry", map[string]any{"msgtype": "m.text", "body": "retried across the crash"})
	expectOK(t, retry, "retry after restart")
	if str(retry.Body, "event_id") != str(crashTxn.Body, "event_id") {
		t.Errorf("retry after restart returned %q, before the crash %q", str(retry.Body, "event_id"), str(crashTxn.Body, "event_id"))
	}

	// Tokens survive.
	for _, c := range []*Client{alice, bob} {
		r := whoami(c)
		expectOK(t, r, c.UserID+" whoami after restart")
		if str(r.Body, "user_id") != c.UserID {
			t.Errorf("whoami user_id %q, want %q", str(r.Body, "user_id"), c.UserID)
		}
		if str(r.Body, "device_id") != c.DeviceID {
			t.Errorf("whoami device_id %q, want %q", str(r.Body, "device_id"), c.DeviceID)
		}
	}
	r := call(alice, "GET", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/displayname", nil)
	expectOK(t, r, "get displayname after restart")
	if str(r.Body, "displayname") != "Alice Crash" {
		t.Errorf("displayname after restart %q, want %q", str(r.Body, "displayname"), "Alice Crash")
	}

	// History is intact.
	hist := reversed(paginateBack(alice, roomID, "", 7, nil))
	checkNoDuplicates(t, "history after restart", hist)
	want := append(append([]string{}, before...), lastBeforeCrash, str(crashTxn.Body, "event_id"))
	checkSameIDs(t, "messages after restart", ids(onlyType(hist, "m.room.message")), want)
	if len(hist) == 0 || evType(hist[0]) != "m.room.create" {
		t.Errorf("oldest event after restart is not m.room.create")
	}

	// New events after the restart.
	var after []string
	for i := 0; i < 5; i++ {
		after = append(after, alice.Send(roomID, fmt.Sprintf("after %d", i)))
	}
	after = append(after, bob.Send(roomID, "bob after restart"))

	// Bob resumes from his pre-crash token: no repeats, the acknowledged pre-crash message
	// and the new ones arrive in order.
	bobSync.since = since
	bobSync.waitEvent(roomID, after[len(after)-1])
	msgs := onlyType(bobSync.tl[roomID], "m.room.message")[seenBefore:]
	checkSameIDs(t, "bob's messages after resuming from the pre-crash token", ids(msgs), append([]string{lastBeforeCrash, str(crashTxn.Body, "event_id")}, after...))
	checkNoDuplicates(t, "bob's timeline across the restart", bobSync.tl[roomID])

	// The next_batch issued after the restart also works and is quiet.
	quiet := bobSync.once(0)
	for _, e := range list(obj(quiet.Body, "rooms", "join", roomID, "timeline"), "events") {
		t.Errorf("idle sync returned event %s (%s)", evID(e), evType(e))
	}

	// The filter stored before the crash still exists and applies.
	r = call(bob, "GET", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/filter/"+esc(filterID), nil)
	expectOK(t, r, "GET filter after restart")
	r = bob.Sync("", filterID, 0)
	if n := len(list(obj(r.Body, "rooms", "join", roomID, "timeline"), "events")); n != 2 {
		t.Errorf("initial sync with stored filter (timeline limit 2) after restart: %d timeline events", n)
	}

	// Password login works and the new token works.
	a2 := srv.Login(t, "alice")
	expectOK(t, whoami(a2), "whoami of a device logged in after restart")
	r = loginPassword(t, srv, "alice", "wrong password")
	expectErr(t, r, "login with wrong password after restart", 403, "M_FORBIDDEN")

	// A second crash right after more writes, then a new registration still works.
	tail := bob.Send(roomID, "second crash")
	srv.Kill()
	srv.Start()
	hist = reversed(paginateBack(a2, roomID, "", 50, nil))
	msgIDs := ids(onlyType(hist, "m.room.message"))
	if len(msgIDs) == 0 || msgIDs[len(msgIDs)-1] != tail {
		t.Errorf("message acknowledged before the second crash is missing: last is %v", msgIDs[max(0, len(msgIDs)-1):])
	}
	srv.Register(t, "carol")
}
