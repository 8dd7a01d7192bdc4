package roomserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

// fakeRemote is a foreign server that builds and signs events of a room this roomserver
// hosts, choosing their prev_events itself.
type fakeRemote struct {
	t    *testing.T
	s    *Server
	name spec.ServerName
	key  ed25519.PrivateKey
	now  time.Time
}

// build makes an event with the given prev_events, its auth events selected from the state
// after those prev_events (as the remote server would see it).
func (f *fakeRemote) build(roomID, sender, evType string, stateKey *string, content any, prev []string) gomatrixserverlib.PDU {
	f.t.Helper()
	ctx := context.Background()
	r, err := f.s.lockRoom(ctx, roomID)
	if err != nil {
		f.t.Fatal(err)
	}
	defer r.mu.Unlock()
	prevEvs, err := f.s.prevEvents(ctx, &protoPrev{ids: prev})
	if err != nil {
		f.t.Fatal(err)
	}
	before, err := f.s.stateBefore(ctx, r, prevEvs)
	if err != nil {
		f.t.Fatal(err)
	}
	var depth int64
	for _, p := range prevEvs {
		depth = max(depth, p.Depth)
	}
	proto := gomatrixserverlib.ProtoEvent{SenderID: sender, RoomID: roomID, Type: evType, StateKey: stateKey,
		Content: spec.RawJSON(mustJSON(content)), Depth: depth + 1, PrevEvents: prev}
	needed, _ := gomatrixserverlib.StateNeededForProtoEvent(&proto)
	var keys []storage.StateKey
	for _, tu := range needed.Tuples() {
		keys = append(keys, storage.StateKey{Type: tu.EventType, StateKey: tu.StateKey})
	}
	authPDUs, err := f.s.stateEvents(ctx, r.version, before, keys)
	if err != nil {
		f.t.Fatal(err)
	}
	authEvents, _ := gomatrixserverlib.NewAuthEvents(authPDUs)
	b := r.version.NewEventBuilderFromProtoEvent(&proto)
	if err := b.AddAuthEvents(authEvents); err != nil {
		f.t.Fatal(err)
	}
	f.now = f.now.Add(time.Second)
	pdu, err := b.Build(f.now, f.name, "ed25519:r", f.key)
	if err != nil {
		f.t.Fatal(err)
	}
	return pdu
}

// join has user (of the fake server) join roomID through make_join and send_join, in the
// given room version.
func (f *fakeRemote) join(roomID, user, ver string) {
	f.t.Helper()
	ctx := context.Background()
	tmpl, err := f.s.MakeMembership(ctx, roomID, user, spec.Join, []gomatrixserverlib.RoomVersion{gomatrixserverlib.RoomVersion(ver)})
	if err != nil {
		f.t.Fatalf("make_join: %v", err)
	}
	join, err := gomatrixserverlib.MustGetRoomVersion(tmpl.Version).NewEventBuilderFromProtoEvent(&tmpl.Event).Build(time.Now(), f.name, "ed25519:r", f.key)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.s.SendMembership(ctx, f.name, spec.Join, join); err != nil {
		f.t.Fatalf("send_join: %v", err)
	}
}

// protoPrev lets prevEvents read a list of IDs.
type protoPrev struct {
	gomatrixserverlib.PDU
	ids []string
}

func (p *protoPrev) PrevEventIDs() []string { return p.ids }

func (s *Server) headIDs(t *testing.T, roomID string) []string {
	t.Helper()
	r, err := s.lockRoom(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.extremities {
		out = append(out, e.id)
	}
	return out
}

// powerLevelsContent returns the content of the room's current power levels and its users
// map (created when absent), for a test to change and send again.
func (s *Server) powerLevelsContent(t *testing.T, roomID string) (map[string]any, map[string]any) {
	t.Helper()
	content := s.currentContent(t, roomID, spec.MRoomPowerLevels, "")
	users, _ := content["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
		content["users"] = users
	}
	return content, users
}

func (s *Server) currentContent(t *testing.T, roomID, evType, stateKey string) map[string]any {
	t.Helper()
	r, err := s.lockRoom(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.mu.Unlock()
	return s.StateContent(context.Background(), r.state, storage.StateKey{Type: evType, StateKey: stateKey})
}

// TestRemoteEvents drives the checks on receipt of a PDU: a remote join through
// SendMembership, concurrent topic changes resolved by state resolution, an event from a
// non-member rejected, and an event that passes at its place in the DAG but not against the
// current state soft-failed. Each is checked in room versions 10 (state resolution v2) and
// 12 (v2.1).
func TestRemoteEvents(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		for _, ver := range []string{"10", "12"} {
			t.Run("v"+ver, func(t *testing.T) { testRemoteEvents(t, url, ver) })
		}
	})
}

