package e2e

// The joining side of partial-state joins (MSC3706, MSC3902): a Lattice server joins a room
// of another Lattice with send_join's omit_members, uses the room at once, resyncs the full
// state in the background (slowed down here by the test-only LATTICE_TEST_RESYNC_* knobs),
// refuses joins through it meanwhile, and resumes the resync after a restart.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// resyncComplete is what the joining server logs when a room's resync completes.
const resyncComplete = "partial state resync complete"

// startSlowResyncServer starts a federated Lattice whose partial state resyncs fetch one
// event per batch with a pause before each batch.
func startSlowResyncServer(t *testing.T, ca *testCA, delay time.Duration) *Server {
	t.Helper()
	s := startFederatedServer(t, ca)
	s.Stop()
	s.Env = []string{"LATTICE_TEST_RESYNC_BATCH=1", "LATTICE_TEST_RESYNC_DELAY=" + delay.String()}
	s.Start()
	return s
}

// bigRoom has alice of a create a named public room (no heroes: the partial state holds
// only the memberships auth needs) and n users of a join it; it returns the room and the
// users.
func bigRoom(t *testing.T, a *Server, alice *Client, n int) (string, []*Client) {
	t.Helper()
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "big room"})
	users := make([]*Client, n)
	for i := range users {
		users[i] = a.Register(t, fmt.Sprintf("m%02d", i))
		users[i].MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
	}
	return roomID, users
}

