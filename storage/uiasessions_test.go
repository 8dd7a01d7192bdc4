package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestUIASessionsPerUserCapped: requests that only start user-interactive authentication
// sessions cannot grow the table without bound; a user keeps the 20 newest, and another
// user's sessions are untouched.
func TestUIASessionsPerUserCapped(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := storage.Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		insert := func(id, user string, expires int64) {
			t.Helper()
			err := db.WithTx(ctx, func(tx *storage.Tx) error {
				return tx.InsertUIASession(ctx, storage.UIASession{SessionID: id, UserID: user, Method: "POST",
					Path: "/_matrix/client/v3/delete_devices", Description: "d", ExpiresTS: expires}, 0)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		insert("bob-1", "@bob:x", 1000)
		for i := 1; i <= 25; i++ {
			insert(fmt.Sprintf("a-%02d", i), "@alice:x", int64(1000+i))
		}
		for i := 1; i <= 25; i++ {
			_, err := db.UIASession(ctx, fmt.Sprintf("a-%02d", i), 0)
			if kept := i > 5; kept != (err == nil) || (err != nil && !errors.Is(err, storage.ErrNotFound)) {
				t.Errorf("session a-%02d: %v, want kept %v", i, err, kept)
			}
		}
		if _, err := db.UIASession(ctx, "bob-1", 0); err != nil {
			t.Errorf("another user's session: %v", err)
		}
	})
}
