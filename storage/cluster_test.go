package storage

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestClusterLocks: the serve lock keeps lone servers and cluster members apart, and a
// room's lock is held by one process (database handle) at a time and reports the room's
// head. PostgreSQL only: on SQLite the serve lock is the cluster package's file lock.
func TestClusterLocks(t *testing.T) {
	ctx := context.Background()
	url := storagetest.NewPostgresDatabase(t)
	open := func() *DB {
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(), open()

	// Serve lock: two lone servers exclude each other; members share; the two kinds mix not.
	releaseA, err := a.HoldServeLock(ctx, false, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.HoldServeLock(ctx, false, 0, nil); !errors.Is(err, ErrServeLocked) {
		t.Fatalf("second lone server: %v", err)
	}
	if _, err := b.HoldServeLock(ctx, true, 0, nil); !errors.Is(err, ErrServeLocked) {
		t.Fatalf("member beside a lone server: %v", err)
	}
	releaseA()
	releaseA, err = a.HoldServeLock(ctx, true, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	releaseB, err := b.HoldServeLock(ctx, true, 0, nil)
	if err != nil {
		t.Fatalf("second member: %v", err)
	}
	c := open()
	if _, err := c.HoldServeLock(ctx, false, 0, nil); !errors.Is(err, ErrServeLocked) {
		t.Fatalf("lone server beside members: %v", err)
	}
	releaseA()
	releaseB()

	// Room lock: b waits while a holds it; the head is the room's newest event.
	const room = "!r:test"
	err = a.WithTx(ctx, func(tx *Tx) error {
		nid, err := tx.InsertRoom(ctx, room, "12", 1)
		if err != nil {
			return err
		}
		_, err = tx.InsertEvent(ctx, &Event{EventID: "$e1", RoomNID: nid, Type: "m.room.create", JSON: []byte(`{}`)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	la, head, err := a.LockRoom(ctx, room)
	if err != nil || head == 0 {
		t.Fatalf("lock: head %d, %v", head, err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, _, err := b.LockRoom(short, room); err == nil {
		t.Fatal("room locked twice at once")
	}
	cancel()
	got := make(chan int64, 1)
	go func() {
		lb, h, err := b.LockRoom(ctx, room)
		if err != nil {
			t.Error(err)
			got <- -1
			return
		}
		if _, err := lb.Release(ctx, room); err != nil {
			t.Error(err)
		}
		got <- h
	}()
	time.Sleep(100 * time.Millisecond)
	var second int64
	err = a.WithTx(ctx, func(tx *Tx) error {
		r, err := tx.Room(ctx, room)
		if err != nil {
			return err
		}
		second, err = tx.InsertEvent(ctx, &Event{EventID: "$e2", RoomNID: r.NID, Type: "m.room.message", JSON: []byte(`{}`)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := la.Release(ctx, room); err != nil || h != second {
		t.Fatalf("release: head %d (want %d), %v", h, second, err)
	}
	if h := <-got; h != second {
		t.Fatalf("the next holder saw head %d, want %d", h, second)
	}

	// Committed positions: the newest visible event, not a hidden one stored after it.
	err = a.WithTx(ctx, func(tx *Tx) error {
		r, err := tx.Room(ctx, room)
		if err != nil {
			return err
		}
		_, err = tx.InsertEvent(ctx, &Event{EventID: "$out", RoomNID: r.NID, Type: "m.room.message", Status: StatusOutlier, JSON: []byte(`{}`)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	pos, err := b.CommittedPositions(ctx)
	if err != nil || pos[StreamPDU] != second {
		t.Fatalf("committed positions %v (want pdu %d), %v", pos, second, err)
	}
}

// TestStrictCaches: with SetStrictCaches, a write committed through another handle (another
// process) is seen by the very next cached read.
func TestStrictCaches(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		a, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		b.SetStrictCaches()
		err = a.WithTx(ctx, func(tx *Tx) error {
			if err := tx.InsertAccount(ctx, Account{UserID: "@a:test", CreatedTS: 1}); err != nil {
				return err
			}
			return tx.UpsertDevice(ctx, Device{UserID: "@a:test", DeviceID: "D"}, "hash")
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ { // the second read is answered from the cache
			if _, err := b.DeviceByToken(ctx, "hash"); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.WithTx(ctx, func(tx *Tx) error { return tx.DeleteDevices(ctx, "@a:test", "D") }); err != nil {
			t.Fatal(err)
		}
		if _, err := b.DeviceByToken(ctx, "hash"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token of a device deleted by another handle: %v", err)
		}
	})
}
