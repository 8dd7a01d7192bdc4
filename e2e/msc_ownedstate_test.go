package e2e

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver/ownedstate"
)

// The state event type of these tests: every member may send it (power level 0), so only the
// state key rules decide; Complement's MSC3757 tests use the same set-up.
const ownedType = "com.example.test"

// ownedSuffix is Complement's suffix, with separator and sigil characters.
const ownedSuffix = "_state_key_suffix:!@#$123"

// ownedRoom has creator make a public room of version ver where ownedType needs power level
// 0, and the others join it.
func ownedRoom(t *testing.T, creator *Client, ver string, others ...*Client) string {
	t.Helper()
	body := map[string]any{
		"preset":                       "public_chat",
		"power_level_content_override": map[string]any{"events": map[string]any{ownedType: 0}},
	}
	if ver != "" {
		body["room_version"] = ver
	}
	roomID := creator.CreateRoom(body)
	for _, c := range others {
		join(c, roomID)
	}
	return roomID
}

// TestMSC3757OwnedState follows Complement's TestMSC3757OwnedState and TestWithoutOwnedState
// (tests/msc3757) on both MSC3757 room versions and their base versions: in an MSC3757 room a
// state key that starts with a user ID (alone or followed by "_") may be written by that user
// and by users with a greater power level; a key that does not start with a valid user ID is
// a bad request. In rooms of version 10 and 11 only the user ID itself is owned, by that user
// alone, and malformed keys are merely forbidden.
func TestMSC3757OwnedState(t *testing.T) {
	s := StartServer(t)
	creator, user1, user2 := s.Register(t, "creator"), s.Register(t, "user1"), s.Register(t, "user2")
	outsider := s.Register(t, "outsider")

	// The versions are offered as unstable, and not the default.
	caps := obj(creator.MustDo("GET", "/_matrix/client/v3/capabilities", nil).Body, "capabilities", "m.room_versions")
	for _, v := range []string{"org.matrix.msc3757.10", "org.matrix.msc3757.11"} {
		if got := str(obj(caps, "available"), v); got != "unstable" {
			t.Errorf("capabilities list %s as %q, want unstable: %v", v, got, caps)
		}
		if str(caps, "default") == v {
			t.Errorf("%s is the default room version", v)
		}
	}

	for _, ver := range []string{"org.matrix.msc3757.10", "org.matrix.msc3757.11"} {
		t.Run(ver, func(t *testing.T) {
			roomID := ownedRoom(t, creator, ver, user1, user2)
			create := stateEvent(creator, roomID, "m.room.create", "")
			if got := str(create.Body, "room_version"); got != ver {
				t.Fatalf("m.room.create room_version %q, want %q", got, ver)
			}
			ok := func(c *Client, key, what string) {
				t.Helper()
				expectOK(t, putState(c, roomID, ownedType, key, map[string]any{"by": c.UserID}), what)
			}
			ok(user1, user1.UserID+ownedSuffix, "user sets their own suffixed key")
			ok(user1, user1.UserID+"_"+user1.DeviceID+"_m.call", "user sets their MatrixRTC membership key")
			ok(creator, user1.UserID, "room creator sets another user's ID as key")
			ok(creator, user1.UserID+ownedSuffix, "room creator sets another user's suffixed key")
			ok(creator, "@notinroom:elsewhere.example", "room creator sets a non-member's key")
			ok(creator, "@prefix_"+user1.UserID+ownedSuffix, "room creator sets a key with a misplaced user ID")
			ok(user2, "_"+user1.UserID+"_"+user1.DeviceID+"_m.call", "an underscore-prefixed key is nobody's")

			forbidden := func(c *Client, key, what string) {
				t.Helper()
				expectErr(t, putState(c, roomID, ownedType, key, map[string]any{"by": c.UserID}), what, 403, "M_FORBIDDEN")
			}
			forbidden(user1, user2.UserID, "user sets another user's ID as key")
			forbidden(user1, user2.UserID+ownedSuffix, "user sets another user's suffixed key")
			forbidden(user2, user1.UserID+"_"+user1.DeviceID+"_m.call", "user overwrites another's MatrixRTC membership")
			forbidden(user1, user1.UserID+ownedSuffix[1:], "user sets an unseparated suffix (another server's user)")
			forbidden(user1, "@prefix_"+user1.UserID+ownedSuffix, "user sets a key with a misplaced user ID")
			forbidden(user1, creator.UserID+ownedSuffix, "user overwrites the room creator's key")

			expectErr(t, putState(creator, roomID, ownedType, "@oops", map[string]any{}), "key that is not a user ID", 400, "M_BAD_JSON")
			expectErr(t, putState(creator, roomID, ownedType, creator.UserID+"@"+ownedSuffix[1:], map[string]any{}),
				"key with an invalid server name before the separator", 400, "M_BAD_JSON")
			// The rules before rule 8 come first: a sender who may not send the event at all is
			// refused for that (403), whatever the key.
			forbidden(outsider, "@oops", "a non-member sets a key that is not a user ID")

			// What the room keeps: user2's attempt on user1's MatrixRTC key did not land.
			r := stateEvent(user2, roomID, ownedType, user1.UserID+"_"+user1.DeviceID+"_m.call")
			if got := str(r.Body, "by"); got != user1.UserID {
				t.Errorf("user1's MatrixRTC key holds content by %q, want user1's", got)
			}
		})
	}

	// Without MSC3757 the old rule stands (Complement's TestWithoutOwnedState).
	for _, ver := range []string{"10", "11"} {
		t.Run("v"+ver, func(t *testing.T) {
			roomID := ownedRoom(t, creator, ver, user1)
			expectOK(t, putState(user1, roomID, ownedType, user1.UserID, map[string]any{}), "user sets their own user ID as key")
			expectOK(t, putState(user1, roomID, ownedType, "_"+user1.UserID+"_"+user1.DeviceID+"_m.call", map[string]any{}), "underscore-prefixed key")
			for _, tc := range []struct{ key, what string }{
				{creator.UserID + ownedSuffix, "room creator sets their own suffixed key"},
				{user1.UserID, "room creator sets another user's ID as key"},
				{user1.UserID + ownedSuffix, "room creator sets another user's suffixed key"},
				{"@notinroom:elsewhere.example", "room creator sets a non-member's key"},
				{"@oops", "room creator sets a malformed user ID as key"},
			} {
				expectErr(t, putState(creator, roomID, ownedType, tc.key, map[string]any{}), tc.what, 403, "M_FORBIDDEN")
			}
		})
	}

	expectErr(t, call(creator, "POST", "/_matrix/client/v3/createRoom", map[string]any{"room_version": "org.matrix.msc3757.9"}),
		"an MSC3757 version that does not exist", 400, "M_UNSUPPORTED_ROOM_VERSION")
}

