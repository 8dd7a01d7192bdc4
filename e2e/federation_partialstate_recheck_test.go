package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestFederationPartialStateRecheckMembership: zed, a user of a foreign server, is in A's
// room when bob of B joins it with partial state, which lacks zed's membership. During the
// resync the foreign server sends B events of zed's, which B accepts; once the full state is
// in, they are checked again (MSC3902):
//   - banned before the join, zed joins again and speaks: both are rejected, zed stays banned;
//   - banned, zed joins twice (a new display name): the second is checked against the state
//     without the rejected first, and the ban holds;
//   - not banned, zed leaves: the leave stays.
func TestFederationPartialStateRecheckMembership(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ban    bool
		second map[string]any // content of zed's second event (a member event), nil: a message
		first  map[string]any // content of zed's first member event
		kept   bool           // the events stay accepted
		after  string         // zed's membership after the resync
	}{
		{name: "banned user joins and speaks", ban: true, first: map[string]any{"membership": "join", "displayname": "zed again"}, after: "ban"},
		{name: "banned user joins twice", ban: true, first: map[string]any{"membership": "join", "displayname": "zed again"},
			second: map[string]any{"membership": "join", "displayname": "zed 2"}, after: "ban"},
		{name: "member leaves", first: map[string]any{"membership": "leave"}, kept: true, after: "leave"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t)
			a := startFederatedServer(t, ca)
			b := startSlowResyncServer(t, ca, 700*time.Millisecond)
			fake := startFakeHomeserver(t, ca)
			alice := a.Register(t, "alice")
			roomID, _ := bigRoom(t, a, alice, 4)
			zed := "@zed:" + string(fake.name)
			froom, err := fake.join(t, spec.ServerName(a.Name), roomID, zed)
			if err != nil {
				t.Fatal(err)
			}
			if tc.ban {
				alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/ban", map[string]any{"user_id": zed, "reason": "spam"})
			}

			bob := b.Register(t, "bob")
			bs := newSyncer(bob, "")
			bs.once(0)
			if r := joinRoom(bob, roomID, a.Name); r.Status != 200 {
				t.Fatalf("bob joining through A: %d %s", r.Status, r.Raw)
			}
			bobJoin := ""
			bs.until("bob's join in his /sync", func(Resp) bool {
				for _, e := range bs.tl[roomID] {
					if evType(e) == spec.MRoomMember && str(e, "state_key") == bob.UserID {
						bobJoin = evID(e)
					}
				}
				return bobJoin != ""
			})
			// The foreign server answers B's questions about its events' auth with the
			// state it joined with (zed's membership from before the ban).
			var chain []json.RawMessage
			var state []gomatrixserverlib.PDU
			for _, ev := range froom.state {
				chain = append(chain, ev.JSON())
				state = append(state, ev)
			}
			fake.setExtra(func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/event_auth/") {
					return false
				}
				js, _ := json.Marshal(map[string]any{"auth_chain": chain})
				w.Write(js)
				return true
			})
			build := func(typ string, sk *string, content any, prev string, depth int64, st []gomatrixserverlib.PDU) gomatrixserverlib.PDU {
				c, _ := json.Marshal(content)
				builder := froom.ver.NewEventBuilderFromProtoEvent(&gomatrixserverlib.ProtoEvent{
					SenderID: zed, RoomID: roomID, Type: typ, StateKey: sk, PrevEvents: []string{prev}, Depth: depth, Content: c,
				})
				provider, err := gomatrixserverlib.NewAuthEvents(st)
				if err != nil {
					t.Fatal(err)
				}
				if err := builder.AddAuthEvents(provider); err != nil {
					t.Fatal(err)
				}
				ev, err := builder.Build(time.Now(), fake.name, fake.keyID, fake.priv)
				if err != nil {
					t.Fatal(err)
				}
				return ev
			}
			send := func(ev gomatrixserverlib.PDU) {
				if r := fake.sendPDUs(t, spec.ServerName(b.Name), []json.RawMessage{ev.JSON()}); r.Status != 200 {
					t.Fatalf("/send %s: %d %s", ev.Type(), r.Status, r.Raw)
				}
				bs.waitEvent(roomID, ev.EventID())
			}
			first := build(spec.MRoomMember, &zed, tc.first, bobJoin, 100, state)
			send(first)
			sent := []gomatrixserverlib.PDU{first}
			if tc.ban {
				var after []gomatrixserverlib.PDU
				for _, ev := range state {
					if ev.Type() != spec.MRoomMember || ev.StateKey() == nil || *ev.StateKey() != zed {
						after = append(after, ev)
					}
				}
				after = append(after, first)
				second := build("m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "banned zed speaks"}, first.EventID(), 101, after)
				if tc.second != nil {
					second = build(spec.MRoomMember, &zed, tc.second, first.EventID(), 101, after)
				}
				send(second)
				sent = append(sent, second)
			}
			if strings.Contains(b.Log(), resyncComplete) {
				t.Fatalf("the resync completed too early")
			}
			// /joined_members waits for the resync.
			if _, r := joinedMembers(bob, roomID); r.Status != 200 || !strings.Contains(b.Log(), resyncComplete) {
				t.Fatalf("/joined_members after the resync: %d %s", r.Status, r.Raw)
			}
			want := 404
			if tc.kept {
				want = 200
			}
			for _, ev := range sent {
				if r := bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(ev.EventID()), nil); r.Status != want {
					t.Errorf("GET zed's %s on B after the resync: %d, want %d", ev.Type(), r.Status, want)
				}
			}
			if m := membership(bob, roomID, zed); m != tc.after {
				t.Errorf("zed's membership on B after the resync: %q, want %q", m, tc.after)
			}
			if jm, _ := joinedMembers(bob, roomID); jm[zed] {
				t.Errorf("zed among the joined members after the resync: %v", jm)
			}
		})
	}
}
