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
// resync the foreign server sends B events of zed's after bob's join, which B accepts; once
// the full state is in, B checks them again (MSC3902):
//   - banned before the join, zed speaks: the message is rejected (GET /event 404, gone from
//     /messages);
//   - banned, zed joins again and speaks: both are rejected, zed stays banned;
//   - banned, zed joins twice (a new display name): the second is checked against the state
//     without the rejected first, and the ban holds;
//   - not banned, zed leaves: the leave stays.
func TestFederationPartialStateRecheckMembership(t *testing.T) {
	message := map[string]any{"msgtype": "m.text", "body": "zed speaks"}
	for _, tc := range []struct {
		name   string
		ban    bool
		events []map[string]any // zed's events in order: member event contents, or message
		kept   bool             // the events stay accepted
		after  string           // zed's membership after the resync
	}{
		{name: "banned user speaks", ban: true, events: []map[string]any{message}, after: "ban"},
		{name: "banned user joins and speaks", ban: true, after: "ban",
			events: []map[string]any{{"membership": "join", "displayname": "zed again"}, message}},
		{name: "banned user joins twice", ban: true, after: "ban",
			events: []map[string]any{{"membership": "join", "displayname": "zed again"}, {"membership": "join", "displayname": "zed 2"}}},
		{name: "member leaves", events: []map[string]any{{"membership": "leave"}}, kept: true, after: "leave"},
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
			// Each event follows the one before, with zed's last membership event among its
			// auth events.
			var sent []gomatrixserverlib.PDU
			prev := bobJoin
			for n, content := range tc.events {
				typ, sk := "m.room.message", (*string)(nil)
				if _, member := content["membership"]; member {
					typ, sk = spec.MRoomMember, &zed
				}
				ev := build(typ, sk, content, prev, int64(100+n), state)
				send(ev)
				sent, prev = append(sent, ev), ev.EventID()
				if typ == spec.MRoomMember {
					kept := []gomatrixserverlib.PDU{ev}
					for _, s := range state {
						if s.Type() != spec.MRoomMember || s.StateKey() == nil || *s.StateKey() != zed {
							kept = append(kept, s)
						}
					}
					state = kept
				}
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
			inHistory := map[string]bool{}
			for _, e := range history(bob, roomID, 50) {
				inHistory[evID(e)] = true
			}
			for _, ev := range sent {
				if r := bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(ev.EventID()), nil); r.Status != want {
					t.Errorf("GET zed's %s on B after the resync: %d, want %d", ev.Type(), r.Status, want)
				}
				if inHistory[ev.EventID()] != tc.kept {
					t.Errorf("zed's %s in /messages on B after the resync: %v, want %v", ev.Type(), inHistory[ev.EventID()], tc.kept)
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