func testRemoteEvents(t *testing.T, url, ver string) {
	ctx := context.Background()
	s, rec := newTestServer(t, url)
	_, key, _ := ed25519.GenerateKey(nil)
	f := &fakeRemote{t: t, s: s, name: "remote", key: key, now: time.Now()}
	alice, bob := "@alice:test", "@bob:remote"
	roomID, err := s.CreateRoom(ctx, alice, "D", CreateRoomRequest{Preset: PresetPublicChat, RoomVersion: ver})
	if err != nil {
		t.Fatal(err)
	}

	// bob joins through make_join / send_join.
	tmpl, err := s.MakeMembership(ctx, roomID, bob, spec.Join, []gomatrixserverlib.RoomVersion{gomatrixserverlib.RoomVersion(ver)})
	if err != nil {
		t.Fatalf("make_join: %v", err)
	}
	verImpl := gomatrixserverlib.MustGetRoomVersion(tmpl.Version)
	join, err := verImpl.NewEventBuilderFromProtoEvent(&tmpl.Event).Build(time.Now(), "remote", "ed25519:r", key)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := s.SendMembership(ctx, "remote", spec.Join, join)
	if err != nil {
		t.Fatalf("send_join: %v", err)
	}
	if len(sa.State) == 0 || len(sa.AuthChain) == 0 {
		t.Fatalf("send_join answered %d state events and %d auth events", len(sa.State), len(sa.AuthChain))
	}
	if m, _ := s.Membership(ctx, roomID, bob); m != spec.Join {
		t.Fatalf("bob's membership after send_join: %q", m)
	}
	// alice makes bob a moderator, so that his state changes pass the auth rules.
	plContent, users := s.powerLevelsContent(t, roomID)
	users[bob] = 50
	if _, err := s.SetState(ctx, Sender{UserID: alice}, roomID, spec.MRoomPowerLevels, "", mustJSON(plContent)); err != nil {
		t.Fatal(err)
	}

	// A fork: alice and bob change the topic from the same prev_event.
	base := s.headIDs(t, roomID)
	if _, err := s.SetState(ctx, Sender{UserID: alice}, roomID, "m.room.topic", "", mustJSON(map[string]string{"topic": "alice's"})); err != nil {
		t.Fatal(err)
	}
	empty := ""
	bobTopic := f.build(roomID, bob, "m.room.topic", &empty, map[string]string{"topic": "bob's"}, base)
	if err := s.InputRemote(ctx, "remote", bobTopic); err != nil {
		t.Fatalf("bob's concurrent topic: %v", err)
	}
	if heads := s.headIDs(t, roomID); len(heads) != 2 {
		t.Fatalf("forward extremities after the fork: %v, want 2", heads)
	}
	// Both topics are set by users allowed to, in the same power-levels mainline: the later
	// origin_server_ts (bob's, built after alice's) wins.
	if got := s.currentContent(t, roomID, "m.room.topic", "")["topic"]; got != "bob's" {
		t.Fatalf("resolved topic %v, want bob's", got)
	}
	// alice's next event joins the two branches.
	if _, err := s.SendMessage(ctx, Sender{UserID: alice}, roomID, "m.room.message", mustJSON(map[string]string{"msgtype": "m.text", "body": "merge"}), ""); err != nil {
		t.Fatal(err)
	}
	if heads := s.headIDs(t, roomID); len(heads) != 1 {
		t.Fatalf("forward extremities after a local event: %v, want 1", heads)
	}

	// A message from a user who never joined is rejected and never shown.
	mallory := f.build(roomID, "@mallory:remote", "m.room.message", nil, map[string]string{"body": "hi"}, s.headIDs(t, roomID))
	var rej *RejectedError
	if err := s.InputRemote(ctx, "remote", mallory); !errors.As(err, &rej) {
		t.Fatalf("non-member's message: %v, want a rejection", err)
	}
	if ev, err := s.db.Event(ctx, mallory.EventID()); err != nil || ev.Status != storage.StatusRejected || ev.Visible() {
		t.Fatalf("non-member's message stored as %+v, %v", ev, err)
	}

	// Soft failure: alice demotes bob; bob, not having seen it, changes the topic.
	base = s.headIDs(t, roomID)
	users[bob] = 0
	if _, err := s.SetState(ctx, Sender{UserID: alice}, roomID, spec.MRoomPowerLevels, "", mustJSON(plContent)); err != nil {
		t.Fatal(err)
	}
	late := f.build(roomID, bob, "m.room.topic", &empty, map[string]string{"topic": "too late"}, base)
	if err := s.InputRemote(ctx, "remote", late); err != nil {
		t.Fatalf("soft-failed event: %v, want no error", err)
	}
	if ev, err := s.db.Event(ctx, late.EventID()); err != nil || ev.Status != storage.StatusSoftFailed || ev.Visible() {
		t.Fatalf("bob's late topic stored as %+v, %v", ev, err)
	}
	if got := s.currentContent(t, roomID, "m.room.topic", "")["topic"]; got != "bob's" {
		t.Fatalf("topic after a soft-failed change: %v", got)
	}
	// A power-level change by a user without power is rejected.
	users[bob] = 100
	grab := f.build(roomID, bob, spec.MRoomPowerLevels, &empty, plContent, s.headIDs(t, roomID))
	if err := s.InputRemote(ctx, "remote", grab); !errors.As(err, &rej) {
		t.Fatalf("power grab: %v, want a rejection", err)
	}
	if rec.pos == 0 {
		t.Fatal("the listener was never told of an event")
	}
}

