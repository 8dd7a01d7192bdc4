package e2e

// Restricted rooms (join rules restricted and knock_restricted, room versions 8 and later):
// joins allowed by membership of another room, authorised by a member who may invite, named
// in the join's content.join_authorised_via_users_server (client-server API "Restricted
// rooms"; the auth rules of rooms/v8.md onwards).

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// restrictedJoinRules is the content of a join rules event that lets the joined members of
// allowed join.
func restrictedJoinRules(rule, allowed string) map[string]any {
	return map[string]any{"join_rule": rule, "allow": []any{
		map[string]any{"type": "m.room_membership", "room_id": allowed},
	}}
}

// createRestricted has c create a public room (the space) and a room of version ver whose
// join rule (restricted or knock_restricted) allows the space's joined members, where
// inviting takes power level 50; it returns both IDs.
func createRestricted(c *Client, ver, rule string) (space, room string) {
	c.t.Helper()
	space = c.CreateRoom(map[string]any{"preset": "public_chat", "room_version": ver, "name": "Space",
		"creation_content": map[string]any{"type": "m.space"}})
	room = c.CreateRoom(map[string]any{"preset": "private_chat", "room_version": ver, "name": "Restricted",
		"power_level_content_override": map[string]any{"invite": 50},
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "",
			"content": restrictedJoinRules(rule, space)}}})
	return space, room
}

// authorisedVia returns the join_authorised_via_users_server of userID's member event in
// roomID as c sees it.
func authorisedVia(t *testing.T, c *Client, roomID, userID string) string {
	t.Helper()
	r := stateEvent(c, roomID, "m.room.member", userID)
	expectOK(t, r, "GET the member event of "+userID)
	return str(r.Body, "join_authorised_via_users_server")
}

// TestRestrictedJoinLocal: on one server, in room versions 10 and 12, a member of the allowed
// room joins a restricted room and the join names a member who may invite (the creator); a
// user in none of the allowed rooms gets 403 M_FORBIDDEN; a joined member's join→join update
// (a display name) that still carries join_authorised_via_users_server is accepted; once the
// creator has left, the join is authorised by another member with invite power, and with
// nobody left who may invite it is M_UNABLE_TO_GRANT_JOIN; knock_restricted allows both the
// restricted join and a knock.
func TestRestrictedJoinLocal(t *testing.T) {
	s := StartServer(t)
	alice, bob, carol, dave, erin := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol"), s.Register(t, "dave"), s.Register(t, "erin")
	for _, ver := range []string{"10", "12"} {
		t.Run("v"+ver, func(t *testing.T) {
			alice, bob, carol, dave, erin := rebind(alice, t), rebind(bob, t), rebind(carol, t), rebind(dave, t), rebind(erin, t)
			space, room := createRestricted(alice, ver, "restricted")

			r := joinRoom(carol, room)
			expectErr(t, r, "carol (in no allowed room) joining the restricted room", 403, "M_FORBIDDEN")

			// A join→join update keeps the content a client copied from the member event;
			// join_authorised_via_users_server only matters for a join from leave.
			expectOK(t, alice.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": erin.UserID}), "inviting erin")
			join(erin, room)
			r = putState(erin, room, "m.room.member", erin.UserID, map[string]any{"membership": "join",
				"displayname": "Erin in the room", "join_authorised_via_users_server": alice.UserID})
			expectOK(t, r, "erin's display name change carrying join_authorised_via_users_server")

			join(bob, space)
			join(bob, room)
			if got := authorisedVia(t, alice, room, bob.UserID); got != alice.UserID {
				t.Errorf("bob's join: join_authorised_via_users_server %q, want %q", got, alice.UserID)
			}

			r = putState(bob, room, "m.room.member", bob.UserID, map[string]any{"membership": "join",
				"displayname": "Bob in the room", "join_authorised_via_users_server": alice.UserID})
			expectOK(t, r, "bob's display name change carrying join_authorised_via_users_server")
			if r := stateEvent(alice, room, "m.room.member", bob.UserID); str(r.Body, "displayname") != "Bob in the room" {
				t.Errorf("bob's member event after the change: %s", r.Raw)
			}

			// dave may invite; the creator leaves: dave authorises the next join.
			pl := powerLevels(t, alice, room)
			users, _ := pl["users"].(map[string]any)
			if users == nil {
				users = map[string]any{}
			}
			users[dave.UserID] = 50
			pl["users"], pl["invite"] = users, 50
			expectOK(t, putState(alice, room, "m.room.power_levels", "", pl), "power levels giving dave invite power")
			invite := alice.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": dave.UserID})
			expectOK(t, invite, "inviting dave")
			join(dave, room)
			expectOK(t, call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}), "alice leaving")
			join(carol, space)
			join(carol, room)
			if got := authorisedVia(t, dave, room, carol.UserID); got != dave.UserID {
				t.Errorf("carol's join after the creator left: join_authorised_via_users_server %q, want %q", got, dave.UserID)
			}

			// Nobody left who may invite: the join cannot be granted.
			expectOK(t, call(dave, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}), "dave leaving")
			expectOK(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}), "bob leaving")
			r = joinRoom(bob, room)
			expectErr(t, r, "bob joining with only carol (no invite power) in the room", 400, "M_UNABLE_TO_GRANT_JOIN")
		})
	}
	t.Run("knock_restricted", func(t *testing.T) {
		alice, bob, carol := rebind(alice, t), rebind(bob, t), rebind(carol, t)
		space, room := createRestricted(alice, "10", "knock_restricted")
		join(bob, space)
		join(bob, room)
		if got := authorisedVia(t, alice, room, bob.UserID); got != alice.UserID {
			t.Errorf("bob's join: join_authorised_via_users_server %q, want %q", got, alice.UserID)
		}
		r := call(carol, "POST", "/_matrix/client/v3/knock/"+esc(room), map[string]any{"reason": "hello"})
		expectOK(t, r, "carol knocking on the knock_restricted room")
		if m := membership(alice, room, carol.UserID); m != "knock" {
			t.Errorf("carol's membership after knocking: %q, want knock", m)
		}
	})
}

