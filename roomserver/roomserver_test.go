package roomserver

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

type recorder struct {
	mu    sync.Mutex
	pos   int64
	users map[string]int
}

func (r *recorder) EventsCommitted(pos int64, users []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pos = pos
	for _, u := range users {
		r.users[u]++
	}
}

func newTestServer(t testing.TB, url string) (*Server, *recorder) {
	t.Helper()
	db, err := storage.Open(context.Background(), url, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	rec := &recorder{users: map[string]int{}}
	s := New(Config{ServerName: "test", KeyID: "ed25519:t", PrivateKey: key, DefaultVersion: "12"}, db, rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return s, rec
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// TestEveryRoomVersion creates a room in each supported version and exercises joins,
// messages, state, power levels and redaction through the auth rules.
func TestEveryRoomVersion(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) { testEveryRoomVersion(t, url) })
}

func testEveryRoomVersion(t *testing.T, url string) {
	ctx := context.Background()
	s, rec := newTestServer(t, url)
	const alice, bob = "@alice:test", "@bob:test"
	for v := 1; v <= 12; v++ {
		ver := gomatrixserverlib.RoomVersion(strings.TrimSpace(string(rune('0' + v%10))))
		if v >= 10 {
			ver = gomatrixserverlib.RoomVersion("1" + string(rune('0'+v-10)))
		}
		t.Run(string(ver), func(t *testing.T) {
			roomID, err := s.CreateRoom(ctx, alice, "D", CreateRoomRequest{RoomVersion: string(ver), Preset: PresetPublicChat, Name: ptr("v" + string(ver))})
			if err != nil {
				t.Fatal(err)
			}
			if v == 12 && strings.Contains(roomID, ":") {
				t.Fatalf("v12 room ID %s has a domain", roomID)
			}
			if _, err := s.Join(ctx, bob, roomID, ""); err != nil {
				t.Fatalf("join: %v", err)
			}
			msgID, err := s.SendMessage(ctx, Sender{UserID: bob, DeviceID: "B"}, roomID, "m.room.message", mustJSON(map[string]string{"body": "hi"}), "t1")
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			again, err := s.SendMessage(ctx, Sender{UserID: bob, DeviceID: "B"}, roomID, "m.room.message", mustJSON(map[string]string{"body": "hi"}), "t1")
			if err != nil || again != msgID {
				t.Fatalf("retried send: %s %v, want %s", again, err, msgID)
			}
			// Bob (power 0) may not change the name; alice may redact bob's message.
			if _, err := s.SetState(ctx, Sender{UserID: bob}, roomID, "m.room.name", "", mustJSON(map[string]string{"name": "x"})); !isForbidden(err) {
				t.Fatalf("bob renamed the room: %v", err)
			}
			if _, err := s.Redact(ctx, Sender{UserID: alice, DeviceID: "A"}, roomID, msgID, "spam", "r1"); err != nil {
				t.Fatalf("redact: %v", err)
			}
			ev, err := s.db.Event(ctx, msgID)
			if err != nil {
				t.Fatal(err)
			}
			if ev.RedactedBy == "" || strings.Contains(string(ev.JSON), `"body"`) {
				t.Fatalf("message not redacted: %s", ev.JSON)
			}
			if m, _ := s.Membership(ctx, roomID, bob); m != spec.Join {
				t.Fatalf("bob's membership %q", m)
			}
		})
	}
	if rec.users[alice] == 0 || rec.users[bob] == 0 {
		t.Fatalf("listener not told about members: %v", rec.users)
	}
}

func ptr[T any](v T) *T { return &v }

func isForbidden(err error) bool {
	var me spec.MatrixError
	return errors.As(err, &me) && me.ErrCode == spec.ErrorForbidden
}

// TestStateSnapshotsAreDeltas checks that state is stored as bounded delta chains that
// expand to the right state, before and after a restart of the roomserver (cold caches).
func TestStateSnapshotsAreDeltas(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) { testStateSnapshotsAreDeltas(t, url) })
}

func testStateSnapshotsAreDeltas(t *testing.T, url string) {
	ctx := context.Background()
	s, _ := newTestServer(t, url)
	roomID, err := s.CreateRoom(ctx, "@alice:test", "D", CreateRoomRequest{Preset: PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := 0; i < n; i++ {
		if _, err := s.SetState(ctx, Sender{UserID: "@alice:test"}, roomID, "org.example.counter", string(rune('a'+i%26))+strings.Repeat("x", i/26), mustJSON(map[string]int{"i": i})); err != nil {
			t.Fatal(err)
		}
	}
	room, err := s.db.Room(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.db.Snapshot(ctx, room.StateSnapshotNID)
	if err != nil {
		t.Fatal(err)
	}
	if snap.ChainLen > maxChainLen || (snap.Parent != 0 && len(snap.Entries) != 1) {
		t.Fatalf("snapshot chain %d with %d entries", snap.ChainLen, len(snap.Entries))
	}
	// A fresh roomserver on the same database sees the same state.
	fresh := New(s.cfg, s.db, nil, s.log)
	state, err := fresh.StateAt(ctx, room.StateSnapshotNID)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := s.db.CurrentStateEvents(ctx, room.NID, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(state) != len(cur) {
		t.Fatalf("snapshot has %d entries, current state %d", len(state), len(cur))
	}
	for _, ev := range cur {
		if state[ev.StateKeyNID] != ev.NID {
			t.Fatalf("snapshot disagrees with current state for %s", ev.EventID)
		}
	}
	if len(cur) != n+5 {
		t.Fatalf("current state has %d events, want %d", len(cur), n+5)
	}
}

// TestConcurrentSendsKeepDAGLinear sends from many goroutines into one room; every event
// must be stored once with a gapless chain of prev_events.
func TestConcurrentSendsKeepDAGLinear(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) { testConcurrentSendsKeepDAGLinear(t, url) })
}

func testConcurrentSendsKeepDAGLinear(t *testing.T, url string) {
	ctx := context.Background()
	s, _ := newTestServer(t, url)
	roomID, err := s.CreateRoom(ctx, "@alice:test", "D", CreateRoomRequest{Preset: PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := s.SendMessage(ctx, Sender{UserID: "@alice:test", DeviceID: "D"}, roomID, "m.room.message", mustJSON(map[string]int{"g": g, "i": i}), ""); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	room, _ := s.db.Room(ctx, roomID)
	evs, _, err := s.db.RoomEventsAfter(ctx, room.NID, 0, 1<<62, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 160+5 {
		t.Fatalf("%d events stored, want %d", len(evs), 165)
	}
	for i := 1; i < len(evs); i++ {
		pdu, err := gomatrixserverlib.MustGetRoomVersion("12").NewEventFromTrustedJSONWithEventID(evs[i].EventID, evs[i].JSON, false)
		if err != nil {
			t.Fatal(err)
		}
		if prev := pdu.PrevEventIDs(); len(prev) != 1 || prev[0] != evs[i-1].EventID || evs[i].Depth != evs[i-1].Depth+1 {
			t.Fatalf("event %d: prev %v depth %d, want [%s] depth %d", i, prev, evs[i].Depth, evs[i-1].EventID, evs[i-1].Depth+1)
		}
	}
}