// emitOwned builds an event of the fake server on an owned state key after everything the
// fake has of room and adds it to the room's DAG. allowed says whether MSC3757's rules let
// the sender write it (checked, so the test knows what it crafts); a forbidden event stays in
// the DAG, so later events are built on it, but not in the fake's state, as a resident
// server rejects it.
func emitOwned(t *testing.T, h *interopHost, room *hostedRoom, sender, key string, allowed bool) gomatrixserverlib.PDU {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := room.proto(sender, ownedType, &key, map[string]any{"by": sender})
	if err != nil {
		t.Fatalf("building %s %q: %v", ownedType, key, err)
	}
	ev, err := b.Build(time.Now(), h.fake.name, h.fake.keyID, h.fake.priv)
	if err != nil {
		t.Fatalf("building %s %q: %v", ownedType, key, err)
	}
	provider, _ := room.authProvider()
	if err := ownedstate.Allowed(ev, provider, senderUserID); (err == nil) != allowed {
		t.Fatalf("%s writing %q: auth %v, want allowed %v", sender, key, err, allowed)
	}
	stateKey := ownedType + "|" + key
	prev, had := room.state[stateKey]
	room.add(ev)
	if !allowed {
		if had {
			room.state[stateKey] = prev
		} else {
			delete(room.state, stateKey)
		}
	}
	return ev
}

// TestFederationMSC3757OwnedState: a Lattice user joins an MSC3757 room hosted by another
// implementation (the fake server of the interop tests, which runs gomatrixserverlib's rules
// with MSC3757's): Lattice offers the version in make_join's ver=, keeps the owned state of
// the send_join answer (which gomatrixserverlib's join checks drop), accepts the remote
// owner's and a remote moderator's writes to owned keys, rejects a remote user's overwrite of
// alice's MatrixRTC key while accepting the events built on it, refuses alice's own attempt
// on another user's key, and ends with the same owned state as the fake.
func TestFederationMSC3757OwnedState(t *testing.T) {
	lat, h := startInterop(t)
	for _, ver := range []gomatrixserverlib.RoomVersion{ownedstate.V10, ownedstate.V11} {
		t.Run(string(ver), func(t *testing.T) { testFederationOwnedState(t, lat, h, ver) })
	}
}

