package e2e

import (
	"fmt"
	"net/url"
	"testing"
	"time"
)

// TestDirectChatAndCatchUp: a DM is created and accepted, 50 messages are exchanged and seen
// by both sides through incremental /sync; bob goes offline while 120 messages arrive, then
// catches up with a limited sync plus backwards /messages; a new device reads the whole history.
func TestDirectChatAndCatchUp(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")

	aliceSync := newSyncer(alice, "")
	bobSync := newSyncer(bob, "")
	aliceSync.once(0)
	bobSync.once(0)

	roomID := alice.CreateRoom(map[string]any{
		"is_direct": true,
		"preset":    "trusted_private_chat",
		"invite":    []string{bob.UserID},
	})

	// Bob sees the invite. sync.yaml: rooms.invite.<roomId>.invite_state.events holds stripped
	// state; since v1.16 it must contain m.room.create (client-server-api/_index.md "Stripped state").
	r := bobSync.until("invite to "+roomID, func(r Resp) bool { return obj(r.Body, "rooms", "invite", roomID) != nil })
	inviteState := list(obj(r.Body, "rooms", "invite", roomID, "invite_state"), "events")
	var sawInvite, sawCreate bool
	for _, e := range inviteState {
		switch evType(e) {
		case "m.room.member":
			if str(e, "state_key") == bob.UserID {
				content := obj(e, "content")
				if str(content, "membership") != "invite" {
					t.Errorf("invite_state member event for bob: membership %q, want invite", str(content, "membership"))
				}
				if str(e, "sender") != alice.UserID {
					t.Errorf("invite_state member event sender %q, want %q", str(e, "sender"), alice.UserID)
				}
				// create_room.yaml: is_direct "makes the server set the is_direct flag on the
				// m.room.member events sent to the users in invite".
				if content["is_direct"] != true {
					t.Errorf("invite member event lacks is_direct:true: %v", content)
				}
				sawInvite = true
			}
		case "m.room.create":
			sawCreate = true
		}
		// Stripped state events only have sender, type, state_key and content.
		for k := range e {
			switch k {
			case "sender", "type", "state_key", "content":
			default:
				t.Errorf("stripped state event %s has unexpected key %q", evType(e), k)
			}
		}
	}
	if !sawInvite {
		t.Errorf("invite_state has no m.room.member invite for bob: %s", jsonString(inviteState))
	}
	if !sawCreate {
		t.Errorf("invite_state has no m.room.create (required since v1.16): %s", jsonString(inviteState))
	}

	join(bob, roomID)
	r = bobSync.until("joined "+roomID, func(r Resp) bool { return obj(r.Body, "rooms", "join", roomID) != nil })
	if obj(r.Body, "rooms", "invite", roomID) != nil {
		t.Errorf("room still listed under rooms.invite after join")
	}
	// The sync that brings the join gives bob the room's state (in state or timeline).
	joined := obj(r.Body, "rooms", "join", roomID)
	stateKeys := map[string]bool{}
	for _, e := range append(list(obj(joined, "state"), "events"), list(obj(joined, "timeline"), "events")...) {
		if _, ok := e["state_key"]; ok {
			stateKeys[evType(e)+"|"+str(e, "state_key")] = true
		}
	}
	for _, k := range []string{"m.room.create|", "m.room.power_levels|", "m.room.join_rules|", "m.room.member|" + alice.UserID, "m.room.member|" + bob.UserID} {
		if !stateKeys[k] {
			t.Errorf("bob's first sync after joining lacks state %s; got %v", k, stateKeys)
		}
	}
	// The DM has no m.room.name: the summary's m.heroes is required (sync.yaml RoomSummary),
	// must not include bob himself, and the joined count changed to 2.
	checkDMSummary(t, "bob's join sync", obj(joined, "summary"), alice.UserID, bob.UserID)
	aliceSync.until("bob's join", func(Resp) bool {
		for _, e := range aliceSync.tl[roomID] {
			if evType(e) == "m.room.member" && str(e, "state_key") == bob.UserID && str(obj(e, "content"), "membership") == "join" {
				return true
			}
		}
		return false
	})

	// 50 messages, alternately, each observed by both through incremental syncs.
	var sent []string
	for i := 0; i < 50; i++ {
		sender := alice
		if i%2 == 1 {
			sender = bob
		}
		var id string
		if i == 0 {
			// sync.yaml "timeout": a long-polling /sync returns as soon as an event arrives.
			id = longPollWake(t, bobSync, func() string { return sender.Send(roomID, "chat 0") })
		} else {
			id = sender.Send(roomID, fmt.Sprintf("chat %d", i))
		}
		sent = append(sent, id)
		aliceSync.waitEvent(roomID, id)
		bobSync.waitEvent(roomID, id)
	}
	for _, s := range []*syncer{aliceSync, bobSync} {
		msgs := onlyType(s.tl[roomID], "m.room.message")
		checkSameIDs(t, s.c.UserID+" messages seen via /sync", ids(msgs), sent)
		for i, e := range msgs {
			if i < len(sent) && evBody(e) != fmt.Sprintf("chat %d", i) {
				t.Errorf("%s: message %d has body %q", s.c.UserID, i, evBody(e))
				break
			}
		}
	}

	// Bob goes offline; alice sends 120 more.
	stored := bobSync.since
	var offline []string
	for i := 0; i < 120; i++ {
		offline = append(offline, alice.Send(roomID, fmt.Sprintf("offline %d", i)))
	}

	// Bob resumes with a timeline limit of 10: the room is limited, shows the 10 newest.
	r = bob.Sync(stored, `{"room":{"timeline":{"limit":10}}}`, 0)
	tl := obj(r.Body, "rooms", "join", roomID, "timeline")
	if tl == nil {
		t.Fatalf("resumed sync has no timeline for %s: %.2000s", roomID, r.Raw)
	}
	if tl["limited"] != true {
		t.Errorf("resumed sync: timeline.limited = %v, want true", tl["limited"])
	}
	latest := list(tl, "events")
	checkSameIDs(t, "resumed sync timeline (10 newest)", ids(latest), offline[len(offline)-10:])
	prevBatch := str(tl, "prev_batch")
	if prevBatch == "" {
		t.Fatalf("resumed limited sync has no prev_batch: %s", jsonString(tl))
	}
	for _, e := range latest {
		if bobSync.seen[evID(e)] {
			t.Errorf("resumed sync repeats already-seen event %s", evID(e))
		}
	}

	// Fill the gap backwards until reaching an event bob already had.
	gap := paginateBack(bob, roomID, prevBatch, 25, func(e event) bool { return bobSync.seen[evID(e)] })
	caughtUp := append(reversed(gap), latest...)
	t.Logf("catch-up: %d events from /messages + %d from the limited sync", len(gap), len(latest))
	checkNoDuplicates(t, "bob catch-up", caughtUp)
	checkSameIDs(t, "bob catch-up messages", ids(onlyType(caughtUp, "m.room.message")), offline)

	// A third device of bob reads the whole history from an initial sync.
	bob3 := srv.Login(t, "bob")
	r = bob3.Sync("", "", 0)
	tl = obj(r.Body, "rooms", "join", roomID, "timeline")
	if tl == nil {
		t.Fatalf("new device initial sync has no timeline for %s: %.2000s", roomID, r.Raw)
	}
	checkDMSummary(t, "new device's initial sync", obj(r.Body, "rooms", "join", roomID, "summary"), alice.UserID, bob.UserID)
	recent := list(tl, "events")
	var older []event
	if pb := str(tl, "prev_batch"); pb != "" {
		older = paginateBack(bob3, roomID, pb, 40, nil)
	} else if tl["limited"] == true {
		t.Errorf("limited initial sync without prev_batch")
	}
	history := append(reversed(older), recent...)
	t.Logf("new device: %d events in the initial sync, %d from /messages, %d in all", len(recent), len(older), len(history))
	checkNoDuplicates(t, "full history", history)
	all := append(append([]string{}, sent...), offline...)
	checkSameIDs(t, "full history messages", ids(onlyType(history, "m.room.message")), all)
	if len(history) == 0 || evType(history[0]) != "m.room.create" {
		first := ""
		if len(history) > 0 {
			first = evType(history[0])
		}
		t.Errorf("oldest event in history is %q, want m.room.create", first)
	}
	types := map[string]int{}
	members := map[string]bool{}
	for _, e := range history {
		types[evType(e)]++
		if evType(e) == "m.room.member" {
			members[str(e, "state_key")+"/"+str(obj(e, "content"), "membership")] = true
		}
	}
	for _, typ := range []string{"m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility"} {
		if types[typ] == 0 {
			t.Errorf("history lacks %s", typ)
		}
	}
	if types["m.room.create"] != 1 {
		t.Errorf("history has %d m.room.create events, want 1", types["m.room.create"])
	}
	for _, m := range []string{alice.UserID + "/join", bob.UserID + "/invite", bob.UserID + "/join"} {
		if !members[m] {
			t.Errorf("history lacks member event %s", m)
		}
	}
}

