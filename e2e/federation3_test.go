package e2e

// End-to-end federation between three Lattice processes (A, B, C) over real TLS, each behind
// a partitionable TCP proxy whose address is its server name (fedharness_test.go), and a
// fake homeserver that sends bad PDUs.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// threeServers is the shared state of TestFederationThreeServers' subtests.
type threeServers struct {
	ca                *testCA
	a, b, c           *fedNode
	alice, bob, carol *Client  // on A, B, C; alice created the rooms
	room1             string   // public room on A with alias #fed3:A
	chain             []string // room1's messages sent one after another, in order
	allJoined         bool     // alice, bob and carol are all joined to room1 on all servers
}

// TestFederationThreeServers is the end-to-end proof of federation: joins by alias and by
// room ID, an invite across servers, messages in every direction with one order, delivery
// to a server that crashed, backfill for a late joiner, and state resolution after a
// partition during which two servers changed the same state.
func TestFederationThreeServers(t *testing.T) {
	ca := newTestCA(t)
	st := &threeServers{ca: ca}
	// Names in the order C < B < A: a server that picks peers in name order (for backfill, say)
	// then asks C first, which joined room1 last and lacks its early history.
	proxies := []*fedProxy{startFedProxy(t), startFedProxy(t), startFedProxy(t)}
	sort.Slice(proxies, func(i, j int) bool { return proxies[i].Addr() < proxies[j].Addr() })
	st.c = startServerBehind(t, ca, proxies[0])
	st.b = startServerBehind(t, ca, proxies[1])
	st.a = startServerBehind(t, ca, proxies[2])
	t.Logf("A=%s (federation on %s), B=%s (%s), C=%s (%s)", st.a.Name, st.a.FedAddr, st.b.Name, st.b.FedAddr, st.c.Name, st.c.FedAddr)
	st.alice = st.a.Register(t, "alice")
	st.bob = st.b.Register(t, "bob")
	st.carol = st.c.Register(t, "carol")

	if !t.Run("harness", st.testHarness) {
		t.Fatal("the harness does not work; the scenarios would prove nothing")
	}
	t.Run("1 joins, invite and messages", st.testJoinsAndMessages)
	t.Run("2 C crashes and catches up", func(t *testing.T) {
		if !st.allJoined {
			t.Skip("needs subtest 1 (everyone in room1)")
		}
		st.testCrashCatchUp(t)
	})
	t.Run("3 late joiner backfills", st.testLateJoiner)
	t.Run("4 partition and state resolution", func(t *testing.T) {
		if !st.allJoined {
			t.Skip("needs subtest 1 (everyone in room1)")
		}
		st.testPartition(t)
	})
	t.Run("5 typing and receipts across servers", func(t *testing.T) {
		if !st.allJoined {
			t.Skip("needs subtest 1 (everyone in room1)")
		}
		st.testEDUs(t)
	})
}