func testFederationOwnedState(t *testing.T, lat *Server, h *interopHost, ver gomatrixserverlib.RoomVersion) {
	alice := lat.Register(t, "alice-"+strings.ReplaceAll(string(ver), ".", "-"))
	host, eve := "@host:"+string(h.fake.name), "@eve:"+string(h.fake.name)
	room := h.createRoom(t, ver, host, "Owned "+string(ver), "")
	empty := ""
	h.emit(t, room, host, spec.MRoomPowerLevels, &empty, map[string]any{
		"users": map[string]any{host: 100}, "users_default": 0, "events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 0, "events": map[string]any{ownedType: 0},
	})
	h.emit(t, room, eve, spec.MRoomMember, &eve, map[string]any{"membership": "join"})
	// eve is in a call before alice joins: her membership is in the state send_join returns.
	eveCall := eve + "_LAPTOP_m.call"
	eveCallEv := emitOwned(t, h, room, eve, eveCall, true)
	as := newSyncer(alice, bigTimeline)
	as.once(0)
	if r := joinRoom(alice, room.id, string(h.fake.name)); r.Status != 200 {
		t.Fatalf("alice joining the %s room on the fake: %d %s; fake saw %v", ver, r.Status, r.Raw, h.fake.requestsLike("/make_join/"))
	}
	if mj := h.fake.requestsLike("/make_join/" + url.PathEscape(room.id)); len(mj) == 0 || !strings.Contains(mj[len(mj)-1], "ver="+url.QueryEscape(string(ver))) {
		t.Errorf("make_join requests %v do not offer ver=%s", mj, ver)
	}
	if r := stateEvent(alice, room.id, ownedType, eveCall); str(r.Body, "by") != eve {
		t.Errorf("after the join, eve's call membership %s (in the send_join state) on Lattice: %d %s", eveCallEv.EventID(), r.Status, r.Raw)
	}

	// alice's MatrixRTC membership key: hers, accepted by the fake.
	aliceKey := alice.UserID + "_" + alice.DeviceID + "_m.call"
	r := putState(alice, room.id, ownedType, aliceKey, map[string]any{"by": alice.UserID})
	expectOK(t, r, "alice sets her owned key")
	aliceEv := str(r.Body, "event_id")
	if p := h.waitSent(30*time.Second, func(p gomatrixserverlib.PDU) bool { return p.EventID() == aliceEv }); p == nil {
		t.Fatalf("alice's owned state %s never reached the fake (30 s); log:\n%s", aliceEv, lat.Log())
	}

	// eve (power level 0, as alice) overwrites it: rejected; the message built on it is not.
	forged := emitOwned(t, h, room, eve, aliceKey, false)
	res := h.fake.sendPDUs(t, h.lat, pduRaws([]gomatrixserverlib.PDU{forged}))
	if res.Status != 200 {
		t.Fatalf("/send of eve's overwrite: %d %s", res.Status, res.Raw)
	}
	if pr, ok := pduResult(res, forged.EventID()); !ok || str(pr, "error") == "" {
		t.Errorf("/send of eve's overwrite: no error for %s in %s", forged.EventID(), res.Raw)
	}
	after := h.emit(t, room, host, "m.room.message", nil, message("after the overwrite"))
	h.sendToLattice(t, after)
	// eve's own key, and the host (power level 100) overwriting alice's: both allowed.
	eveKey := eve + "_PHONE"
	eveOwn := emitOwned(t, h, room, eve, eveKey, true)
	h.sendToLattice(t, eveOwn)
	if missing := syncUntilSeen(t, as, []string{after.EventID(), eveOwn.EventID()}, 30*time.Second); len(missing) > 0 {
		t.Fatalf("alice's /sync lacks %v (30 s); last sync %.1500s", missing, as.last.Raw)
	}
	for _, e := range as.tl[room.id] {
		if evID(e) == forged.EventID() {
			t.Errorf("eve's rejected overwrite %s is in alice's timeline", forged.EventID())
		}
	}
	if got := str(stateEvent(alice, room.id, ownedType, aliceKey).Body, "by"); got != alice.UserID {
		t.Errorf("alice's key after eve's overwrite holds content by %q, want alice's", got)
	}
	if got := str(stateEvent(alice, room.id, ownedType, eveKey).Body, "by"); got != eve {
		t.Errorf("eve's own key holds content by %q, want eve's", got)
	}
	expectErr(t, putState(alice, room.id, ownedType, eveKey, map[string]any{"by": alice.UserID}), "alice overwriting eve's key", 403, "M_FORBIDDEN")

	hostOver := emitOwned(t, h, room, host, aliceKey, true)
	h.sendToLattice(t, hostOver)
	if missing := syncUntilSeen(t, as, []string{hostOver.EventID()}, 30*time.Second); len(missing) > 0 {
		t.Fatalf("alice's /sync lacks the host's overwrite %v (30 s)", missing)
	}

	// The owned state converges: Lattice holds what the fake (rejecting eve's forgery) holds.
	state, sr := roomState(alice, room.id)
	if state == nil {
		t.Fatalf("GET state: %d %s", sr.Status, sr.Raw)
	}
	for _, k := range []string{ownedType + "|" + aliceKey, ownedType + "|" + eveKey, ownedType + "|" + eveCall} {
		h.mu.Lock()
		want := room.state[k]
		h.mu.Unlock()
		if want == nil || evID(state[k]) != want.EventID() {
			t.Errorf("%s: Lattice has %s, the fake %v", k, evID(state[k]), want)
		}
	}
	if evID(state[ownedType+"|"+aliceKey]) != hostOver.EventID() {
		t.Errorf("alice's key is not the host's overwrite %s", hostOver.EventID())
	}
	h.checkNoFailures(t)
}