// TestFederationRestrictedJoin: alice of A hosts a space and a restricted room that allows its
// members. Users of B join through A:
//   - carol, in no allowed room, gets A's 403 M_FORBIDDEN;
//   - bob, in the space, joins; B asks the fake server first, which answers make_join with
//     M_UNABLE_TO_GRANT_JOIN, and goes on to A; A names alice in the join and signs it;
//   - bob changes his display name with content copied from his member event (the key
//     naming alice, whose server did not sign this event): both servers accept it;
//   - dan, in the space, joins while B is in the room but has no user who may invite: B
//     joins him through A.
func TestFederationRestrictedJoin(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	fake := startFakeHomeserver(t, ca)
	alice := a.Register(t, "alice")
	bob, carol, dan := b.Register(t, "bob"), b.Register(t, "carol"), b.Register(t, "dan")
	space, room := createRestricted(alice, "10", "restricted")

	r := joinRoom(carol, room, a.Name)
	expectErr(t, r, "carol (in no allowed room) joining through A", 403, "M_FORBIDDEN")

	expectOK(t, joinRoom(bob, space, a.Name), "bob joining the space")
	fake.setExtra(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/make_join/") {
			return false
		}
		w.WriteHeader(400)
		w.Write([]byte(`{"errcode":"M_UNABLE_TO_GRANT_JOIN","error":"nobody here may invite"}`))
		return true
	})
	r = joinRoom(bob, room, string(fake.name), a.Name)
	expectOK(t, r, "bob joining the restricted room (the fake first, then A)")
	if len(fake.requestsLike("/make_join/")) == 0 {
		t.Errorf("B never asked the fake server (the first via) for make_join; the fake saw %v", fake.requestsLike("/"))
	}
	waitMembership(t, alice, room, bob.UserID, "join")
	if got := authorisedVia(t, alice, room, bob.UserID); got != alice.UserID {
		t.Errorf("bob's join on A: join_authorised_via_users_server %q, want %q", got, alice.UserID)
	}
	if got := authorisedVia(t, bob, room, bob.UserID); got != alice.UserID {
		t.Errorf("bob's join on B: join_authorised_via_users_server %q, want %q", got, alice.UserID)
	}

	r = putState(bob, room, "m.room.member", bob.UserID, map[string]any{"membership": "join",
		"displayname": "Bob of B", "join_authorised_via_users_server": alice.UserID})
	expectOK(t, r, "bob's display name change with the copied content")
	ok, last := poll(30*time.Second, 200*time.Millisecond, func() (bool, string) {
		r := stateEvent(alice, room, "m.room.member", bob.UserID)
		return str(r.Body, "displayname") == "Bob of B", string(r.Raw)
	})
	if !ok {
		t.Errorf("A never showed bob's new display name; last member event: %s; B's log:\n%s", last, b.Log())
	}

	expectOK(t, joinRoom(dan, space, a.Name), "dan joining the space")
	waitMembership(t, alice, space, dan.UserID, "join") // B, in the space, joined him itself
	r = joinRoom(dan, room)
	expectOK(t, r, "dan joining the restricted room B is in, with nobody on B who may invite")
	waitMembership(t, alice, room, dan.UserID, "join")
	if got := authorisedVia(t, alice, room, dan.UserID); got != alice.UserID {
		t.Errorf("dan's join on A: join_authorised_via_users_server %q, want %q", got, alice.UserID)
	}
}

