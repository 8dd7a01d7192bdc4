package pusher

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// TestPurgeRetention checks that Purge deletes the read notifications older than the
// retention by the injected clock, and keeps recent and unread ones.
func TestPurgeRetention(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "purge.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	day := int64(24 * time.Hour / time.Millisecond)
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		room, err := tx.InsertRoom(ctx, "!r:x", "12", 1)
		if err != nil {
			return err
		}
		var acts []storage.PushAction
		for nid, age := range map[int64]int64{1: 40, 2: 31, 3: 29, 4: 40} { // days
			acts = append(acts, storage.PushAction{UserID: "@u:x", RoomNID: room, EventNID: nid,
				ThreadID: storage.ThreadMain, Actions: `["notify"]`, TS: now.UnixMilli() - age*day})
		}
		if err := tx.InsertPushActions(ctx, acts); err != nil {
			return err
		}
		_, err = tx.SetReceipt(ctx, storage.Receipt{RoomNID: room, UserID: "@u:x", Type: "m.read", EventID: "$3", EventNID: 3})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPurger(PurgeConfig{Retention: 30 * 24 * time.Hour, Now: func() time.Time { return now }}, db, slog.New(slog.DiscardHandler))
	if n, err := p.Purge(ctx); err != nil || n != 2 {
		t.Fatalf("Purge = %d, %v; want 2 (events 1 and 2: read and older than 30 days)", n, err)
	}
	notes, err := db.Notifications(ctx, "@u:x", 0, 10, false)
	if err != nil || len(notes) != 2 || notes[0].EventNID != 4 || notes[1].EventNID != 3 {
		t.Fatalf("left: %+v, %v; want 4 (unread) and 3 (recent)", notes, err)
	}

	off := NewPurger(PurgeConfig{}, db, slog.New(slog.DiscardHandler))
	if err := off.Start(ctx); err != nil || off.done != nil {
		t.Fatalf("a purger without retention started: %v", err)
	}
	if err := off.Close(); err != nil {
		t.Fatal(err)
	}
	on := NewPurger(PurgeConfig{Retention: time.Hour}, db, slog.New(slog.DiscardHandler))
	if err := on.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := on.Close(); err != nil {
		t.Fatal(err)
	}
}
