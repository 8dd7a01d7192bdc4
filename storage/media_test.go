package storage

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

func TestMedia(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		write := func(fn func(tx *Tx) error) error { return db.WithTx(ctx, fn) }

		up := Media{ServerName: "hs", MediaID: "abc", ContentType: "image/png", UploadName: "cat.png", Size: 3,
			SHA256: "deadbeef", UserID: "@alice:hs", CreatedTS: 10, UploadedTS: 11}
		if err := write(func(tx *Tx) error { return tx.InsertMedia(ctx, up) }); err != nil {
			t.Fatal(err)
		}
		if err := write(func(tx *Tx) error { return tx.InsertMedia(ctx, up) }); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate media ID: %v, want ErrConflict", err)
		}
		got, err := db.Media(ctx, "hs", "abc")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(up, *got); diff != "" {
			t.Errorf("Media (-want +got):\n%s", diff)
		}
		if _, err := db.Media(ctx, "other", "abc"); !errors.Is(err, ErrNotFound) {
			t.Errorf("media of another server: %v, want ErrNotFound", err)
		}

		// An mxc:// URI made by /create, completed once.
		pending := Media{ServerName: "hs", MediaID: "later", UserID: "@alice:hs", CreatedTS: 20}
		if err := write(func(tx *Tx) error { return tx.InsertMedia(ctx, pending) }); err != nil {
			t.Fatal(err)
		}
		if n, err := db.PendingMediaCount(ctx, "@alice:hs", 0); err != nil || n != 1 {
			t.Errorf("PendingMediaCount = %d, %v; want 1", n, err)
		}
		if n, err := db.PendingMediaCount(ctx, "@alice:hs", 20); err != nil || n != 0 {
			t.Errorf("PendingMediaCount after its creation = %d, %v; want 0", n, err)
		}
		done := pending
		done.ContentType, done.Size, done.SHA256, done.UploadedTS = "text/plain", 5, "beef", 30
		if err := write(func(tx *Tx) error { return tx.CompleteMedia(ctx, done) }); err != nil {
			t.Fatal(err)
		}
		if err := write(func(tx *Tx) error { return tx.CompleteMedia(ctx, done) }); !errors.Is(err, ErrConflict) {
			t.Errorf("second completion: %v, want ErrConflict", err)
		}
		missing := done
		missing.MediaID = "nope"
		if err := write(func(tx *Tx) error { return tx.CompleteMedia(ctx, missing) }); !errors.Is(err, ErrNotFound) {
			t.Errorf("completion of an unknown ID: %v, want ErrNotFound", err)
		}
		if got, err := db.Media(ctx, "hs", "later"); err != nil || got.UploadedTS != 30 || got.ContentType != "text/plain" {
			t.Errorf("completed media: %+v, %v", got, err)
		}

		th := Thumbnail{ServerName: "hs", MediaID: "abc", Width: 64, Height: 64, Method: "crop", ContentType: "image/png", Size: 99, CreatedTS: 40}
		for range 2 { // a concurrent generation of the same thumbnail is not an error
			if err := write(func(tx *Tx) error { return tx.InsertThumbnail(ctx, th) }); err != nil {
				t.Fatal(err)
			}
		}
		gotTh, err := db.Thumbnail(ctx, "hs", "abc", 64, 64, "crop")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(th, *gotTh); diff != "" {
			t.Errorf("Thumbnail (-want +got):\n%s", diff)
		}
		if n, err := db.ThumbnailCount(ctx, "hs", "abc"); err != nil || n != 1 {
			t.Errorf("ThumbnailCount = %d, %v; want 1", n, err)
		}
		if _, err := db.Thumbnail(ctx, "hs", "abc", 64, 64, "scale"); !errors.Is(err, ErrNotFound) {
			t.Errorf("thumbnail of another method: %v, want ErrNotFound", err)
		}

		if err := write(func(tx *Tx) error { return tx.DeleteMedia(ctx, "hs", "abc") }); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Media(ctx, "hs", "abc"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted media: %v", err)
		}
		if _, err := db.Thumbnail(ctx, "hs", "abc", 64, 64, "crop"); !errors.Is(err, ErrNotFound) {
			t.Errorf("thumbnail of deleted media: %v", err)
		}
	})
}

// populateMedia adds an upload, an mxc:// URI still awaiting its content and a thumbnail, for
// the port test.
func populateMedia(ctx context.Context, tx *Tx) error {
	for _, m := range []Media{
		{ServerName: "test", MediaID: "cat", ContentType: "image/png", UploadName: "chat é.png", Size: 42,
			SHA256: "ab12", UserID: "@alice:test", CreatedTS: 7000, UploadedTS: 7001},
		{ServerName: "test", MediaID: "later", UserID: "@bob:test", CreatedTS: 7002},
	} {
		if err := tx.InsertMedia(ctx, m); err != nil {
			return err
		}
	}
	return tx.InsertThumbnail(ctx, Thumbnail{ServerName: "test", MediaID: "cat", Width: 32, Height: 32,
		Method: "crop", ContentType: "image/png", Size: 7, CreatedTS: 7003})
}