// TestFederationPartialStateJoin: servers A (resident, alice and 10 members), C (carol,
// joined through A before) and B (bob, joining with partial state; its resync fetches one
// event per 700 ms). While B's resync runs:
//   - bob's join returns and the room is in his /sync;
//   - bob's message reaches alice on A and carol on C (C is known to B only from
//     servers_in_room: carol's membership is not in the partial state);
//   - messages of a member of A and of carol, whose memberships B does not have yet, reach
//     bob;
//   - bob's new device reaches carol's /sync as a device list change (servers_in_room again);
//   - make_join and make_knock into the room through B are refused with 404 M_NOT_FOUND.
//
// Then /joined_members and /members on B wait for the resync and list all 13 members,
// and make_join through B works.
func TestFederationPartialStateJoin(t *testing.T) {
	ca := newTestCA(t)
	a := startFederatedServer(t, ca)
	c := startFederatedServer(t, ca)
	b := startSlowResyncServer(t, ca, 700*time.Millisecond)
	fake := startFakeHomeserver(t, ca)

	alice := a.Register(t, "alice")
	roomID, members := bigRoom(t, a, alice, 10)
	carol := c.Register(t, "carol")
	if r := joinRoom(carol, roomID, a.Name); r.Status != 200 {
		t.Fatalf("carol joining through A: %d %s", r.Status, r.Raw)
	}
	bob := b.Register(t, "bob")
	as, cs, bs := newSyncer(alice, ""), newSyncer(carol, ""), newSyncer(bob, "")
	as.once(0)
	cs.once(0)
	bs.once(0)

	start := time.Now()
	if r := joinRoom(bob, roomID, a.Name); r.Status != 200 {
		t.Fatalf("bob joining through A: %d %s", r.Status, r.Raw)
	}
	t.Logf("partial state join took %v", time.Since(start))
	if !strings.Contains(b.Log(), "joined with partial state") {
		t.Fatalf("B did not join with partial state; log:\n%s", b.Log())
	}
	bs.until("the room in bob's /sync", func(r Resp) bool { return obj(r.Body, "rooms", "join", roomID) != nil })

	hello := say(bob, roomID, "hello from B during the resync")
	as.waitEvent(roomID, hello)
	cs.waitEvent(roomID, hello)
	fromA := say(members[7], roomID, "hi from a member B does not know yet")
	fromC := say(carol, roomID, "hi from C")
	bs.waitEvent(roomID, fromA)
	bs.waitEvent(roomID, fromC)

	// bob's device list reaches C, whose only member is unknown to B.
	cs.until("bob's join at C", func(Resp) bool {
		for _, e := range cs.tl[roomID] {
			if evType(e) == spec.MRoomMember && str(e, "state_key") == bob.UserID {
				return true
			}
		}
		return false
	})
	b.Login(t, "bob")
	cs.until("bob in carol's device_lists.changed", func(r Resp) bool {
		changed, _ := obj(r.Body, "device_lists")["changed"].([]any)
		for _, u := range changed {
			if u == bob.UserID {
				return true
			}
		}
		return false
	})

	userOfFake := "@zed:" + string(fake.name)
	for _, path := range []string{
		"/_matrix/federation/v1/make_join/" + esc(roomID) + "/" + esc(userOfFake) + "?ver=10&ver=11&ver=12",
		"/_matrix/federation/v1/make_knock/" + esc(roomID) + "/" + esc(userOfFake) + "?ver=10&ver=11&ver=12",
	} {
		r := fake.request(t, "GET", spec.ServerName(b.Name), path, nil)
		if r.Status != 404 || r.Body["errcode"] != "M_NOT_FOUND" {
			t.Errorf("%s into B's partial state room: %d %s, want 404 M_NOT_FOUND", path, r.Status, r.Raw)
		}
	}
	if strings.Contains(b.Log(), resyncComplete) {
		t.Fatalf("the resync completed before the checks made during it (%v after the join); slow it down", time.Since(start))
	}

	// After the resync: the full member list.
	want := map[string]bool{alice.UserID: true, carol.UserID: true, bob.UserID: true}
	for _, m := range members {
		want[m.UserID] = true
	}
	joined, r := joinedMembers(bob, roomID)
	if r.Status != 200 || len(joined) != len(want) {
		t.Fatalf("/joined_members on B after the resync: %d members %v, want %d; %d %.300s", len(joined), joined, len(want), r.Status, r.Raw)
	}
	for u := range want {
		if !joined[u] {
			t.Errorf("/joined_members on B lacks %s", u)
		}
	}
	if !strings.Contains(b.Log(), resyncComplete) {
		t.Errorf("/joined_members answered before the resync completed")
	}
	mr := bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/members?membership=join", nil)
	if n := len(list(mr.Body, "chunk")); n != len(want) {
		t.Errorf("/members on B after the resync: %d joined members, want %d", n, len(want))
	}
	r2 := fake.request(t, "GET", spec.ServerName(b.Name), "/_matrix/federation/v1/make_join/"+esc(roomID)+"/"+esc(userOfFake)+"?ver=10&ver=11&ver=12", nil)
	if r2.Status != 200 {
		t.Errorf("make_join through B after the resync: %d %s", r2.Status, r2.Raw)
	}
	// The room keeps working after the resync, both ways.
	after := say(members[3], roomID, "after the resync")
	bs.waitEvent(roomID, after)
	back := say(bob, roomID, "B after the resync")
	as.waitEvent(roomID, back)
}