// testHarness checks the harness itself: each server answers GET /_matrix/federation/v1/version
// over TLS through its proxy; a partition refuses new connections and closes open ones; a
// heal restores them.
func (st *threeServers) testHarness(t *testing.T) {
	client := fedHTTPClient(st.ca)
	for _, n := range []*fedNode{st.a, st.b, st.c} {
		if err := fedVersion(client, n.Name); err != nil {
			t.Fatalf("version of %s through its proxy: %v", n.Name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open, err := dialThrough(ctx, st.ca, st.b.Name)
	if err != nil {
		t.Fatalf("TLS connection through B's proxy: %v", err)
	}
	defer open.Close()
	st.b.Proxy.Partition()
	if err := fedVersion(client, st.b.Name); err == nil {
		t.Errorf("B answered through its partitioned proxy")
	}
	_ = open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := open.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("a connection open through B's proxy survived the partition: read %d bytes, %v", n, err)
	}
	if err := fedVersion(client, st.a.Name); err != nil {
		t.Errorf("A unreachable while only B is partitioned: %v", err)
	}
	st.b.Proxy.Heal()
	if err := fedVersion(client, st.b.Name); err != nil {
		t.Errorf("B after healing: %v", err)
	}
}

// testJoinsAndMessages: bob (B) joins room1 by alias and room2 by ID with ?via=, leaves
// room2 and joins it again; carol (C) is invited by alice, sees the invite in /sync and
// joins; messages sent one after another by the three arrive everywhere and in the same
// order; a concurrent burst arrives everywhere.
func (st *threeServers) testJoinsAndMessages(t *testing.T) {
	alice, bob, carol := rebind(st.alice, t), rebind(st.bob, t), rebind(st.carol, t)
	aName := st.a.Name

	room1 := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "fed3", "name": "Three servers"})
	st.room1 = room1
	alias := "#fed3:" + aName
	r := joinRoom(bob, alias)
	if r.Status != 200 || str(r.Body, "room_id") != room1 {
		t.Fatalf("bob on B joining %s (room %s on A): %d %s, want 200 with that room_id", alias, room1, r.Status, r.Raw)
	}

	room2 := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "By ID"})
	r = joinRoom(bob, room2, aName)
	if r.Status != 200 || str(r.Body, "room_id") != room2 {
		t.Errorf("bob on B joining %s by ID with via=%s: %d %s, want 200", room2, aName, r.Status, r.Raw)
	} else {
		waitMembership(t, alice, room2, bob.UserID, "join")
		if r := call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room2)+"/leave", map[string]any{}); r.Status != 200 {
			t.Errorf("bob leaving %s: %d %s", room2, r.Status, r.Raw)
		} else {
			waitMembership(t, alice, room2, bob.UserID, "leave")
			// B has no joined user left: joining again needs make_join/send_join again.
			r = joinRoom(bob, room2, aName)
			if r.Status != 200 {
				t.Errorf("bob joining %s again after leaving, via=%s: %d %s, want 200", room2, aName, r.Status, r.Raw)
			} else {
				waitMembership(t, alice, room2, bob.UserID, "join")
			}
		}
	}

	carols := newSyncer(carol, bigTimeline)
	carols.once(0)
	if !inviteAndJoin(t, alice, carol, carols, room1) {
		// Keep going with a join by ID, so that the later steps still say something.
		if r = joinRoom(carol, room1, aName); r.Status != 200 {
			t.Fatalf("carol joining %s with via=%s (the invite having failed): %d %s", room1, aName, r.Status, r.Raw)
		}
	}

	everyone := []*Client{alice, bob, carol}
	for _, c := range everyone {
		ok, last := poll(30*time.Second, 200*time.Millisecond, func() (bool, string) {
			m, r := joinedMembers(c, room1)
			return m[alice.UserID] && m[bob.UserID] && m[carol.UserID], string(r.Raw)
		})
		if !ok {
			t.Fatalf("%s's server never listed alice, bob and carol as joined to %s (30 s); last joined_members: %s", c.UserID, room1, last)
		}
	}
	st.allJoined = true

	syncers := map[*Client]*syncer{alice: newSyncer(alice, bigTimeline), bob: newSyncer(bob, bigTimeline), carol: carols}
	for _, c := range []*Client{alice, bob} {
		syncers[c].once(0)
	}
	// One after another: each message is sent once the two other servers have it, so the
	// room's DAG is a chain and its order is the same everywhere.
	var chain []string
	for round := 0; round < 3; round++ {
		for _, c := range everyone {
			id := say(c, room1, fmt.Sprintf("chain %d from %s", round, c.UserID))
			chain = append(chain, id)
			for _, other := range everyone {
				if other == c {
					continue
				}
				if missing := syncUntilSeen(t, syncers[other], []string{id}, 30*time.Second); len(missing) > 0 {
					t.Fatalf("%s's message %s (round %d) never reached %s's /sync on %s (30 s); last sync: %.1500s",
						c.UserID, id, round, other.UserID, other.srv.Name, syncers[other].last.Raw)
				}
			}
		}
	}
	st.chain = chain

	// A concurrent burst: 5 messages from each server at once.
	var mu sync.Mutex
	var burst []string
	var wg sync.WaitGroup
	var sendErrs []error
	for _, c := range everyone {
		wg.Add(1)
		go func(c *Client) {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				id, err := trySay(c, room1, fmt.Sprintf("burst %d from %s", i, c.UserID))
				mu.Lock()
				if err != nil {
					sendErrs = append(sendErrs, err)
				} else {
					burst = append(burst, id)
				}
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	for _, err := range sendErrs {
		t.Errorf("burst: %v", err)
	}
	for _, c := range everyone {
		if missing := syncUntilSeen(t, syncers[c], burst, 30*time.Second); len(missing) > 0 {
			t.Errorf("%s on %s: %d of the %d burst messages never arrived in /sync (30 s): %v", c.UserID, c.srv.Name, len(missing), len(burst), missing)
		}
	}
	final := say(alice, room1, "after the burst")
	for _, c := range everyone {
		if missing := syncUntilSeen(t, syncers[c], []string{final}, 30*time.Second); len(missing) > 0 {
			t.Errorf("%s never got alice's message %s after the burst", c.UserID, final)
		}
		checkNoDuplicates(t, c.UserID+"'s /sync timeline of room1", syncers[c].tl[room1])
	}

	// The same order everywhere, read back with /messages.
	want := map[string]bool{}
	for _, id := range append(append(append([]string{}, chain...), burst...), final) {
		want[id] = true
	}
	orders := map[*Client][]string{}
	for _, c := range everyone {
		orders[c] = messagesOrder(c, room1, want)
		if len(orders[c]) != len(want) {
			t.Errorf("%s's /messages of room1 holds %d of the %d messages sent after the joins", c.UserID, len(orders[c]), len(want))
		}
		checkSameIDs(t, c.UserID+"'s /messages order of the chained messages", onlyIDs(orders[c], chain), chain)
	}
	for _, c := range []*Client{bob, carol} {
		if fmt.Sprint(orders[c]) != fmt.Sprint(orders[alice]) {
			t.Logf("%s's server orders the concurrent burst differently from A's (allowed for concurrent events)", c.UserID)
		}
	}
	if len(chain) > 0 && orders[alice] != nil && orders[alice][len(orders[alice])-1] != final {
		t.Errorf("alice's /messages does not end with the last message %s: %v", final, orders[alice])
	}
	for _, c := range []*Client{bob, carol} {
		if o := orders[c]; len(o) > 0 && o[len(o)-1] != final {
			t.Errorf("%s's /messages does not end with the last message %s (sent after everything else was seen): %v", c.UserID, final, o)
		}
	}
}

// inviteAndJoin: alice invites carol (another server) to roomID; carol sees the invite in
// /sync with the room's name in invite_state and joins with POST /rooms/{roomId}/join
// without via, the invite telling her server where to join. It reports whether she joined
// that way; failures are test errors.
func inviteAndJoin(t *testing.T, alice, carol *Client, carols *syncer, roomID string) bool {
	t.Helper()
	r := call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": carol.UserID})
	if r.Status != 200 {
		t.Errorf("alice inviting %s over federation: %d %s, want 200", carol.UserID, r.Status, r.Raw)
		return false
	}
	var invite map[string]any
	ok, last := poll(30*time.Second, 0, func() (bool, string) {
		resp := carols.once(2000)
		invite = obj(resp.Body, "rooms", "invite", roomID)
		return invite != nil, string(resp.Raw)
	})
	if !ok {
		t.Errorf("carol on C never saw the invite to %s in /sync rooms.invite (30 s); last sync: %.1500s", roomID, last)
		return false
	}
	var sawMember, sawName bool
	for _, e := range list(obj(invite, "invite_state"), "events") {
		if evType(e) == "m.room.member" && str(e, "state_key") == carol.UserID && str(obj(e, "content"), "membership") == "invite" {
			sawMember = true
		}
		if evType(e) == "m.room.name" && str(obj(e, "content"), "name") == "Three servers" {
			sawName = true
		}
	}
	if !sawMember || !sawName {
		t.Errorf("carol's invite_state lacks her invite member event (%v) or the room name (%v): %v", sawMember, sawName, invite)
	}
	r = call(carol, "POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/join", map[string]any{})
	if r.Status != 200 {
		t.Errorf("carol joining %s after the invite, without via: %d %s, want 200 (C should join through the inviting server)", roomID, r.Status, r.Raw)
		return false
	}
	return true
}

// waitMembership polls c's view of userID's membership in roomID until it is want (30 s).
func waitMembership(t *testing.T, c *Client, roomID, userID, want string) {
	t.Helper()
	ok, last := poll(30*time.Second, 200*time.Millisecond, func() (bool, string) {
		r := c.Do("GET", statePath(roomID, "m.room.member", userID), nil)
		return r.Status == 200 && str(r.Body, "membership") == want, fmt.Sprintf("%d %s", r.Status, r.Raw)
	})
	if !ok {
		t.Errorf("%s's server never showed %s as %q in %s (30 s); last member state: %s", c.UserID, userID, want, roomID, last)
	}
}

// messagesOrder pages /messages back from the newest event until every event of want has
// been seen (or the history ends) and returns the IDs of want's events oldest first.
func messagesOrder(c *Client, roomID string, want map[string]bool) []string {
	c.t.Helper()
	var got []string
	seen := 0
	from := ""
	for page := 0; page < 100 && seen < len(want); page++ {
		p := getMessages(c, roomID, "b", from, 50)
		for _, e := range p.chunk {
			if want[evID(e)] {
				got = append(got, evID(e))
				seen++
			}
		}
		if p.end == "" || len(p.chunk) == 0 {
			break
		}
		from = p.end
	}
	return reversed(got)
}

// onlyIDs keeps the IDs of ids that are in keep, in order.
func onlyIDs(ids, keep []string) []string {
	k := map[string]bool{}
	for _, id := range keep {
		k[id] = true
	}
	var out []string
	for _, id := range ids {
		if k[id] {
			out = append(out, id)
		}
	}
	return out
}

// testCrashCatchUp: C is killed; A and B send 100 messages; C restarts and carol's /sync
// shows every one of them exactly once, delivered by A's and B's senders retrying.
func (st *threeServers) testCrashCatchUp(t *testing.T) {
	alice, bob, carol := rebind(st.alice, t), rebind(st.bob, t), rebind(st.carol, t)
	carols := newSyncer(carol, bigTimeline)
	carols.once(0)

	// Server.Start fails through Server.t, which must be this subtest while it runs.
	parent := st.c.t
	st.c.t = t
	defer func() {
		if st.c.cmd == nil {
			st.c.Start()
		}
		st.c.t = parent
	}()
	st.c.Kill()
	var sent []string
	for i := 0; i < 50; i++ {
		sent = append(sent, say(alice, st.room1, fmt.Sprintf("while C is down: alice %d", i)))
		sent = append(sent, say(bob, st.room1, fmt.Sprintf("while C is down: bob %d", i)))
	}
	// Down a while longer, so that A's and B's senders fail and back off a few times.
	time.Sleep(5 * time.Second)
	st.c.Start()
	start := time.Now()
	missing := syncUntilSeen(t, carols, sent, 60*time.Second)
	if len(missing) > 0 {
		t.Fatalf("60 s after C restarted, carol's /sync has %d of the 100 messages sent while C was down; missing %v; C's log:\n%s",
			100-len(missing), missing, st.c.Log())
	}
	t.Logf("C caught up with the 100 messages %v after its restart", time.Since(start).Round(time.Millisecond))
	counts := map[string]int{}
	for _, e := range carols.tl[st.room1] {
		counts[evID(e)]++
	}
	for _, id := range sent {
		if counts[id] != 1 {
			t.Errorf("carol's /sync delivered %s %d times, want once", id, counts[id])
		}
	}
}

// testLateJoiner: a room with 60 messages on A before anyone from B joined; dave (B) joins
// and pages /messages back to m.room.create, which B must backfill from A; the history he
// reads equals alice's. Then erin (B) joins room1, whose early history B never had as
// timeline events, and pages back to its m.room.create too.
func (st *threeServers) testLateJoiner(t *testing.T) {
	alice := rebind(st.alice, t)
	room3 := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "History"})
	for i := 0; i < 60; i++ {
		say(alice, room3, fmt.Sprintf("history %d", i))
	}
	dave := st.b.Register(t, "dave")
	if r := joinRoom(dave, room3, st.a.Name); r.Status != 200 {
		t.Fatalf("dave on B joining %s via %s: %d %s, want 200", room3, st.a.Name, r.Status, r.Raw)
	}
	waitMembership(t, alice, room3, dave.UserID, "join")
	checkBackfilled(t, alice, dave, room3, "")

	if st.room1 == "" {
		return
	}
	erin := st.b.Register(t, "erin")
	if r := joinRoom(erin, st.room1, st.a.Name); r.Status != 200 {
		t.Fatalf("erin on B joining room1 %s: %d %s, want 200", st.room1, r.Status, r.Raw)
	}
	waitMembership(t, alice, st.room1, erin.UserID, "join")
	checkBackfilled(t, alice, erin, st.room1, st.bob.UserID)
}