// TestManyExtremities: a local event cites at most maxPrevEvents forward extremities, the
// newest; the others stay extremities and the next local events merge them.
func TestManyExtremities(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := newTestServer(t, url)
		_, key, _ := ed25519.GenerateKey(nil)
		f := &fakeRemote{t: t, s: s, name: "remote", key: key, now: time.Now()}
		alice, bob := "@alice:test", "@bob:remote"
		roomID, err := s.CreateRoom(ctx, alice, "D", CreateRoomRequest{Preset: PresetPublicChat})
		if err != nil {
			t.Fatal(err)
		}
		f.join(roomID, bob, "12")
		base := s.headIDs(t, roomID)
		for i := range 14 {
			m := f.build(roomID, bob, "m.room.message", nil, map[string]any{"body": i}, base)
			if err := s.InputRemote(ctx, "remote", m); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(s.headIDs(t, roomID)); n != 14 {
			t.Fatalf("%d forward extremities after 14 concurrent remote messages, want 14", n)
		}
		id, err := s.SendMessage(ctx, Sender{UserID: alice}, roomID, "m.room.message", mustJSON(map[string]string{"body": "merge"}), "")
		if err != nil {
			t.Fatal(err)
		}
		ev, _ := s.db.Event(ctx, id)
		pdu, _ := gomatrixserverlib.MustGetRoomVersion("12").NewEventFromTrustedJSON(ev.JSON, false)
		if n := len(pdu.PrevEventIDs()); n != maxPrevEvents {
			t.Fatalf("the local event cites %d prev_events, want %d", n, maxPrevEvents)
		}
		if n := len(s.headIDs(t, roomID)); n != 14-maxPrevEvents+1 {
			t.Fatalf("%d forward extremities after the local event, want %d", n, 14-maxPrevEvents+1)
		}
		if _, err := s.SendMessage(ctx, Sender{UserID: alice}, roomID, "m.room.message", mustJSON(map[string]string{"body": "merge again"}), ""); err != nil {
			t.Fatal(err)
		}
		if heads := s.headIDs(t, roomID); len(heads) != 1 {
			t.Fatalf("forward extremities after the second local event: %d, want 1", len(heads))
		}
	})
}

// TestRemoteDepthAndBackfillGuards: a remote event claiming a huge depth does not stop local
// users from sending; backfill never makes a soft-failed event visible, and takes only the
// history reachable from the events asked for.
func TestRemoteDepthAndBackfillGuards(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := newTestServer(t, url)
		_, key, _ := ed25519.GenerateKey(nil)
		f := &fakeRemote{t: t, s: s, name: "remote", key: key, now: time.Now()}
		alice, bob := "@alice:test", "@bob:remote"
		roomID, err := s.CreateRoom(ctx, alice, "D", CreateRoomRequest{Preset: PresetPublicChat})
		if err != nil {
			t.Fatal(err)
		}
		f.join(roomID, bob, "12")
		// A message claiming the largest depth there is.
		r, _ := s.lockRoom(ctx, roomID)
		prev := r.extremities[0].id
		r.mu.Unlock()
		deep := f.buildDepth(roomID, bob, []string{prev}, maxEventDepth)
		if err := s.InputRemote(ctx, "remote", deep); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SendMessage(ctx, Sender{UserID: alice}, roomID, "m.room.message", mustJSON(map[string]string{"body": "still here"}), ""); err != nil {
			t.Fatalf("a local message after a remote event of depth 2^53-1: %v", err)
		}

		// A soft-failed event offered again by backfill stays soft-failed.
		plContent, users := s.powerLevelsContent(t, roomID)
		users[bob] = 50
		if _, err := s.SetState(ctx, Sender{UserID: alice}, roomID, spec.MRoomPowerLevels, "", mustJSON(plContent)); err != nil {
			t.Fatal(err)
		}
		base := s.headIDs(t, roomID)
		users[bob] = 0
		if _, err := s.SetState(ctx, Sender{UserID: alice}, roomID, spec.MRoomPowerLevels, "", mustJSON(plContent)); err != nil {
			t.Fatal(err)
		}
		empty := ""
		late := f.build(roomID, bob, "m.room.topic", &empty, map[string]string{"topic": "late"}, base)
		if err := s.InputRemote(ctx, "remote", late); err != nil {
			t.Fatal(err)
		}
		r, _ = s.lockRoom(ctx, roomID)
		n, err := s.storeBackfilled(ctx, r, "remote", reachable([]gomatrixserverlib.PDU{late}, []string{late.EventID()}, 10), 0)
		r.mu.Unlock()
		if err != nil || n != 0 {
			t.Fatalf("backfill of a soft-failed event stored %d (%v)", n, err)
		}
		if ev, _ := s.db.Event(ctx, late.EventID()); ev.Status != storage.StatusSoftFailed || ev.Visible() {
			t.Fatalf("the soft-failed event after backfill: status %q", ev.Status)
		}
		// Events not reachable from what was asked for are not taken.
		if got := reachable([]gomatrixserverlib.PDU{late, deep}, []string{deep.EventID()}, 10); len(got) != 1 || got[0].EventID() != deep.EventID() {
			t.Fatalf("reachable from %s: %d events", deep.EventID(), len(got))
		}
	})
}

