package roomserver

import (
	"context"
	"crypto/ed25519"
	"slices"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// shortChainRemote is a server whose /state_ids auth chains fall short: get_missing_events
// gives nothing, /state_ids leaves the events of omit out of auth_chain_ids, and /event and
// /event_auth answer from events in full.
type shortChainRemote struct {
	Remote    // nil: any other request fails the test with a panic
	events    map[string]gomatrixserverlib.PDU
	before    map[string][]string // event ID -> the state before it
	omit      map[string]bool
	eventAuth []string // the events /event_auth was asked for
}

func (f *shortChainRemote) MissingEvents(context.Context, spec.ServerName, gomatrixserverlib.IRoomVersion, string, []string, []string, int, int64) ([]gomatrixserverlib.PDU, error) {
	return nil, nil
}

func (f *shortChainRemote) StateIDs(_ context.Context, _ spec.ServerName, _, eventID string) ([]string, []string, error) {
	var chain []string
	for _, id := range f.chain(f.before[eventID]) {
		if !f.omit[id] {
			chain = append(chain, id)
		}
	}
	return f.before[eventID], chain, nil
}

func (f *shortChainRemote) Event(_ context.Context, _ spec.ServerName, _ gomatrixserverlib.IRoomVersion, eventID string) (gomatrixserverlib.PDU, error) {
	if p, ok := f.events[eventID]; ok {
		return p, nil
	}
	return nil, spec.NotFound("unknown event")
}

func (f *shortChainRemote) EventAuth(_ context.Context, _ spec.ServerName, _ gomatrixserverlib.IRoomVersion, _, eventID string) ([]gomatrixserverlib.PDU, error) {
	f.eventAuth = append(f.eventAuth, eventID)
	var out []gomatrixserverlib.PDU
	for _, id := range f.chain([]string{eventID}) {
		out = append(out, f.events[id])
	}
	return out, nil
}

// chain returns the IDs of the auth chain of the events ids, as far as the remote knows it.
func (f *shortChainRemote) chain(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	var queue []string
	for _, id := range ids {
		if p, ok := f.events[id]; ok {
			queue = append(queue, p.AuthEventIDs()...)
		}
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		p, ok := f.events[id]
		if seen[id] || !ok {
			continue
		}
		seen[id] = true
		out = append(out, id)
		queue = append(queue, p.AuthEventIDs()...)
	}
	return out
}

// TestStateIDsShortAuthChain: the state before a gap comes from a /state_ids answer whose
// auth chain lacks carol's invite, which her join (in that state) cites and nothing else
// leads to. The roomserver must fetch her join's auth chain with /event_auth rather than
// drop her join from the state: after the gap carol is a member.
func TestStateIDsShortAuthChain(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		for _, ver := range []string{"10", "12"} {
			t.Run("v"+ver, func(t *testing.T) { testStateIDsShortAuthChain(t, url, ver) })
		}
	})
}

func testStateIDsShortAuthChain(t *testing.T, url, ver string) {
	ctx := context.Background()
	s, _ := newTestServer(t, url)
	_, key, _ := ed25519.GenerateKey(nil)
	f := &fakeRemote{t: t, s: s, name: "remote", key: key, now: time.Now()}
	alice, bob, carol := "@alice:test", "@bob:remote", "@carol:remote"
	roomID, err := s.CreateRoom(ctx, alice, "D", CreateRoomRequest{Preset: PresetPublicChat, RoomVersion: ver})
	if err != nil {
		t.Fatal(err)
	}
	f.join(roomID, bob, ver)
	// bob may invite (invite level 50).
	plContent, users := s.powerLevelsContent(t, roomID)
	users[bob] = 50
	if _, err := s.SetState(ctx, Sender{UserID: alice}, roomID, spec.MRoomPowerLevels, "", mustJSON(plContent)); err != nil {
		t.Fatal(err)
	}

	// The remote's copy of the room: the current state, then events this server never gets.
	remote := &shortChainRemote{events: map[string]gomatrixserverlib.PDU{}, before: map[string][]string{}, omit: map[string]bool{}}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	var nids []int64
	for _, nid := range r.state {
		nids = append(nids, nid)
	}
	current, err := s.pdusByNID(ctx, r.version, nids)
	verImpl := r.version
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	state := map[gomatrixserverlib.StateKeyTuple]gomatrixserverlib.PDU{}
	for _, p := range current {
		state[keyOf(p)] = p
		remote.events[p.EventID()] = p
	}
	heads := s.headIDs(t, roomID)
	head, err := s.db.Event(ctx, heads[0])
	if err != nil {
		t.Fatal(err)
	}
	prev, depth := head.EventID, head.Depth
	build := func(sender, evType string, stateKey *string, content any) gomatrixserverlib.PDU {
		t.Helper()
		b := verImpl.NewEventBuilderFromProtoEvent(&gomatrixserverlib.ProtoEvent{SenderID: sender, RoomID: roomID, Type: evType,
			StateKey: stateKey, Content: spec.RawJSON(mustJSON(content)), PrevEvents: []string{prev}, Depth: depth + 1})
		var evs []gomatrixserverlib.PDU
		for _, p := range state {
			evs = append(evs, p)
		}
		provider, _ := gomatrixserverlib.NewAuthEvents(evs)
		if err := b.AddAuthEvents(provider); err != nil {
			t.Fatal(err)
		}
		f.now = f.now.Add(time.Second)
		p, err := b.Build(f.now, f.name, "ed25519:r", f.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := gomatrixserverlib.Allowed(p, provider, userIDForSender); err != nil {
			t.Fatalf("the remote's own %s fails auth: %v", evType, err)
		}
		remote.before[p.EventID()] = nil
		for _, s := range state {
			remote.before[p.EventID()] = append(remote.before[p.EventID()], s.EventID())
		}
		remote.events[p.EventID()] = p
		if stateKey != nil {
			state[keyOf(p)] = p
		}
		prev, depth = p.EventID(), p.Depth()
		return p
	}
	invite := build(bob, spec.MRoomMember, &carol, map[string]any{"membership": "invite"})
	build(carol, spec.MRoomMember, &carol, map[string]any{"membership": "join"})
	m1 := build(bob, "m.room.message", nil, map[string]any{"body": "one"})
	m2 := build(bob, "m.room.message", nil, map[string]any{"body": "two"})
	remote.omit[invite.EventID()] = true

	s.SetRemote(remote)
	if err := s.InputRemote(ctx, "remote", m2); err != nil {
		t.Fatalf("the event after the gap: %v", err)
	}
	if m, _ := s.Membership(ctx, roomID, carol); m != spec.Join {
		t.Errorf("carol's membership after the gap: %q, want join (the state at %s, from /state_ids, has her join); /event_auth asked for %v",
			m, m1.EventID(), remote.eventAuth)
	}
	if !slices.Contains(remote.eventAuth, state[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomMember, StateKey: carol}].EventID()) {
		t.Errorf("/event_auth was asked for %v, not for carol's join", remote.eventAuth)
	}
}
