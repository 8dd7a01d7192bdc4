package roomserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestDeleteForwardExtremities: of three concurrent remote messages, the deepest extremity
// stays; the room's state is untouched and the next local event builds on it.
func TestDeleteForwardExtremities(t *testing.T) {
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
		var last string
		for i := range 3 {
			m := f.build(roomID, bob, "m.room.message", nil, map[string]any{"body": i}, base)
			if err := s.InputRemote(ctx, "remote", m); err != nil {
				t.Fatal(err)
			}
			last = m.EventID()
		}
		if n := len(s.headIDs(t, roomID)); n != 3 {
			t.Fatalf("%d forward extremities, want 3", n)
		}
		n, err := s.DeleteForwardExtremities(ctx, roomID)
		if err != nil || n != 2 {
			t.Fatalf("deleted %d (%v), want 2", n, err)
		}
		if heads := s.headIDs(t, roomID); len(heads) != 1 || heads[0] != last {
			t.Fatalf("extremities after the delete: %v, want [%s]", heads, last)
		}
		room, _ := s.db.Room(ctx, roomID)
		if xs, err := s.db.ForwardExtremityInfo(ctx, room.NID); err != nil || len(xs) != 1 || xs[0].EventID != last {
			t.Fatalf("stored extremities: %v %v", xs, err)
		}
		if n, err := s.DeleteForwardExtremities(ctx, roomID); err != nil || n != 0 {
			t.Fatalf("second delete: %d %v", n, err)
		}
		if _, err := s.SendMessage(ctx, Sender{UserID: alice}, roomID, "m.room.message", mustJSON(map[string]string{"body": "after"}), ""); err != nil {
			t.Fatal(err)
		}
		if m, _ := s.Membership(ctx, roomID, bob); m != spec.Join {
			t.Fatalf("bob's membership after the delete: %q", m)
		}
	})
}

// TestShutdownRoom: members leave and move to the new room, the room is blocked and purged,
// and the roomserver forgets it.
func TestShutdownRoom(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := newTestServer(t, url)
		alice, bob, admin := "@alice:test", "@bob:test", "@admin:test"
		roomID, err := s.CreateRoom(ctx, alice, "D", CreateRoomRequest{Preset: PresetPublicChat, RoomAliasName: "bad"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Join(ctx, bob, roomID, ""); err != nil {
			t.Fatal(err)
		}
		var progressed *ShutdownResult
		res, err := s.ShutdownRoom(ctx, admin, roomID, ShutdownOptions{NewRoomUserID: admin, RoomName: "moved", Message: "gone", Block: true, Purge: true},
			func(r *ShutdownResult) { progressed = r })
		if err != nil {
			t.Fatal(err)
		}
		if len(res.KickedUsers) != 2 || len(res.FailedToKickUsers) != 0 || res.NewRoomID == nil || len(res.LocalAliases) != 1 || progressed == nil {
			t.Fatalf("result %+v", res)
		}
		if _, err := s.db.Room(ctx, roomID); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("room after the purge: %v", err)
		}
		s.mu.Lock()
		_, loaded := s.rooms[roomID]
		s.mu.Unlock()
		if loaded {
			t.Fatal("the roomserver still holds the purged room")
		}
		if _, err := s.Join(ctx, bob, roomID, ""); !errors.Is(err, ErrRoomBlocked) {
			t.Fatalf("join after the shutdown: %v", err)
		}
		if got, _, err := s.db.Alias(ctx, "#bad:test"); err != nil || got != *res.NewRoomID {
			t.Fatalf("alias after the shutdown: %s %v", got, err)
		}
		for _, u := range []string{alice, bob} {
			if m, _ := s.Membership(ctx, *res.NewRoomID, u); m != spec.Join {
				t.Fatalf("%s in the new room: %q", u, m)
			}
		}
		// A purge alone refuses a room with local members, unless forced.
		if err := s.PurgeRoom(ctx, *res.NewRoomID, false); !errors.Is(err, ErrStillJoined) {
			t.Fatalf("purge of a room with members: %v", err)
		}
		if err := s.PurgeRoom(ctx, *res.NewRoomID, true); err != nil {
			t.Fatalf("forced purge: %v", err)
		}
		if _, err := s.Membership(ctx, *res.NewRoomID, alice); !errors.Is(err, errUnknownRoom) {
			t.Fatalf("membership of a purged room: %v", err)
		}
	})
}
