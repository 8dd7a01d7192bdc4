package storage

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

func TestRemoteServers(t *testing.T) {
	storagetest.ForEachBackend(t, testRemoteServers)
}

func testRemoteServers(t *testing.T, url string) {
	ctx := context.Background()
	db, err := Open(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.WithTx(ctx, func(tx *Tx) error {
		a, err := tx.InsertRoom(ctx, "!a:ours.test", "12", 1)
		if err != nil {
			return err
		}
		b, err := tx.InsertRoom(ctx, "!b:ours.test", "12", 1)
		if err != nil {
			return err
		}
		for i, m := range []struct {
			room       int64
			user, kind string
		}{
			{a, "@alice:ours.test", "join"},
			{a, "@bob:one.test", "join"},
			{a, "@bert:one.test", "join"},
			{a, "@carol:two.test:8448", "join"},
			{a, "@dan:three.test", "invite"},
			{a, "@eve:four.test", "leave"},
			{a, "@fay:notours.test", "join"}, // a server whose name ends with ours
			{a, "@x:y", "join"},              // shorter than ":ours.test"
			{b, "@alice:ours.test", "join"},
			{b, "@gus:five.test", "join"},
			{b, "@hal:ours.test", "join"},
		} {
			if err := tx.SetMembership(ctx, m.room, m.user, m.kind, int64(i+1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.RemoteServersInRoom(ctx, "!a:ours.test", "ours.test")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"notours.test", "one.test", "two.test:8448", "y"}, got); diff != "" {
		t.Errorf("servers in room a (-want +got):\n%s", diff)
	}
	if got, err := db.RemoteServersInRoom(ctx, "!unknown:ours.test", "ours.test"); err != nil || len(got) != 0 {
		t.Errorf("unknown room: %v, %v", got, err)
	}
	got, err = db.RemoteServersSharingRooms(ctx, "@alice:ours.test", "ours.test")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"five.test", "notours.test", "one.test", "two.test:8448", "y"}, got); diff != "" {
		t.Errorf("servers sharing a room with alice (-want +got):\n%s", diff)
	}
	got, err = db.RemoteServersSharingRooms(ctx, "@hal:ours.test", "ours.test")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"five.test"}, got); diff != "" {
		t.Errorf("servers sharing a room with hal (-want +got):\n%s", diff)
	}
}