// checkBackfilled compares the whole history of roomID as late (on a remote server) reads it
// with /messages against what origin (on the room's creating server) reads. When prefixUser
// is not empty only the events up to that user's first join are compared in order (the
// rest may be ordered differently where events were concurrent) and the rest as a set.
func checkBackfilled(t *testing.T, origin, late *Client, roomID, prefixUser string) {
	t.Helper()
	want := history(origin, roomID, 100)
	got := history(late, roomID, 10) // small pages: several backfill requests
	checkNoDuplicates(t, late.UserID+"'s history of "+roomID, got)
	if len(got) == 0 || evType(got[0]) != "m.room.create" {
		first := "nothing"
		if len(got) > 0 {
			first = evType(got[0]) + " " + evID(got[0])
		}
		t.Errorf("%s paging /messages back in %s: the oldest event is %s, want m.room.create (%d events read, %d on the origin)",
			late.UserID, roomID, first, len(got), len(want))
	}
	wantIDs, gotIDs := ids(want), ids(got)
	if prefixUser == "" {
		checkSameIDs(t, late.UserID+"'s history of "+roomID+" vs the origin's", gotIDs, wantIDs)
		return
	}
	cut := len(want)
	for i, e := range want {
		if evType(e) == "m.room.member" && str(e, "state_key") == prefixUser {
			cut = i + 1
			break
		}
	}
	checkSameIDs(t, late.UserID+"'s history of "+roomID+" up to "+prefixUser+"'s join", gotIDs[:min(cut, len(gotIDs))], wantIDs[:cut])
	have := map[string]bool{}
	for _, id := range gotIDs {
		have[id] = true
	}
	var missing []string
	for _, id := range wantIDs {
		if !have[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s's history of %s lacks %d of the origin's %d events: %v", late.UserID, roomID, len(missing), len(wantIDs), missing)
	}
}

// testPartition: carol gets power 100; C is frozen (SIGSTOP) while alice changes the topic and
// the power levels; C is cut off by its proxy and resumed, and carol changes the topic and
// power levels too, from the state before alice's changes; after the heal the three servers
// must agree on the room's state, whatever state resolution picked.
func (st *threeServers) testPartition(t *testing.T) {
	alice, bob, carol := rebind(st.alice, t), rebind(st.bob, t), rebind(st.carol, t)
	room := st.room1

	pl := powerLevels(t, alice, room)
	users, _ := pl["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	users[carol.UserID] = 100
	pl["users"] = users
	if r := putState(alice, room, "m.room.power_levels", "", pl); r.Status != 200 {
		t.Fatalf("alice giving carol power 100: %d %s", r.Status, r.Raw)
	}
	for _, c := range []*Client{bob, carol} {
		ok, last := poll(30*time.Second, 200*time.Millisecond, func() (bool, string) {
			r := stateEvent(c, room, "m.room.power_levels", "")
			return fmt.Sprint(obj(r.Body, "users")[carol.UserID]) == "100", string(r.Raw)
		})
		if !ok {
			t.Fatalf("%s's server never saw carol's power 100 (30 s); its power levels: %s", c.UserID, last)
		}
	}

	// carol's client syncs from here with use_state_after, after the fork is resolved.
	carolSince := str(carol.Sync("", "", 0).Body, "next_batch")

	st.c.Freeze(t)
	frozen := true
	defer func() {
		if frozen {
			st.c.Cont()
		}
		st.c.Proxy.Heal()
	}()
	aTopic := "topic set on A during the partition"
	r := putState(alice, room, "m.room.topic", "", map[string]any{"topic": aTopic})
	if r.Status != 200 {
		t.Fatalf("alice setting the topic: %d %s", r.Status, r.Raw)
	}
	aTopicID := str(r.Body, "event_id")
	pl = powerLevels(t, alice, room)
	users, _ = pl["users"].(map[string]any)
	users[bob.UserID] = 50
	r = putState(alice, room, "m.room.power_levels", "", pl)
	if r.Status != 200 {
		t.Fatalf("alice giving bob power 50: %d %s", r.Status, r.Raw)
	}
	aPLID := str(r.Body, "event_id")
	ok, last := poll(30*time.Second, 200*time.Millisecond, func() (bool, string) {
		r := stateEvent(bob, room, "m.room.topic", "")
		return str(r.Body, "topic") == aTopic, string(r.Raw)
	})
	if !ok {
		t.Fatalf("B never saw A's topic change (30 s); B's topic: %s", last)
	}

	st.c.Proxy.Partition()
	st.c.Cont()
	frozen = false
	if r := stateEvent(carol, room, "m.room.topic", ""); str(r.Body, "topic") == aTopic {
		t.Fatalf("C saw A's topic although it was frozen and then partitioned; the scenario is not concurrent")
	}
	cTopic := "topic set on C during the partition"
	r = putState(carol, room, "m.room.topic", "", map[string]any{"topic": cTopic})
	if r.Status != 200 {
		t.Fatalf("carol setting the topic on C: %d %s", r.Status, r.Raw)
	}
	cTopicID := str(r.Body, "event_id")
	pl = powerLevels(t, carol, room)
	events, _ := pl["events"].(map[string]any)
	if events == nil {
		events = map[string]any{}
	}
	events["m.room.topic"] = 60
	pl["events"] = events
	r = putState(carol, room, "m.room.power_levels", "", pl)
	if r.Status != 200 {
		t.Fatalf("carol changing the power levels on C: %d %s", r.Status, r.Raw)
	}
	cPLID := str(r.Body, "event_id")
	// The proxy blocks only connections to C: C's changes may reach A and B now, A's cannot
	// reach C until the heal.
	time.Sleep(2 * time.Second)
	if r := call(carol, "GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(aTopicID), nil); r.Status == 200 {
		t.Fatalf("C has A's topic event %s although it was partitioned; the changes are not concurrent", aTopicID)
	}
	st.c.Proxy.Heal()
	healed := time.Now()
	forks := map[string]string{aTopicID: "A's topic", aPLID: "A's power levels", cTopicID: "C's topic", cPLID: "C's power levels"}

	servers := []*Client{alice, bob, carol}
	var states []map[string]event
	ok, last = poll(90*time.Second, time.Second, func() (bool, string) {
		// Agreement counts only once every server has both sides of the fork.
		for _, c := range servers {
			for id, what := range forks {
				if r := c.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(id), nil); r.Status != 200 {
					return false, fmt.Sprintf("%s's server does not have %s %s yet: %d %s", c.UserID, what, id, r.Status, r.Raw)
				}
			}
		}
		states = states[:0]
		for _, c := range servers {
			s, r := roomState(c, room)
			if s == nil {
				return false, fmt.Sprintf("%s: GET state %d %s", c.UserID, r.Status, r.Raw)
			}
			states = append(states, s)
		}
		if d := stateDiff(states[0], states[1]); d != "" {
			return false, "A vs B: " + d
		}
		if d := stateDiff(states[0], states[2]); d != "" {
			return false, "A vs C: " + d
		}
		return true, ""
	})
	for i, c := range servers {
		if i < len(states) {
			t.Logf("%s's server: topic %q; power levels %s", c.UserID, str(obj(states[i]["m.room.topic|"], "content"), "topic"),
				jsonString(obj(states[i]["m.room.power_levels|"], "content")))
		}
	}
	if !ok {
		t.Fatalf("90 s after the heal the servers' states of %s still differ: %s", room, last)
	}
	t.Logf("states agreed %v after the heal; resolved: topic %s, power levels %s", time.Since(healed).Round(time.Millisecond),
		forks[evID(states[0]["m.room.topic|"])], forks[evID(states[0]["m.room.power_levels|"])])
	// State resolution v2 decides which side wins. Power events first, in reverse topological
	// power order: alice (the creator) outranks carol, so A's power levels are applied first
	// and C's, still allowed (carol keeps 100 in A's), last: C's power levels win. Then the
	// topics in mainline order of those power levels: both topics cite the same power levels
	// event, so origin_server_ts decides, and C's topic, the later, wins.
	if got := evID(states[0]["m.room.power_levels|"]); got != cPLID {
		t.Errorf("resolved power levels %s (%s), want C's %s: state resolution v2 applies A's (the creator's) first and C's last", got, forks[got], cPLID)
	}
	if got := evID(states[0]["m.room.topic|"]); got != cTopicID {
		t.Errorf("resolved topic %s (%s), want C's %s: both cite the same power levels, so the later topic (C's) wins", got, forks[got], cTopicID)
	}
	// carol's server received A's topic after her own, so a client applying the timeline
	// would end on A's topic; state_after gives the resolved one.
	r = call(carol, "GET", "/_matrix/client/v3/sync?timeout=0&use_state_after=true&since="+esc(carolSince), nil)
	jr := obj(r.Body, "rooms", "join", room)
	if r.Status != 200 || jr == nil || jr["state"] != nil {
		t.Fatalf("carol's incremental sync with use_state_after: %d, room %v (want state_after and no state)", r.Status, jr)
	}
	sawTopic := ""
	for _, e := range list(obj(jr, "state_after"), "events") {
		if evType(e) == "m.room.topic" {
			sawTopic = str(e, "event_id")
		}
	}
	if sawTopic != evID(states[2]["m.room.topic|"]) {
		t.Errorf("carol's state_after topic %s (%s), want her server's resolved topic %s", sawTopic, forks[sawTopic], evID(states[2]["m.room.topic|"]))
	}
}

// powerLevels returns the content of the room's m.room.power_levels as c's server has it.
func powerLevels(t *testing.T, c *Client, roomID string) map[string]any {
	t.Helper()
	r := stateEvent(c, roomID, "m.room.power_levels", "")
	if r.Status != 200 {
		t.Fatalf("%s reading the power levels of %s: %d %s", c.UserID, roomID, r.Status, r.Raw)
	}
	return r.Body
}

// TestFederationRejectsBadPDUs: a fake homeserver joins a Lattice room with make_join and
// send_join, then sends transactions with a PDU with a bad signature, one with a wrong
// content hash, one from a user not in the room and a power-level change by a user without
// power, and requests with bad X-Matrix headers. /send answers 200 with a per-PDU error for
// the rejected ones; none reaches the local client's /sync (the one with the wrong hash at
// most redacted); the bad requests get 401; the server keeps answering.
func TestFederationRejectsBadPDUs(t *testing.T) {
	ca := newTestCA(t)
	lat := startFederatedServer(t, ca)
	fake := startFakeHomeserver(t, ca)
	dest := spec.ServerName(lat.Name)
	alice := lat.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Guarded"})
	as := newSyncer(alice, bigTimeline)
	as.once(0)

	// Requests that fail X-Matrix verification, before the fake server is in any room.
	sendBadXMatrix(t, fake, dest, nil)

	eve := "@eve:" + string(fake.name)
	room, err := fake.join(t, dest, roomID, eve)
	if err != nil {
		t.Fatalf("the fake server joining %s as %s: %v; server log:\n%s", roomID, eve, err, lat.Log())
	}
	as.until("eve's join", func(Resp) bool { return as.seen[room.latest.EventID()] })
	if m := membership(alice, roomID, eve); m != "join" {
		t.Fatalf("after send_join, Lattice says %s's membership is %q, want join", eve, m)
	}

	// Bad PDUs, one transaction.
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	badSig := fake.build(t, room, eve, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "signed with the wrong key"}, otherKey)
	hashed := fake.build(t, room, eve, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "before tampering"}, nil)
	tampered := withContent(t, hashed, map[string]any{"msgtype": "m.text", "body": "tampered after signing"})
	zed := "@zed:" + string(fake.name)
	outsider := fake.build(t, room, zed, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "from someone not in the room"}, nil)
	pl := map[string]any{}
	_ = json.Unmarshal(room.state["m.room.power_levels|"].Content(), &pl)
	users, _ := pl["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	users[eve] = 100
	pl["users"] = users
	empty := ""
	plChange := fake.build(t, room, eve, "m.room.power_levels", &empty, pl, nil)

	r := fake.sendPDUs(t, dest, []json.RawMessage{badSig.JSON(), tampered, outsider.JSON(), plChange.JSON()})
	if r.Status != 200 {
		t.Fatalf("/send with bad PDUs: %d %s, want 200 with per-PDU results", r.Status, r.Raw)
	}
	if _, ok := r.Body["pdus"].(map[string]any); !ok {
		t.Errorf("/send response lacks the required pdus object: %s", r.Raw)
	}
	for _, c := range []struct {
		what string
		id   string
	}{{"bad signature", badSig.EventID()}, {"sender not in the room", outsider.EventID()}, {"power levels changed without power", plChange.EventID()}} {
		res, ok := pduResult(r, c.id)
		if !ok || str(res, "error") == "" {
			t.Errorf("/send: PDU with %s (%s) has no error in the response: %s", c.what, c.id, r.Raw)
		}
	}
	hashRes, _ := pduResult(r, hashed.EventID())
	t.Logf("/send results: %s", r.Raw)

	// Bad X-Matrix: each request carries an otherwise valid message, which must not land.
	smuggled := []struct{ what, id string }{
		{"bad signature", badSig.EventID()}, {"sender not in the room", outsider.EventID()}, {"unauthorised power levels", plChange.EventID()},
	}
	for _, c := range sendBadXMatrix(t, fake, dest, func(what string) gomatrixserverlib.PDU {
		return fake.build(t, room, eve, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "smuggled: " + what}, nil)
	}) {
		smuggled = append(smuggled, c)
	}

	// A valid message after everything: once alice has it, the bad ones had their chance.
	good := fake.build(t, room, eve, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "a fine message"}, nil)
	r = fake.sendPDUs(t, dest, []json.RawMessage{good.JSON()})
	if res, ok := pduResult(r, good.EventID()); r.Status != 200 || !ok || str(res, "error") != "" {
		t.Errorf("/send with a valid message: %d %s, want 200 with an empty result for %s", r.Status, r.Raw, good.EventID())
	}
	if missing := syncUntilSeen(t, as, []string{good.EventID()}, 20*time.Second); len(missing) > 0 {
		t.Errorf("the fake server's valid message %s never reached alice's /sync (20 s)", good.EventID())
	}
	for _, c := range smuggled {
		if as.seen[c.id] {
			t.Errorf("the PDU with %s (%s) reached alice's /sync", c.what, c.id)
		}
	}
	if str(hashRes, "error") == "" {
		// Accepted: the spec's checks say it is stored redacted.
		r := call(alice, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(hashed.EventID()), nil)
		if r.Status != 200 {
			t.Errorf("the PDU with a wrong content hash was accepted by /send but GET /event/%s: %d %s", hashed.EventID(), r.Status, r.Raw)
		} else if len(obj(r.Body, "content")) != 0 {
			t.Errorf("the PDU with a wrong content hash is stored unredacted: %s", r.Raw)
		}
	}
	for _, evs := range as.tl {
		for _, e := range evs {
			if evID(e) == hashed.EventID() {
				if str(hashRes, "error") != "" {
					t.Errorf("the PDU with a wrong content hash was rejected (%v) but reached alice's /sync: %v", hashRes, e)
				} else if len(obj(e, "content")) != 0 {
					t.Errorf("the PDU with a wrong content hash reached alice's /sync unredacted: %v", e)
				}
			}
			if b := evBody(e); strings.Contains(b, "tampered") || strings.Contains(b, "wrong key") || strings.Contains(b, "not in the room") || strings.Contains(b, "smuggled") {
				t.Errorf("a bad PDU's content reached alice's /sync: %v", e)
			}
		}
	}
	if r := stateEvent(alice, roomID, "m.room.power_levels", ""); fmt.Sprint(obj(r.Body, "users")[eve]) == "100" {
		t.Errorf("eve got power 100 through an unauthorised power-level change: %s", r.Raw)
	}

	// Still alive on both APIs.
	if r := anon(t, lat, "GET", "/_matrix/client/versions", nil); r.Status != 200 {
		t.Errorf("client API after the bad PDUs: %d %s", r.Status, r.Raw)
	}
	if err := fedVersion(fedHTTPClient(ca), lat.Name); err != nil {
		t.Errorf("federation API after the bad PDUs: %v", err)
	}
	say(alice, roomID, "still here")
}