// longPollWake starts a /sync with a 20 s timeout for s's client, calls send while it waits and
// checks the sync returns well before its timeout. It returns send's event ID.
func longPollWake(t *testing.T, s *syncer, send func() string) string {
	t.Helper()
	type result struct {
		r    Resp
		err  error
		took time.Duration
	}
	ch := make(chan result, 1)
	q := url.Values{"since": {s.since}, "timeout": {"20000"}}
	if s.filter != "" {
		q.Set("filter", s.filter)
	}
	go func() {
		start := time.Now()
		r, err := rawDo(s.c.srv, s.c.Token, "GET", "/_matrix/client/v3/sync?"+q.Encode(), nil)
		ch <- result{r, err, time.Since(start)}
	}()
	time.Sleep(300 * time.Millisecond)
	id := send()
	var res result
	select {
	case res = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("long-poll /sync did not return")
	}
	if res.err != nil || res.r.Status != 200 {
		t.Fatalf("long-poll /sync: %v %d %s", res.err, res.r.Status, res.r.Raw)
	}
	if res.took > 10*time.Second {
		t.Errorf("long-poll /sync took %v to report a new event (timeout was 20 s)", res.took)
	}
	s.record(res.r)
	return id
}

// checkDMSummary checks a joined room's summary for a two-person room without a name.
func checkDMSummary(t *testing.T, what string, summary map[string]any, other, self string) {
	t.Helper()
	heroes, _ := summary["m.heroes"].([]any)
	if len(heroes) != 1 || heroes[0] != other {
		t.Errorf("%s: summary m.heroes = %v, want [%s] (summary %s)", what, summary["m.heroes"], other, jsonString(summary))
	}
	for _, h := range heroes {
		if h == self {
			t.Errorf("%s: m.heroes includes the user's own ID", what)
		}
	}
	if n, ok := summary["m.joined_member_count"].(float64); !ok || n != 2 {
		t.Errorf("%s: summary m.joined_member_count = %v, want 2", what, summary["m.joined_member_count"])
	}
}