// TestFederationInteropRestrictedJoin: a homeserver that is not Lattice (the fake, with
// gomatrixserverlib) joins a Lattice room restricted to a space's members, in room versions
// 10 and 12. For a user in no allowed room make_join is 403 M_FORBIDDEN; once eve is in the
// space, make_join's template names alice in join_authorised_via_users_server, and send_join
// (v2, and the deprecated v1 with its [200, body] answer) returns the join with Lattice's
// valid signature added. The v1 send_leave answers [200, {}] and the leave takes effect.
// make_join is 400 M_UNABLE_TO_AUTHORISE_JOIN for a room restricted to a room Lattice is not
// in, and 400 M_UNABLE_TO_GRANT_JOIN when no user of Lattice in the room may invite.
func TestFederationInteropRestrictedJoin(t *testing.T) {
	lat, h := startInterop(t)
	alice, bob := lat.Register(t, "alice"), lat.Register(t, "bob")
	latKeys := publishedKeys(t, h.fake, spec.ServerName(lat.Name))
	for _, ver := range interopVersions {
		t.Run("v"+string(ver), func(t *testing.T) {
			alice := rebind(alice, t)
			space, room := createRestricted(alice, string(ver), "restricted")
			eve, frank := "@eve:"+string(h.fake.name), "@frank:"+string(h.fake.name)
			mj := h.fake.request(t, "GET", h.lat, "/_matrix/federation/v1/make_join/"+url.PathEscape(room)+"/"+url.PathEscape(eve)+"?ver="+string(ver), nil)
			if mj.Status != 403 || str(mj.Body, "errcode") != "M_FORBIDDEN" {
				t.Errorf("make_join for eve, in no allowed room: %d %s, want 403 M_FORBIDDEN", mj.Status, mj.Raw)
			}
			for _, u := range []string{eve, frank} {
				if _, err := h.fake.join(t, h.lat, space, u); err != nil {
					t.Fatalf("%s joining the space: %v", u, err)
				}
			}
			for _, c := range []struct{ user, sendJoin string }{{eve, "v2"}, {frank, "v1"}} {
				joined, err := h.fake.joinVersion(t, h.lat, room, c.user, c.sendJoin)
				if err != nil {
					t.Fatalf("%s joining the restricted room with send_join %s: %v; server log:\n%s", c.user, c.sendJoin, err, lat.Log())
				}
				var content map[string]any
				_ = json.Unmarshal(joined.template.Content, &content)
				if content["join_authorised_via_users_server"] != alice.UserID {
					t.Errorf("make_join template for %s: content %v, want join_authorised_via_users_server %s", c.user, content, alice.UserID)
				}
				checkLatticeSigned(t, joined, spec.ServerName(lat.Name), latKeys, h.fake.name)
				waitMembership(t, alice, room, c.user, "join")
			}
			sl, err := h.fake.leave(t, h.lat, room, frank, "v1")
			if err != nil {
				t.Fatalf("frank leaving with send_leave v1: %v", err)
			}
			var pair []json.RawMessage
			if json.Unmarshal(sl.Raw, &pair) != nil || len(pair) != 2 || string(pair[0]) != "200" || string(pair[1]) != "{}" {
				t.Errorf("send_leave v1 answer: %s, want [200, {}]", sl.Raw)
			}
			waitMembership(t, alice, room, frank, "leave")

			// A room restricted to a room Lattice is not in: it cannot tell.
			other := alice.CreateRoom(map[string]any{"preset": "private_chat", "room_version": string(ver),
				"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "",
					"content": restrictedJoinRules("restricted", "!elsewhere:"+string(h.fake.name))}}})
			mj = h.fake.request(t, "GET", h.lat, "/_matrix/federation/v1/make_join/"+url.PathEscape(other)+"/"+url.PathEscape(eve)+"?ver="+string(ver), nil)
			if mj.Status != 400 || str(mj.Body, "errcode") != "M_UNABLE_TO_AUTHORISE_JOIN" {
				t.Errorf("make_join of a room restricted to a room Lattice is not in: %d %s, want 400 M_UNABLE_TO_AUTHORISE_JOIN", mj.Status, mj.Raw)
			}

			// Lattice's only user left in the room (bob) may not invite; eve may, but is not
			// Lattice's to name: Lattice cannot grant frank's join.
			bob := rebind(bob, t)
			join(bob, space)
			join(bob, room)
			pl := powerLevels(t, alice, room)
			users, _ := pl["users"].(map[string]any)
			if users == nil {
				users = map[string]any{}
			}
			users[eve] = 100
			pl["users"] = users
			expectOK(t, putState(alice, room, "m.room.power_levels", "", pl), "power levels giving eve invite power")
			expectOK(t, call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}), "alice leaving")
			mj = h.fake.request(t, "GET", h.lat, "/_matrix/federation/v1/make_join/"+url.PathEscape(room)+"/"+url.PathEscape(frank)+"?ver="+string(ver), nil)
			if mj.Status != 400 || str(mj.Body, "errcode") != "M_UNABLE_TO_GRANT_JOIN" {
				t.Errorf("make_join with nobody on Lattice who may invite: %d %s, want 400 M_UNABLE_TO_GRANT_JOIN", mj.Status, mj.Raw)
			}
		})
	}
}