// sendBadXMatrix sends /send requests with a bad X-Matrix Authorization header (none, signed
// with another key, signed for another destination) and checks each gets 401. Each carries
// the PDU pdu makes (none when pdu is nil); it returns those PDUs' event IDs, which must
// never be processed.
func sendBadXMatrix(t *testing.T, fake *fakeHomeserver, dest spec.ServerName, pdu func(what string) gomatrixserverlib.PDU) []struct{ what, id string } {
	t.Helper()
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	var out []struct{ what, id string }
	for _, c := range []struct {
		what string
		opts []fakeReqOpt
	}{
		{"no Authorization header", []fakeReqOpt{withoutAuth()}},
		{"signature by another key", []fakeReqOpt{signedWith(otherKey)}},
		{"signed for another destination", []fakeReqOpt{signedFor("other.example.org")}},
	} {
		pdus := []json.RawMessage{}
		if pdu != nil {
			ev := pdu(c.what)
			pdus = append(pdus, ev.JSON())
			out = append(out, struct{ what, id string }{"a request with " + c.what, ev.EventID()})
		}
		r := fake.sendPDUs(t, dest, pdus, c.opts...)
		if r.Status != 401 {
			t.Errorf("/send with %s: %d %s, want 401", c.what, r.Status, r.Raw)
		} else if code := str(r.Body, "errcode"); code != "M_UNAUTHORIZED" {
			t.Errorf("/send with %s: errcode %q, want M_UNAUTHORIZED: %s", c.what, code, r.Raw)
		}
	}
	return out
}

