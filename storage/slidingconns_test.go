package storage

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestSlidingConnections: a connection is written incrementally (rooms upserted and dropped,
// or replaced whole), read back, and purged when left unused.
func TestSlidingConnections(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		key := SlidingConnKey{UserID: "@a:x", DeviceID: "DEV", ConnID: "main"}
		other := SlidingConnKey{UserID: "@a:x", DeviceID: "DEV", ConnID: "other"}
		write := func(now int64, ws ...SlidingConnWrite) {
			t.Helper()
			if err := db.WithTx(ctx, func(tx *Tx) error {
				for _, w := range ws {
					if err := tx.WriteSlidingConnection(ctx, w, now); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.SlidingConnection(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown connection: %v", err)
		}
		write(100,
			SlidingConnWrite{Key: key, Pos: 1, Header: `{"h":1}`, Replace: true, Rooms: map[string]string{"!a:x": "a1", "!b:x": "b1"}},
			SlidingConnWrite{Key: other, Pos: 7, Header: `{}`, Replace: true, Rooms: map[string]string{"!a:x": "o"}})
		write(200, SlidingConnWrite{Key: key, Pos: 2, Header: `{"h":2}`, Rooms: map[string]string{"!c:x": "c2", "!a:x": "a2"}, Dropped: []string{"!b:x"}})
		c, err := db.SlidingConnection(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(&SlidingConn{Pos: 2, Header: `{"h":2}`, Rooms: map[string]string{"!a:x": "a2", "!c:x": "c2"}}, c); d != "" {
			t.Errorf("after an incremental write (-want +got):\n%s", d)
		}
		write(300, SlidingConnWrite{Key: key, Pos: 3, Header: `{"h":3}`, Replace: true, Rooms: map[string]string{"!d:x": "d3"}})
		if c, _ = db.SlidingConnection(ctx, key); len(c.Rooms) != 1 || c.Rooms["!d:x"] != "d3" || c.Pos != 3 {
			t.Errorf("after a replacing write: %+v", c)
		}
		var purged int64
		if err := db.WithTx(ctx, func(tx *Tx) (err error) {
			purged, err = tx.PurgeSlidingConnections(ctx, 200)
			return err
		}); err != nil || purged != 1 {
			t.Fatalf("purge: %d, %v", purged, err)
		}
		if _, err := db.SlidingConnection(ctx, other); !errors.Is(err, ErrNotFound) {
			t.Errorf("the connection unused since 100 is still there: %v", err)
		}
		var n int
		if err := db.queryRow(ctx, `SELECT COUNT(*) FROM sliding_sync_rooms WHERE conn_id = 'other'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("rooms of the purged connection left: %d, %v", n, err)
		}
		if c, _ = db.SlidingConnection(ctx, key); c == nil || c.Pos != 3 {
			t.Errorf("the connection used at 300 was purged")
		}
	})
}

// populateSlidingAndThreads fills the tables of migration 0026 for the port test.
func populateSlidingAndThreads(ctx context.Context, tx *Tx) error {
	w := SlidingConnWrite{Key: SlidingConnKey{UserID: "@alice:test", DeviceID: "DEValice", ConnID: "main"}, Pos: 42,
		Header: `{"to":"s1_2"}`, Replace: true, Rooms: map[string]string{"!room:test": `{"up_to":3}`}}
	if err := tx.WriteSlidingConnection(ctx, w, 7000); err != nil {
		return err
	}
	_, err := tx.SetThreadSubscription(ctx, "@alice:test", ThreadSubscription{RoomID: "!room:test", ThreadRoot: "$root", Subscribed: true, Automatic: true})
	return err
}