// checkLatticeSigned checks the event of a send_join answer: the fake's join (same event
// ID), with valid signatures of both the fake and Lattice.
func checkLatticeSigned(t *testing.T, joined *fakeRoom, lat spec.ServerName, latKeys map[gomatrixserverlib.KeyID]ed25519.PublicKey, fake spec.ServerName) {
	t.Helper()
	if len(joined.answered) == 0 {
		t.Errorf("the send_join answer has no event")
		return
	}
	ev, err := joined.ver.NewEventFromUntrustedJSON(joined.answered)
	if err != nil {
		t.Errorf("the send_join answer's event: %v: %s", err, joined.answered)
		return
	}
	if ev.EventID() != joined.latest.EventID() {
		t.Errorf("the send_join answer's event is %s, the join sent was %s", ev.EventID(), joined.latest.EventID())
	}
	redacted, err := joined.ver.RedactEventJSON(ev.JSON())
	if err != nil {
		t.Fatal(err)
	}
	v := &keyVerifier{keys: map[spec.ServerName]map[gomatrixserverlib.KeyID]ed25519.PublicKey{lat: latKeys}}
	res, _ := v.VerifyJSONs(context.Background(), []gomatrixserverlib.VerifyJSONRequest{{ServerName: lat, Message: redacted}})
	if res[0].Error != nil {
		t.Errorf("the send_join answer's event has no valid signature of Lattice: %v: %s", res[0].Error, joined.answered)
	}
	if !strings.Contains(string(joined.answered), string(fake)) {
		t.Errorf("the send_join answer's event lost the fake's signature: %s", joined.answered)
	}
}
