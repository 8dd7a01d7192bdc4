package syncapi

import (
	"context"
	"fmt"
	"testing"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

// slidingTestDB opens a database with n rooms that @alice:x has joined, one message in
// each, and returns it with the room NIDs.
func slidingTestDB(t *testing.T, n int) (*storage.DB, []int64) {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.Backends()[0].NewURL(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var rooms []int64
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		for i := range n {
			nid, err := tx.InsertRoom(ctx, fmt.Sprintf("!r%d:x", i), "12", 1)
			if err != nil {
				return err
			}
			rooms = append(rooms, nid)
			if err := tx.SetMembership(ctx, nid, "@alice:x", "join", 1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		sendTestEvent(t, db, r, "m.room.message")
	}
	return db, rooms
}

var testEvents int

func sendTestEvent(t *testing.T, db *storage.DB, room int64, typ string) int64 {
	t.Helper()
	testEvents++
	var nid int64
	err := db.WithTx(context.Background(), func(tx *storage.Tx) error {
		var err error
		nid, err = tx.InsertEvent(context.Background(), &storage.Event{EventID: fmt.Sprintf("$ev%d", testEvents), RoomNID: room,
			Type: typ, Sender: "@bob:x", Depth: int64(testEvents), JSON: []byte(`{}`)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return nid
}

// TestSlidingBumpStampsRecentOnly: after the first response, only the rooms with events since
// the connection's last response are looked at one by one; the others come from the cache.
func TestSlidingBumpStampsRecentOnly(t *testing.T) {
	ctx := context.Background()
	db, rooms := slidingTestDB(t, 5)
	s := &Server{db: db}
	to, err := db.MaxEventNID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bumps := func(after, to int64) map[int64][2]int64 {
		t.Helper()
		recent, err := s.recentJoinedRooms(ctx, "@alice:x", after, to)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int64][2]int64{}
		for _, r := range rooms {
			b, l, err := s.bumpStamp(ctx, r, to, recent)
			if err != nil {
				t.Fatal(err)
			}
			out[r] = [2]int64{b, l}
		}
		return out
	}
	first := bumps(0, to)
	if s.sliding.roomLookups != int64(len(rooms)) {
		t.Errorf("a new connection looked up %d rooms, want %d", s.sliding.roomLookups, len(rooms))
	}
	msg := sendTestEvent(t, db, rooms[2], "m.room.message")
	other := sendTestEvent(t, db, rooms[3], "m.room.topic") // not a bump event
	s.sliding.roomLookups = 0
	second := bumps(to, other)
	if s.sliding.roomLookups != 0 {
		t.Errorf("an incremental response looked up %d rooms one by one", s.sliding.roomLookups)
	}
	for i, r := range rooms {
		want := first[r]
		switch i {
		case 2:
			want = [2]int64{msg, msg}
		case 3:
			want[1] = other
		}
		if second[r] != want {
			t.Errorf("room %d: bump, latest = %v, want %v", i, second[r], want)
		}
	}
	// Nothing new: no query per room either.
	s.sliding.roomLookups = 0
	if third := bumps(other, other); s.sliding.roomLookups != 0 || third[rooms[2]] != second[rooms[2]] {
		t.Errorf("no change: %d lookups, %v", s.sliding.roomLookups, third)
	}
}

// TestSlidingNoListsNoRooms: a request with no lists and no room subscriptions (a
// connection for to-device messages and keys) does not look at the user's rooms.
func TestSlidingNoListsNoRooms(t *testing.T) {
	db, _ := slidingTestDB(t, 1)
	db.Close() // any query fails
	s := &Server{db: db}
	base := &connState{pos: 1, rooms: map[string]sentRoom{}, lists: map[string]int{}}
	resp, _, err := s.buildSliding(context.Background(), roomserver.Viewer{UserID: "@alice:x"}, slidingRequest{}, base, Token{PDU: 5})
	if err != nil {
		t.Fatalf("a request without lists queried the database: %v", err)
	}
	if !resp.empty() {
		t.Errorf("response = %+v", resp)
	}
}