// TestFederationMSC3757OwnedStateTwoLattices: two Lattice servers share an
// org.matrix.msc3757.11 room. bob (of B) writes his MatrixRTC key; neither carol (of A, his
// equal) nor bob on alice's key may overwrite; alice (the creator, of A) overwrites bob's
// key; both servers end with the same state.
func TestFederationMSC3757OwnedStateTwoLattices(t *testing.T) {
	ca := newTestCA(t)
	a, b := startFederatedServer(t, ca), startFederatedServer(t, ca)
	alice, carol, bob := a.Register(t, "alice"), a.Register(t, "carol"), b.Register(t, "bob")
	roomID := ownedRoom(t, alice, string(ownedstate.V11), carol)
	if r := joinRoom(bob, roomID, a.Name); r.Status != 200 {
		t.Fatalf("bob (of B) joining %s through A: %d %s", roomID, r.Status, r.Raw)
	}

	bobKey := bob.UserID + "_" + bob.DeviceID + "_m.call"
	expectOK(t, putState(bob, roomID, ownedType, bobKey, map[string]any{"by": bob.UserID}), "bob sets his owned key on B")
	seen := func(c *Client, key, by string) {
		t.Helper()
		if ok, got := poll(30*time.Second, 100*time.Millisecond, func() (bool, string) {
			got := str(stateEvent(c, roomID, ownedType, key).Body, "by")
			return got == by, got
		}); !ok {
			t.Fatalf("%s sees %q at %s, want content by %s (30 s)", c.UserID, got, key, by)
		}
	}
	seen(alice, bobKey, bob.UserID)
	expectErr(t, putState(carol, roomID, ownedType, bobKey, map[string]any{"by": carol.UserID}), "carol overwriting bob's key", 403, "M_FORBIDDEN")
	expectErr(t, putState(bob, roomID, ownedType, alice.UserID+"_X", map[string]any{"by": bob.UserID}), "bob writing alice's key", 403, "M_FORBIDDEN")
	expectOK(t, putState(alice, roomID, ownedType, bobKey, map[string]any{"by": alice.UserID}), "alice overwrites bob's key")
	seen(bob, bobKey, alice.UserID)

	if ok, diff := poll(30*time.Second, 200*time.Millisecond, func() (bool, string) {
		sa, _ := roomState(alice, roomID)
		sb, _ := roomState(bob, roomID)
		d := stateDiff(sa, sb)
		return sa != nil && d == "", d
	}); !ok {
		t.Errorf("A and B disagree on the room's state: %s", diff)
	}
}
