package storage_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestTokenCacheForgetsDeletedDevices: a token stops working the moment its device is
// deleted or the device gets a new token, although lookups are cached.
func TestTokenCacheForgetsDeletedDevices(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := storage.Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		write := func(fn func(tx *storage.Tx) error) {
			t.Helper()
			if err := db.WithTx(ctx, fn); err != nil {
				t.Fatal(err)
			}
		}
		write(func(tx *storage.Tx) error {
			return tx.UpsertDevice(ctx, storage.Device{UserID: "@a:x", DeviceID: "D"}, "hash1")
		})
		for i := 0; i < 2; i++ { // the second lookup comes from the cache
			if d, err := db.DeviceByToken(ctx, "hash1"); err != nil || d.DeviceID != "D" {
				t.Fatalf("lookup %d: %+v, %v", i, d, err)
			}
		}
		// Logging in again with the same device ID replaces the token.
		write(func(tx *storage.Tx) error {
			return tx.UpsertDevice(ctx, storage.Device{UserID: "@a:x", DeviceID: "D"}, "hash2")
		})
		if _, err := db.DeviceByToken(ctx, "hash1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("old token after a new login: %v", err)
		}
		if _, err := db.DeviceByToken(ctx, "hash2"); err != nil {
			t.Fatal(err)
		}
		write(func(tx *storage.Tx) error { return tx.DeleteDevices(ctx, "@a:x", "D") })
		if _, err := db.DeviceByToken(ctx, "hash2"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("token of a deleted device: %v", err)
		}
	})
}

// TestTokenCacheSeesOtherProcesses: a token deleted through another handle on the same
// database (another server process, or an admin command such as reset-password) is refused within
// the caches' recheck interval, and one the handle deleted itself at once.
func TestTokenCacheSeesOtherProcesses(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		server, err := storage.Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		defer server.Close()
		admin, err := storage.Open(ctx, url, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		if err := admin.WithTx(ctx, func(tx *storage.Tx) error {
			return tx.UpsertDevice(ctx, storage.Device{UserID: "@a:x", DeviceID: "D"}, "hash1")
		}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ { // the second lookup comes from the cache
			if _, err := server.DeviceByToken(ctx, "hash1"); err != nil {
				t.Fatalf("lookup %d: %v", i, err)
			}
		}
		if err := admin.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeleteDevices(ctx, "@a:x", "D") }); err != nil {
			t.Fatal(err)
		}
		// The other handle reads the caches' generations at most every 200 ms.
		deadline := time.Now().Add(time.Second)
		for {
			_, err := server.DeviceByToken(ctx, "hash1")
			if errors.Is(err, storage.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("token deleted by another process still found after 1 s: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// This handle's own deletion is seen at once.
		if err := server.WithTx(ctx, func(tx *storage.Tx) error {
			return tx.UpsertDevice(ctx, storage.Device{UserID: "@a:x", DeviceID: "E"}, "hash2")
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := server.DeviceByToken(ctx, "hash2"); err != nil {
			t.Fatal(err)
		}
		if err := server.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeleteDevices(ctx, "@a:x", "E") }); err != nil {
			t.Fatal(err)
		}
		if _, err := server.DeviceByToken(ctx, "hash2"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("token this handle deleted: %v", err)
		}
	})
}

// BenchmarkDeviceByToken measures the token lookup of every authenticated request: cached
// (one generation check) and straight from the database.
func BenchmarkDeviceByToken(b *testing.B) {
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(b.TempDir(), "db"), 4)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.UpsertDevice(ctx, storage.Device{UserID: "@a:x", DeviceID: "D"}, "hash1")
	}); err != nil {
		b.Fatal(err)
	}
	b.Run("cached", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := db.DeviceByToken(ctx, "hash1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := db.Q.DeviceByToken(ctx, "hash1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
