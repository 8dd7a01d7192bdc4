package storage

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// The batched reads of an initial sync return, for every room, what the per-room reads do.
func TestBatchedRoomReadsMatchPerRoomReads(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var rooms []int64
		depth := int64(0)
		err = db.WithTx(ctx, func(tx *Tx) error {
			// Rooms with 0, 1, 3, 5 and 8 events, interleaved in the stream, some hidden.
			for i := 0; i < 5; i++ {
				room, err := tx.InsertRoom(ctx, fmt.Sprintf("!r%d:x", i), "11", 1)
				if err != nil {
					return err
				}
				rooms = append(rooms, room)
				if err := tx.SetMembership(ctx, room, "@a:x", "join", 0); err != nil {
					return err
				}
				if i%2 == 0 {
					if err := tx.SetMembership(ctx, room, "@b:x", "invite", 0); err != nil {
						return err
					}
				}
			}
			for n := 0; n < 8; n++ {
				for i, room := range rooms {
					if n >= []int{0, 1, 3, 5, 8}[i] {
						continue
					}
					depth++
					ev := &Event{EventID: fmt.Sprintf("$e%d-%d", i, n), RoomNID: room, Type: "m.room.message", Sender: "@a:x",
						Depth: depth, JSON: []byte(fmt.Sprintf(`{"n":%d}`, n))}
					if n == 2 {
						ev.Status = StatusOutlier // hidden
					}
					if _, err := tx.InsertEvent(ctx, ev); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		upTo, err := db.MaxEventNID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int{1, 3, 20} {
			for _, since := range []int64{0, 5} {
				got, err := db.RoomsEventsAfter(ctx, rooms, since, upTo-1, limit)
				if err != nil {
					t.Fatal(err)
				}
				for _, room := range rooms {
					want, more, err := db.RoomEventsAfter(ctx, room, since, upTo-1, limit)
					if err != nil {
						t.Fatal(err)
					}
					g := got[room]
					if g == nil {
						g = &RoomTimeline{}
					}
					if diff := cmp.Diff(nids(want), nids(g.Events)); diff != "" || more != g.More {
						t.Errorf("limit %d since %d room %d: more %v, want %v; events (-want +got):\n%s", limit, since, room, g.More, more, diff)
					}
				}
			}
		}
		members, err := db.RoomsMembers(ctx, rooms)
		if err != nil {
			t.Fatal(err)
		}
		for _, room := range rooms {
			want, err := db.RoomMembers(ctx, room, "")
			if err != nil {
				t.Fatal(err)
			}
			var w, g []string
			for _, m := range want {
				w = append(w, m.UserID+" "+m.Membership)
			}
			for _, m := range members[room] {
				g = append(g, m.UserID+" "+m.Membership)
			}
			if diff := cmp.Diff(w, g); diff != "" {
				t.Errorf("members of room %d (-want +got):\n%s", room, diff)
			}
		}
		if err := db.WithTx(ctx, func(tx *Tx) error {
			_, err := tx.SetReceipt(ctx, Receipt{RoomNID: rooms[2], UserID: "@a:x", Type: "m.read", EventID: "$e2-1", EventNID: 7, TS: 1})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		read, err := db.RoomsReadPositions(ctx, "@a:x", rooms)
		if err != nil {
			t.Fatal(err)
		}
		for _, room := range rooms {
			want, err := db.ReadPositions(ctx, "@a:x", room)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 {
				want = nil
			}
			if diff := cmp.Diff(want, read[room]); diff != "" {
				t.Errorf("read positions in room %d (-want +got):\n%s", room, diff)
			}
		}
		if evs, err := db.EventsByNID(ctx, []int64{3, 1, 2}); err != nil || len(evs) != 3 || evs[0].NID != 1 || evs[2].NID != 3 {
			t.Errorf("EventsByNID = %v, %v", nids(evs), err)
		}
	})
}

func nids(evs []*Event) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, ev.NID)
	}
	return out
}