// testEDUs: bob's typing notification (B) reaches alice's (A) and carol's (C) /sync as an
// m.typing ephemeral event, and alice's read receipt reaches bob's and carol's as m.receipt.
func (st *threeServers) testEDUs(t *testing.T) {
	alice, bob, carol := rebind(st.alice, t), rebind(st.bob, t), rebind(st.carol, t)
	room := st.room1
	syncers := map[*Client]*syncer{}
	for _, c := range []*Client{alice, bob, carol} {
		syncers[c] = newSyncer(c, bigTimeline)
		syncers[c].once(0)
	}
	r := call(bob, "PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/typing/"+esc(bob.UserID), map[string]any{"typing": true, "timeout": 30000})
	if r.Status != 200 {
		t.Fatalf("bob typing: %d %s", r.Status, r.Raw)
	}
	for _, c := range []*Client{alice, carol} {
		if !syncEphemeral(t, syncers[c], room, 20*time.Second, func(e event) bool {
			users, _ := obj(e, "content")["user_ids"].([]any)
			return evType(e) == "m.typing" && len(users) == 1 && users[0] == bob.UserID
		}) {
			t.Errorf("%s's /sync on %s never showed bob (on B) typing in room1 (20 s); last sync: %.1500s", c.UserID, c.srv.Name, syncers[c].last.Raw)
		}
	}

	target := say(alice, room, "read me")
	if missing := syncUntilSeen(t, syncers[bob], []string{target}, 30*time.Second); len(missing) > 0 {
		t.Fatalf("alice's message %s never reached bob", target)
	}
	r = call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(target), map[string]any{})
	if r.Status != 200 {
		t.Fatalf("alice's read receipt: %d %s", r.Status, r.Raw)
	}
	for _, c := range []*Client{bob, carol} {
		if !syncEphemeral(t, syncers[c], room, 20*time.Second, func(e event) bool {
			return evType(e) == "m.receipt" && obj(e, "content", target, "m.read", alice.UserID) != nil
		}) {
			t.Errorf("%s's /sync on %s never showed alice's (on A) read receipt for %s (20 s); last sync: %.1500s", c.UserID, c.srv.Name, target, syncers[c].last.Raw)
		}
	}
}

// syncEphemeral syncs until an ephemeral event of roomID satisfies match or timeout passes.
func syncEphemeral(t *testing.T, s *syncer, roomID string, timeout time.Duration, match func(event) bool) bool {
	t.Helper()
	ok, _ := poll(timeout, 0, func() (bool, string) {
		r := s.once(2000)
		for _, e := range list(obj(r.Body, "rooms", "join", roomID, "ephemeral"), "events") {
			if match(e) {
				return true, ""
			}
		}
		return false, ""
	})
	return ok
}