// TestFederationPartialStateRestartAndLeave: B restarts in the middle of a resync and
// resumes it (the member list is complete afterwards); and a user of B who joins another
// room with partial state and leaves during its resync is seen leaving on A, and B's resync
// of that room still completes.
func TestFederationPartialStateRestartAndLeave(t *testing.T) {
	ca := newTestCA(t)
	a := startFederatedServer(t, ca)
	b := startSlowResyncServer(t, ca, 500*time.Millisecond)
	alice := a.Register(t, "alice")
	roomID, members := bigRoom(t, a, alice, 8)
	bob := b.Register(t, "bob")
	if r := joinRoom(bob, roomID, a.Name); r.Status != 200 {
		t.Fatalf("bob joining through A: %d %s", r.Status, r.Raw)
	}
	b.Stop()
	if strings.Contains(b.Log(), resyncComplete) {
		t.Fatalf("the resync completed before the restart; slow it down")
	}
	b.Start()
	if !strings.Contains(b.Log(), "resuming the resync of a partial state room") {
		t.Errorf("B did not resume the resync after its restart")
	}
	bs := newSyncer(bob, "")
	bs.once(0)
	msg := say(members[5], roomID, "during the resumed resync")
	bs.waitEvent(roomID, msg)
	joined, r := joinedMembers(bob, roomID)
	if r.Status != 200 || len(joined) != len(members)+2 {
		t.Fatalf("/joined_members on B after the resumed resync: %d members, want %d; %d %.300s", len(joined), len(members)+2, r.Status, r.Raw)
	}

	// Leave during a resync.
	room2, _ := bigRoom(t, a, a.Login(t, "alice"), 0)
	for i := range 6 {
		a.Register(t, fmt.Sprintf("n%02d", i)).MustDo("POST", "/_matrix/client/v3/join/"+esc(room2), map[string]any{})
	}
	as := newSyncer(alice, "")
	as.once(0)
	if r := joinRoom(bob, room2, a.Name); r.Status != 200 {
		t.Fatalf("bob joining room 2 through A: %d %s", r.Status, r.Raw)
	}
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room2)+"/leave", map[string]any{})
	if n := strings.Count(b.Log(), resyncComplete); n > 1 {
		t.Fatalf("the resync of room 2 completed before the leave; slow it down")
	}
	as.until("bob's leave on A", func(Resp) bool {
		for _, e := range as.tl[room2] {
			if evType(e) == spec.MRoomMember && str(e, "state_key") == bob.UserID && str(obj(e, "content"), "membership") == "leave" {
				return true
			}
		}
		return false
	})
	bs.until("room 2 among bob's left rooms", func(r Resp) bool { return obj(r.Body, "rooms", "leave", room2) != nil })
	ok, state := poll(30*time.Second, 200*time.Millisecond, func() (bool, string) {
		n := strings.Count(b.Log(), resyncComplete)
		return n >= 2, fmt.Sprintf("%d resyncs complete", n)
	})
	if !ok {
		t.Errorf("the resync of room 2 did not complete after the leave: %s", state)
	}
}

// TestFederationPartialStateFailover: B joins A's room with partial state through A; A
// stops during B's resync, and B completes the resync from C, another server of
// servers_in_room (carol's), and lists every member.
func TestFederationPartialStateFailover(t *testing.T) {
	ca := newTestCA(t)
	a := startFederatedServer(t, ca)
	c := startFederatedServer(t, ca)
	b := startSlowResyncServer(t, ca, 300*time.Millisecond)
	alice := a.Register(t, "alice")
	roomID, members := bigRoom(t, a, alice, 6)
	carol := c.Register(t, "carol")
	if r := joinRoom(carol, roomID, a.Name); r.Status != 200 {
		t.Fatalf("carol joining through A: %d %s", r.Status, r.Raw)
	}
	cs := newSyncer(carol, "")
	cs.once(0)
	bob := b.Register(t, "bob")
	if r := joinRoom(bob, roomID, a.Name); r.Status != 200 {
		t.Fatalf("bob joining through A: %d %s", r.Status, r.Raw)
	}
	// C has bob's join (from A) before A goes.
	cs.until("bob's join at C", func(Resp) bool {
		for _, e := range cs.tl[roomID] {
			if evType(e) == spec.MRoomMember && str(e, "state_key") == bob.UserID {
				return true
			}
		}
		return false
	})
	a.Stop()
	if strings.Contains(b.Log(), resyncComplete) {
		t.Fatalf("the resync completed before A stopped; slow it down")
	}
	joined, r := joinedMembers(bob, roomID)
	if r.Status != 200 || len(joined) != len(members)+3 {
		t.Fatalf("/joined_members on B after the fail-over: %d members, want %d; %d %.300s\n%s", len(joined), len(members)+3, r.Status, r.Raw, b.Log())
	}
	if !strings.Contains(b.Log(), resyncComplete) || !strings.Contains(b.Log(), "resync through a server failed") {
		t.Errorf("B's log does not show a failed resync through A and a completed one")
	}
}
