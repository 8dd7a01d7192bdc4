package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestAccountFlagsReachTokenLookups: the lock, suspension and shadow-ban flags come with the
// device of an access token, and a change is seen by the next lookup although lookups are
// cached; a puppet token acts as its user until it expires or its admin logs out everywhere.
func TestAccountFlagsReachTokenLookups(t *testing.T) {
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
			for _, u := range []string{"@a:x", "@admin:x"} {
				if err := tx.InsertAccount(ctx, storage.Account{UserID: u, CreatedTS: 1}); err != nil {
					return err
				}
			}
			return tx.UpsertDevice(ctx, storage.Device{UserID: "@a:x", DeviceID: "D"}, "hash1")
		})
		flags := func(hash string) []bool {
			t.Helper()
			d, err := db.DeviceByToken(ctx, hash)
			if err != nil {
				t.Fatal(err)
			}
			return []bool{d.Locked, d.Suspended, d.ShadowBanned}
		}
		if diff := cmp.Diff([]bool{false, false, false}, flags("hash1")); diff != "" {
			t.Errorf("fresh account (-want +got):\n%s", diff)
		}
		for i, flag := range []string{storage.FlagLocked, storage.FlagSuspended, storage.FlagShadowBanned} {
			write(func(tx *storage.Tx) error { return tx.SetAccountFlag(ctx, "@a:x", flag, true) })
			want := []bool{i >= 0, i >= 1, i >= 2}
			if diff := cmp.Diff(want, flags("hash1")); diff != "" {
				t.Errorf("after setting %s (-want +got):\n%s", flag, diff)
			}
		}
		write(func(tx *storage.Tx) error { return tx.SetAccountFlag(ctx, "@a:x", storage.FlagLocked, false) })
		if flags("hash1")[0] {
			t.Error("still locked after unlocking")
		}
		if err := db.WithTx(ctx, func(tx *storage.Tx) error {
			return tx.SetAccountFlag(ctx, "@nobody:x", storage.FlagLocked, true)
		}); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("flag of an unknown account: %v", err)
		}

		// Puppet tokens.
		later := time.Now().Add(time.Hour).UnixMilli()
		write(func(tx *storage.Tx) error {
			if err := tx.InsertPuppetToken(ctx, storage.PuppetToken{UserID: "@a:x", DeviceID: "P1", AdminUserID: "@admin:x", CreatedTS: 1}, "puppet1"); err != nil {
				return err
			}
			if err := tx.InsertPuppetToken(ctx, storage.PuppetToken{UserID: "@a:x", DeviceID: "P2", AdminUserID: "@admin:x", ValidUntilMS: later, CreatedTS: 1}, "puppet2"); err != nil {
				return err
			}
			return tx.InsertPuppetToken(ctx, storage.PuppetToken{UserID: "@a:x", DeviceID: "P3", AdminUserID: "@admin:x", ValidUntilMS: 1000, CreatedTS: 1}, "puppet3")
		})
		for _, h := range []string{"puppet1", "puppet2"} {
			d, err := db.DeviceByToken(ctx, h)
			if err != nil || d.UserID != "@a:x" || !d.Puppet || !d.Suspended {
				t.Fatalf("puppet token %s: %+v, %v", h, d, err)
			}
		}
		if _, err := db.DeviceByToken(ctx, "puppet3"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("expired puppet token: %v", err)
		}
		// The user's own logout everywhere leaves it; the admin's ends it.
		write(func(tx *storage.Tx) error { return tx.DeleteDevices(ctx, "@a:x") })
		if _, err := db.DeviceByToken(ctx, "puppet1"); err != nil {
			t.Errorf("puppet token after the user's logout everywhere: %v", err)
		}
		write(func(tx *storage.Tx) error { return tx.DeleteDevices(ctx, "@admin:x") })
		if _, err := db.DeviceByToken(ctx, "puppet1"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("puppet token after the admin's logout everywhere: %v", err)
		}
	})
}
