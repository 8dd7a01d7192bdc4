package storage

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestPartialStateRooms: a partial state row is read back whole, listed, counts its failed
// attempts, is replaced by a later join's and deleted when the resync completes; its servers
// join the destinations of the room's EDUs and of its members'; FillRootSnapshots adds the
// missing keys to the room's whole snapshots only, keeping the keys they hold, so that a
// snapshot built on one sees the filled keys under its own changes.
func TestPartialStateRooms(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var room, root, child int64
		keys := map[string]int64{}
		if err := db.WithTx(ctx, func(tx *Tx) (err error) {
			if room, err = tx.InsertRoom(ctx, "!r:test", "11", 0); err != nil {
				return err
			}
			for _, u := range []string{"@me:ours", "@a:a.test", "@b:b.test", "@c:c.test"} {
				if keys[u], err = tx.StateKeyNID(ctx, StateKey{Type: "m.room.member", StateKey: u}); err != nil {
					return err
				}
			}
			if root, err = tx.InsertSnapshot(ctx, room, Snapshot{ChainLen: 1, Entries: map[int64]int64{keys["@a:a.test"]: 10}}); err != nil {
				return err
			}
			if child, err = tx.InsertSnapshot(ctx, room, Snapshot{Parent: root, ChainLen: 2, Entries: map[int64]int64{keys["@b:b.test"]: 21}}); err != nil {
				return err
			}
			return tx.SetMembership(ctx, room, "@me:ours", "join", 1)
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.PartialStateRoom(ctx, room); !errors.Is(err, ErrNotFound) {
			t.Fatalf("partial state of a room without a row: %v, want ErrNotFound", err)
		}
		row := PartialStateRoom{RoomNID: room, RoomID: "!r:test", JoinEventID: "$join", JoinedVia: "a.test",
			ServersInRoom: []string{"a.test", "c.test", "ours"}, CreatedTS: 5}
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.InsertPartialStateRoom(ctx, row) }); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordPartialStateError(ctx, room, "a.test: unreachable"); err != nil {
			t.Fatal(err)
		}
		got, err := db.PartialStateRoom(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		want := row
		want.Attempts, want.LastError = 1, "a.test: unreachable"
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("row (-want +got):\n%s", diff)
		}
		all, err := db.PartialStateRooms(ctx)
		if err != nil || len(all) != 1 || all[0].RoomID != "!r:test" {
			t.Errorf("PartialStateRooms: %+v, %v", all, err)
		}
		inRoom, err := db.RemoteServersInRoom(ctx, "!r:test", "ours")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"a.test", "c.test"}, inRoom); diff != "" {
			t.Errorf("servers in the partial room (-want +got):\n%s", diff)
		}
		sharing, err := db.RemoteServersSharingRooms(ctx, "@me:ours", "ours")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"a.test", "c.test"}, sharing); diff != "" {
			t.Errorf("servers sharing the partial room (-want +got):\n%s", diff)
		}

		fill := map[int64]int64{keys["@a:a.test"]: 99, keys["@c:c.test"]: 30}
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.FillRootSnapshots(ctx, room, fill) }); err != nil {
			t.Fatal(err)
		}
		rs, err := db.Snapshot(ctx, root)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[int64]int64{keys["@a:a.test"]: 10, keys["@c:c.test"]: 30}, rs.Entries); diff != "" {
			t.Errorf("filled root snapshot (-want +got):\n%s", diff)
		}
		cs, err := db.Snapshot(ctx, child)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[int64]int64{keys["@b:b.test"]: 21}, cs.Entries); diff != "" {
			t.Errorf("child snapshot changed (-want +got):\n%s", diff)
		}

		row.JoinEventID = "$rejoin"
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.InsertPartialStateRoom(ctx, row) }); err != nil {
			t.Fatal(err)
		}
		if got, err := db.PartialStateRoom(ctx, room); err != nil || got.JoinEventID != "$rejoin" || got.Attempts != 0 {
			t.Errorf("row after a second partial join: %+v, %v", got, err)
		}
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.DeletePartialStateRoom(ctx, room) }); err != nil {
			t.Fatal(err)
		}
		if _, err := db.PartialStateRoom(ctx, room); !errors.Is(err, ErrNotFound) {
			t.Errorf("partial state after the resync: %v, want ErrNotFound", err)
		}
		if inRoom, err := db.RemoteServersInRoom(ctx, "!r:test", "ours"); err != nil || len(inRoom) != 0 {
			t.Errorf("servers in the room after the resync: %v, %v", inRoom, err)
		}
	})
}
