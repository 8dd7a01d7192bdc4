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

// TestFederationPartialStateBannedRejoin: a foreign user banned before B's partial state
// join joins again during the resync (B, lacking the ban, accepts it), then speaks; once the
// full state is in, the join and the message are rejected and the ban is the membership.
func TestFederationPartialStateBannedRejoin(t *testing.T) {
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
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/ban", map[string]any{"user_id": zed, "reason": "spam"})

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
	var chain []json.RawMessage
	for _, ev := range froom.state {
		chain = append(chain, ev.JSON())
	}
	fake.setExtra(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/event_auth/") {
			return false
		}
		js, _ := json.Marshal(map[string]any{"auth_chain": chain})
		w.Write(js)
		return true
	})
	var state []gomatrixserverlib.PDU
	for _, ev := range froom.state {
		state = append(state, ev)
	}
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
	join := build(spec.MRoomMember, &zed, map[string]any{"membership": "join", "displayname": "zed again"}, bobJoin, 100, state)
	if r := fake.sendPDUs(t, spec.ServerName(b.Name), []json.RawMessage{join.JSON()}); r.Status != 200 {
		t.Fatalf("/send join: %d %s", r.Status, r.Raw)
	}
	bs.waitEvent(roomID, join.EventID())
	var st2 []gomatrixserverlib.PDU
	for _, ev := range state {
		if ev.Type() == spec.MRoomMember && ev.StateKey() != nil && *ev.StateKey() == zed {
			continue
		}
		st2 = append(st2, ev)
	}
	st2 = append(st2, join)
	msg := build("m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "banned zed speaks after rejoin"}, join.EventID(), 101, st2)
	if r := fake.sendPDUs(t, spec.ServerName(b.Name), []json.RawMessage{msg.JSON()}); r.Status != 200 {
		t.Fatalf("/send msg: %d %s", r.Status, r.Raw)
	}
	bs.waitEvent(roomID, msg.EventID())
	if strings.Contains(b.Log(), resyncComplete) {
		t.Fatalf("the resync completed too early")
	}
	if _, r := joinedMembers(bob, roomID); r.Status != 200 || !strings.Contains(b.Log(), resyncComplete) {
		t.Fatalf("/joined_members after the resync: %d %s", r.Status, r.Raw)
	}
	jm, _ := joinedMembers(bob, roomID)
	t.Logf("joined_members: %v", jm)
	if r := bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(join.EventID()), nil); r.Status != 404 {
		t.Errorf("GET zed's rejoin on B after the resync: %d, want 404", r.Status)
	}
	if r := bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(msg.EventID()), nil); r.Status != 404 {
		t.Errorf("GET zed's message on B after the resync: %d, want 404", r.Status)
	}
	if m := membership(bob, roomID, zed); m != "ban" {
		t.Errorf("zed's membership on B after the resync: %q, want ban", m)
	}
}

// TestFederationPartialStateLegitLeave: a member omitted from the partial state leaves
// during the resync; the leave stays accepted after it.
func TestFederationPartialStateLegitLeave(t *testing.T) {
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
	var chain []json.RawMessage
	for _, ev := range froom.state {
		chain = append(chain, ev.JSON())
	}
	fake.setExtra(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/event_auth/") {
			return false
		}
		js, _ := json.Marshal(map[string]any{"auth_chain": chain})
		w.Write(js)
		return true
	})
	var state []gomatrixserverlib.PDU
	for _, ev := range froom.state {
		state = append(state, ev)
	}
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
	join := build(spec.MRoomMember, &zed, map[string]any{"membership": "leave"}, bobJoin, 100, state)
	if r := fake.sendPDUs(t, spec.ServerName(b.Name), []json.RawMessage{join.JSON()}); r.Status != 200 {
		t.Fatalf("/send join: %d %s", r.Status, r.Raw)
	}
	bs.waitEvent(roomID, join.EventID())
	if strings.Contains(b.Log(), resyncComplete) {
		t.Fatalf("the resync completed too early")
	}
	if _, r := joinedMembers(bob, roomID); r.Status != 200 || !strings.Contains(b.Log(), resyncComplete) {
		t.Fatalf("/joined_members after the resync: %d %s", r.Status, r.Raw)
	}
	jm, _ := joinedMembers(bob, roomID)
	t.Logf("joined_members: %v", jm)
	if r := bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(join.EventID()), nil); r.Status != 200 {
		t.Errorf("GET zed's leave on B after the resync: %d, want 200", r.Status)
	}
	if m := membership(bob, roomID, zed); m != "leave" {
		t.Errorf("zed's membership on B after the resync: %q, want leave", m)
	}
}

// TestFederationPartialStateBannedRejoinTwice: as BannedRejoin with a second join (a new
// display name) after the first: the second is checked against the state without the
// rejected first, and the ban holds.
func TestFederationPartialStateBannedRejoinTwice(t *testing.T) {
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
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/ban", map[string]any{"user_id": zed, "reason": "spam"})

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
	var chain []json.RawMessage
	for _, ev := range froom.state {
		chain = append(chain, ev.JSON())
	}
	fake.setExtra(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/event_auth/") {
			return false
		}
		js, _ := json.Marshal(map[string]any{"auth_chain": chain})
		w.Write(js)
		return true
	})
	var state []gomatrixserverlib.PDU
	for _, ev := range froom.state {
		state = append(state, ev)
	}
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
	join := build(spec.MRoomMember, &zed, map[string]any{"membership": "join", "displayname": "zed again"}, bobJoin, 100, state)
	if r := fake.sendPDUs(t, spec.ServerName(b.Name), []json.RawMessage{join.JSON()}); r.Status != 200 {
		t.Fatalf("/send join: %d %s", r.Status, r.Raw)
	}
	bs.waitEvent(roomID, join.EventID())
	var st2 []gomatrixserverlib.PDU
	for _, ev := range state {
		if ev.Type() == spec.MRoomMember && ev.StateKey() != nil && *ev.StateKey() == zed {
			continue
		}
		st2 = append(st2, ev)
	}
	st2 = append(st2, join)
	msg := build(spec.MRoomMember, &zed, map[string]any{"membership": "join", "displayname": "zed 2"}, join.EventID(), 101, st2)
	if r := fake.sendPDUs(t, spec.ServerName(b.Name), []json.RawMessage{msg.JSON()}); r.Status != 200 {
		t.Fatalf("/send msg: %d %s", r.Status, r.Raw)
	}
	bs.waitEvent(roomID, msg.EventID())
	if strings.Contains(b.Log(), resyncComplete) {
		t.Fatalf("the resync completed too early")
	}
	if _, r := joinedMembers(bob, roomID); r.Status != 200 || !strings.Contains(b.Log(), resyncComplete) {
		t.Fatalf("/joined_members after the resync: %d %s", r.Status, r.Raw)
	}
	jm, _ := joinedMembers(bob, roomID)
	t.Logf("joined_members: %v", jm)
	if r := bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(join.EventID()), nil); r.Status != 404 {
		t.Errorf("GET zed's rejoin on B after the resync: %d, want 404", r.Status)
	}
	if r := bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(msg.EventID()), nil); r.Status != 404 {
		t.Errorf("GET zed's message on B after the resync: %d, want 404", r.Status)
	}
	if m := membership(bob, roomID, zed); m != "ban" {
		t.Errorf("zed's membership on B after the resync: %q, want ban", m)
	}
}

