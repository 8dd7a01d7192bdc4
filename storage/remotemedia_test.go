package storage

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

func TestRemoteMedia(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		write := func(fn func(tx *Tx) error) error { return db.WithTx(ctx, fn) }

		// A local upload with the same media ID as the remote item is another item, and not
		// in the remote cache.
		local := Media{ServerName: "hs", MediaID: "abc", ContentType: "text/plain", Size: 1, UserID: "@alice:hs", CreatedTS: 1, UploadedTS: 1}
		if err := write(func(tx *Tx) error { return tx.InsertMedia(ctx, local) }); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.RemoteMedia(ctx, "hs", "abc"); !errors.Is(err, ErrNotFound) {
			t.Errorf("local media in the remote cache: %v, want ErrNotFound", err)
		}

		rm := Media{ServerName: "remote.test", MediaID: "abc", ContentType: "image/png", UploadName: "cat.png", Size: 3,
			SHA256: "beef", CreatedTS: 10, UploadedTS: 10}
		for _, ts := range []int64{10, 20} { // a concurrent fetch of the same media is not an error
			if err := write(func(tx *Tx) error { return tx.InsertRemoteMedia(ctx, rm, ts) }); err != nil {
				t.Fatal(err)
			}
		}
		got, fetched, err := db.RemoteMedia(ctx, "remote.test", "abc")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(rm, *got); diff != "" || fetched != 10 {
			t.Errorf("RemoteMedia fetched at %d, want 10; media (-want +got):\n%s", fetched, diff)
		}
		if m, err := db.Media(ctx, "remote.test", "abc"); err != nil || m.Size != 3 {
			t.Errorf("cached remote media through Media: %+v, %v", m, err)
		}

		// Thumbnails of remote media are cached like those of local media; deleting the
		// media takes both its rows.
		th := Thumbnail{ServerName: "remote.test", MediaID: "abc", Width: 32, Height: 32, Method: "scale", ContentType: "image/png", Size: 2, CreatedTS: 30}
		if err := write(func(tx *Tx) error { return tx.InsertThumbnail(ctx, th) }); err != nil {
			t.Fatal(err)
		}
		if err := write(func(tx *Tx) error { return tx.DeleteMedia(ctx, "remote.test", "abc") }); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.RemoteMedia(ctx, "remote.test", "abc"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted remote media: %v, want ErrNotFound", err)
		}
		if n, err := db.strings(ctx, `SELECT media_id FROM remote_media`); err != nil || len(n) != 0 {
			t.Errorf("remote_media rows after the delete: %v, %v", n, err)
		}
	})
}

// populateRemoteMedia caches a remote server's image, for the port test.
func populateRemoteMedia(ctx context.Context, tx *Tx) error {
	return tx.InsertRemoteMedia(ctx, Media{ServerName: "remote.test", MediaID: "dog", ContentType: "image/jpeg",
		UploadName: "dog.jpg", Size: 64, SHA256: "cd34", CreatedTS: 7010, UploadedTS: 7010}, 7011)
}
