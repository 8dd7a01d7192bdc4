package roomserver

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestFederationReads checks what other servers may read of a room's DAG: the state before an
// event, auth chains, the backfill and get_missing_events walks, and the history visibility
// rule for servers.
func TestFederationReads(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) { testFederationReads(t, url) })
}

func testFederationReads(t *testing.T, url string) {
	ctx := context.Background()
	s, _ := newTestServer(t, url)
	const alice = "@alice:test"
	roomID, err := s.CreateRoom(ctx, alice, "A", CreateRoomRequest{Preset: PresetPrivateChat, Name: ptr("before")})
	if err != nil {
		t.Fatal(err)
	}
	send := func(body string) string {
		t.Helper()
		id, err := s.SendMessage(ctx, Sender{UserID: alice, DeviceID: "A"}, roomID, "m.room.message", mustJSON(map[string]string{"body": body}), "")
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	m1, m2 := send("one"), send("two")
	nameID, err := s.SetState(ctx, Sender{UserID: alice}, roomID, "m.room.name", "", mustJSON(map[string]string{"name": "after"}))
	if err != nil {
		t.Fatal(err)
	}
	m3 := send("three")

	// The state before the rename has the old name, and not the rename itself.
	state, err := s.StateBeforeEvent(ctx, roomID, nameID)
	if err != nil {
		t.Fatal(err)
	}
	if ids := idsOf(state); contains(ids, nameID) || len(state) < 5 || !strings.Contains(string(findType(state, "m.room.name").JSON), "before") {
		t.Fatalf("state before the rename: %v", ids)
	}
	if _, err := s.StateBeforeEvent(ctx, roomID, "$unknown"); !isNotFound(err) {
		t.Fatalf("state at an unknown event: %v", err)
	}

	// The auth chain of a message: create, power levels, alice's join, and their own chains.
	chain, err := s.AuthChain(ctx, roomID, []string{m3})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range chain {
		types = append(types, ev.Type)
	}
	if diff := cmp.Diff([]string{"m.room.create", "m.room.member", "m.room.power_levels"}, types); diff != "" {
		t.Fatalf("auth chain types (-want +got):\n%s", diff)
	}

	// Backfill: from m3 backwards, the deepest first, m3 included.
	back, err := s.BackfillEvents(ctx, roomID, []string{m3}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{m3, nameID, m2, m1}, idsOf(back)); diff != "" {
		t.Fatalf("backfill (-want +got):\n%s", diff)
	}

	// Missing events between m1 and m3: neither of them, oldest first.
	missing, err := s.MissingEvents(ctx, roomID, []string{m1}, []string{m3}, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{m2, nameID}, idsOf(missing)); diff != "" {
		t.Fatalf("missing events (-want +got):\n%s", diff)
	}
	if missing, _ := s.MissingEvents(ctx, roomID, []string{m1}, []string{m3}, 1, 0); len(missing) != 1 || missing[0].EventID != nameID {
		t.Fatalf("limited missing events: %v", idsOf(missing))
	}

	// Visibility: a server with a joined member sees everything; a stranger nothing, until
	// the room is world-readable, and then only the events after that.
	m1ev, _ := s.db.Event(ctx, m1)
	if ok, err := s.ServerCanSee(ctx, "test", m1ev); err != nil || !ok {
		t.Fatalf("own server cannot see: %v %v", ok, err)
	}
	if ok, err := s.ServerCanSee(ctx, "stranger.test", m1ev); err != nil || ok {
		t.Fatalf("stranger sees a shared room: %v %v", ok, err)
	}
	if _, err := s.EventForServer(ctx, "stranger.test", roomID, m1); !isForbidden(err) {
		t.Fatalf("stranger's /event: %v", err)
	}
	if _, err := s.EventForServer(ctx, "test", "!other:test", m1); !isNotFound(err) {
		t.Fatalf("event in another room: %v", err)
	}
	if _, err := s.EventsForServer(ctx, "stranger.test", roomID, back); !isForbidden(err) {
		t.Fatalf("stranger's backfill: %v", err)
	}
	hvID, err := s.SetState(ctx, Sender{UserID: alice}, roomID, "m.room.history_visibility", "", mustJSON(map[string]string{"history_visibility": "world_readable"}))
	if err != nil {
		t.Fatal(err)
	}
	m4 := send("four")
	if _, err := s.EventForServer(ctx, "stranger.test", roomID, m4); err != nil {
		t.Fatalf("stranger's /event in a world-readable room: %v", err)
	}
	if _, err := s.EventForServer(ctx, "stranger.test", roomID, hvID); err != nil {
		t.Fatalf("the change to world_readable is visible by the state after it: %v", err)
	}
	evs, err := s.BackfillEvents(ctx, roomID, []string{m4}, 4)
	if err != nil {
		t.Fatal(err)
	}
	pdus, err := s.EventsForServer(ctx, "stranger.test", roomID, evs)
	if err != nil {
		t.Fatal(err)
	}
	// m4 and the visibility change in full; m3 and the rename redacted.
	if !strings.Contains(string(pdus[0]), `"four"`) || !strings.Contains(string(pdus[1]), "world_readable") ||
		strings.Contains(string(pdus[2]), `"three"`) || strings.Contains(string(pdus[3]), `"after"`) {
		t.Fatalf("stranger's backfill:\n%s", pdus)
	}
}

func idsOf(evs []*storage.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.EventID
	}
	return out
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func findType(evs []*storage.Event, typ string) *storage.Event {
	for _, ev := range evs {
		if ev.Type == typ {
			return ev
		}
	}
	return &storage.Event{}
}

func isNotFound(err error) bool {
	var me spec.MatrixError
	return errors.As(err, &me) && me.ErrCode == spec.ErrorNotFound
}
