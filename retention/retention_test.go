package retention

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

func TestClamp(t *testing.T) {
	for _, c := range []struct{ d, lo, hi, want time.Duration }{
		{5, 0, 0, 5},
		{5, 10, 0, 10},
		{50, 10, 20, 20},
		{15, 10, 20, 15},
		{5, 0, 3, 3},
	} {
		if got := clamp(c.d, c.lo, c.hi); got != c.want {
			t.Errorf("clamp(%d, %d, %d) = %d, want %d", c.d, c.lo, c.hi, got, c.want)
		}
	}
}

// TestPurgerResumes: a purge left active by a restart is carried out by the next Start.
func TestPurgerResumes(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := storage.Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var room int64
		err = db.WithTx(ctx, func(tx *storage.Tx) error {
			if room, err = tx.InsertRoom(ctx, "!r:x", "11", 1); err != nil {
				return err
			}
			for i := int64(1); i <= 5; i++ {
				ev := &storage.Event{EventID: "$" + string(rune('a'+i)), RoomNID: room, Type: "m.room.message",
					Sender: "@a:x", Depth: i, OriginTS: i, JSON: []byte(`{}`)}
				if _, err := tx.InsertEvent(ctx, ev); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.InsertPurge(ctx, storage.Purge{ID: "left", RoomID: "!r:x", RoomNID: room, BeforeDepth: 4, UpToNID: 1 << 40, DeleteLocal: true}); err != nil {
			t.Fatal(err)
		}
		p := NewPurger(db, "x", slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			pg, err := db.PurgeByID(ctx, "left")
			if err != nil {
				t.Fatal(err)
			}
			if pg.Status == storage.PurgeComplete {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("purge still %s", pg.Status)
			}
		}
		for id, gone := range map[string]bool{"$b": true, "$c": true, "$d": true, "$e": false, "$f": false} {
			if _, err := db.Event(ctx, id); (err != nil) != gone {
				t.Errorf("event %s: %v, want gone=%v", id, err, gone)
			}
		}
	})
}
