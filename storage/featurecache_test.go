package storage

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestFeatureCaches: the cached reads of featurecache.go see this process's writes at once
// and another process's (a second handle on the same database) within recheckEvery.
func TestFeatureCaches(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		other, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		tx := func(d *DB, fn func(tx *Tx) error) {
			t.Helper()
			if err := d.WithTx(ctx, fn); err != nil {
				t.Fatal(err)
			}
		}
		later := func() { time.Sleep(recheckEvery + 50*time.Millisecond) }

		// Rate limit overrides.
		if _, err := db.RateLimitOverride(ctx, "@a:test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("no override: %v", err)
		}
		tx(db, func(tx *Tx) error {
			return tx.SetRateLimitOverride(ctx, "@a:test", &RateLimitOverride{MessagesPerSecond: 3, BurstCount: 4})
		})
		if o, err := db.RateLimitOverride(ctx, "@a:test"); err != nil || o.MessagesPerSecond != 3 || o.BurstCount != 4 {
			t.Fatalf("after setting it here: %v, %v", o, err)
		}
		tx(other, func(tx *Tx) error { return tx.SetRateLimitOverride(ctx, "@a:test", nil) })
		later()
		if _, err := db.RateLimitOverride(ctx, "@a:test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after another process removed it: %v", err)
		}

		// Leaves of purged rooms.
		if ls, err := db.PurgedLeaves(ctx, "@a:test", 0, 100); err != nil || len(ls) != 0 {
			t.Fatalf("no leaves: %v, %v", ls, err)
		}
		tx(db, func(tx *Tx) error {
			return tx.InsertPurgedLeaves(ctx, []PurgedLeave{{UserID: "@a:test", RoomID: "!r:test", StreamPos: 10, EventJSON: []byte(`{}`)}})
		})
		if ls, err := db.PurgedLeaves(ctx, "@a:test", 0, 100); err != nil || len(ls) != 1 {
			t.Fatalf("after a leave here: %v, %v", ls, err)
		}
		if ls, err := db.PurgedLeaves(ctx, "@a:test", 10, 100); err != nil || len(ls) != 0 {
			t.Fatalf("after the leave's position: %v, %v", ls, err)
		}
		tx(other, func(tx *Tx) error {
			return tx.InsertPurgedLeaves(ctx, []PurgedLeave{{UserID: "@a:test", RoomID: "!s:test", StreamPos: 20, EventJSON: []byte(`{}`)}})
		})
		later()
		if ls, err := db.PurgedLeaves(ctx, "@a:test", 10, 100); err != nil || len(ls) != 1 || ls[0].RoomID != "!s:test" {
			t.Fatalf("after another process's leave: %v, %v", ls, err)
		}

		// HTTP pushers: none, so no notification is read to push; then one set by another process.
		if acts, err := db.PushActionsAfter(ctx, 0, 1<<40, 10); err != nil || len(acts) != 0 {
			t.Fatalf("without pushers: %v, %v", acts, err)
		}
		tx(other, func(tx *Tx) error {
			return tx.SetPusher(ctx, Pusher{UserID: "@a:test", AppID: "app", PushKey: "k", Kind: "http", Data: `{"url":"http://127.0.0.1/"}`}, false)
		})
		later()
		if exists, ok, _, err := db.httpPushers.get(ctx, &db.Q, struct{}{}); err != nil || ok {
			t.Fatalf("cached pusher flag after another process set one: %v %v %v", exists, ok, err)
		}
		if _, err := db.PushActionsAfter(ctx, 0, 1<<40, 10); err != nil {
			t.Fatal(err)
		}
		if exists, ok, _, err := db.httpPushers.get(ctx, &db.Q, struct{}{}); err != nil || !ok || !exists {
			t.Fatalf("pusher flag after reading: %v %v %v", exists, ok, err)
		}

		// Sticky events.
		var room int64
		tx(db, func(tx *Tx) (err error) {
			room, err = tx.InsertRoom(ctx, "!sticky:test", "11", 0)
			return err
		})
		now := time.Now().UnixMilli()
		if evs, err := db.StickyEvents(ctx, room, 0, 1<<40, now, 10); err != nil || len(evs) != 0 {
			t.Fatalf("no sticky events: %v, %v", evs, err)
		}
		insert := func(d *DB, id string) {
			tx(d, func(tx *Tx) error {
				_, err := tx.InsertEvent(ctx, &Event{EventID: id, RoomNID: room, Type: "m.rtc.member", Sender: "@a:test", JSON: []byte(`{}`), StickyUntil: now + 60000})
				return err
			})
		}
		insert(db, "$here")
		if evs, err := db.StickyEvents(ctx, room, 0, 1<<40, now, 10); err != nil || len(evs) != 1 {
			t.Fatalf("after a sticky event here: %v, %v", evs, err)
		}
		if evs, err := db.StickyEvents(ctx, room, 0, 1<<40, now+60000, 10); err != nil || len(evs) != 0 {
			t.Fatalf("once expired: %v, %v", evs, err)
		}
		var room2 int64
		tx(db, func(tx *Tx) (err error) {
			room2, err = tx.InsertRoom(ctx, "!sticky2:test", "11", 0)
			return err
		})
		if evs, err := db.StickyEvents(ctx, room2, 0, 1<<40, now, 10); err != nil || len(evs) != 0 {
			t.Fatalf("no sticky events in the second room: %v, %v", evs, err)
		}
		room = room2
		insert(other, "$there")
		later()
		if evs, err := db.StickyEvents(ctx, room2, 0, 1<<40, now, 10); err != nil || len(evs) != 1 || evs[0].EventID != "$there" {
			t.Fatalf("after another process's sticky event: %v, %v", evs, err)
		}
	})
}