// buildDepth builds a message with the given prev_events and a chosen depth.
func (f *fakeRemote) buildDepth(roomID, sender string, prev []string, depth int64) gomatrixserverlib.PDU {
	f.t.Helper()
	pdu := f.build(roomID, sender, "m.room.message", nil, map[string]string{"body": "deep"}, prev)
	ctx := context.Background()
	r, err := f.s.lockRoom(ctx, roomID)
	if err != nil {
		f.t.Fatal(err)
	}
	defer r.mu.Unlock()
	proto := gomatrixserverlib.ProtoEvent{SenderID: sender, RoomID: roomID, Type: "m.room.message",
		Content: spec.RawJSON(`{"body":"deep"}`), Depth: depth, PrevEvents: prev, AuthEvents: pdu.AuthEventIDs()}
	out, err := r.version.NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), f.name, "ed25519:r", f.key)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// TestOutlierPromoted: an event first learnt as an outlier (the auth or state of another
// event) that then arrives as an event extending the room's DAG joins the DAG and the
// timeline; an outlier older than the DAG this server has stays an outlier.
func TestOutlierPromoted(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := newTestServer(t, url)
		_, key, _ := ed25519.GenerateKey(nil)
		f := &fakeRemote{t: t, s: s, name: "remote", key: key, now: time.Now()}
		alice, bob := "@alice:test", "@bob:remote"
		roomID, err := s.CreateRoom(ctx, alice, "D", CreateRoomRequest{Preset: PresetPublicChat})
		if err != nil {
			t.Fatal(err)
		}
		f.join(roomID, bob, "12")
		msg := f.build(roomID, bob, "m.room.message", nil, map[string]string{"body": "hi"}, s.headIDs(t, roomID))
		r, _ := s.lockRoom(ctx, roomID)
		if err := s.storeOutliers(ctx, r, []gomatrixserverlib.PDU{msg}); err != nil {
			r.mu.Unlock()
			t.Fatal(err)
		}
		r.mu.Unlock()
		if ev, _ := s.db.Event(ctx, msg.EventID()); ev == nil || ev.Status != storage.StatusOutlier {
			t.Fatalf("stored as %+v, want an outlier", ev)
		}
		if err := s.InputRemote(ctx, "remote", msg); err != nil {
			t.Fatal(err)
		}
		ev, _ := s.db.Event(ctx, msg.EventID())
		if ev == nil || !ev.Visible() || ev.StateBeforeNID == 0 {
			t.Fatalf("after arriving as an event of the room: %+v, want it in the timeline with its state", ev)
		}
		if heads := s.headIDs(t, roomID); len(heads) != 1 || heads[0] != msg.EventID() {
			t.Fatalf("forward extremities %v, want the promoted event", heads)
		}
		// The room's create event, an outlier nowhere here, is not made an extremity by
		// arriving again: it has no prev_events in the DAG.
		r, _ = s.lockRoom(ctx, roomID)
		create, _ := s.roomCreateEvent(ctx, r)
		r.mu.Unlock()
		if err := s.InputRemote(ctx, "remote", create); err != nil {
			t.Fatal(err)
		}
		if heads := s.headIDs(t, roomID); len(heads) != 1 {
			t.Fatalf("forward extremities after the create event came again: %v", heads)
		}
	})
}
