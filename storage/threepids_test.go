package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestThreePIDs: SetThreePIDs replaces a user's list, keeps the times of the addresses it
// keeps, and refuses an address bound to another account without changing anything.
func TestThreePIDs(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	set := func(userID string, list []ThreePID, now int64) error {
		return db.WithTx(ctx, func(tx *Tx) error { return tx.SetThreePIDs(ctx, userID, list, now) })
	}
	if err := set("@a:t", []ThreePID{{Medium: "email", Address: "a@t"}, {Medium: "msisdn", Address: "1"}}, 10); err != nil {
		t.Fatal(err)
	}
	if err := set("@a:t", []ThreePID{{Medium: "email", Address: "a@t"}, {Medium: "email", Address: "a2@t"}}, 20); err != nil {
		t.Fatal(err)
	}
	got, err := db.ThreePIDs(ctx, "@a:t")
	if err != nil {
		t.Fatal(err)
	}
	want := []ThreePID{{"email", "a2@t", 20, 20}, {"email", "a@t", 10, 10}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("after replacing: %v, want %v", got, want)
	}
	if err := set("@b:t", []ThreePID{{Medium: "msisdn", Address: "2"}, {Medium: "email", Address: "a@t"}}, 30); !errors.Is(err, ErrThreePIDInUse) {
		t.Errorf("another user's address: %v, want ErrThreePIDInUse", err)
	}
	if got, _ := db.ThreePIDs(ctx, "@b:t"); len(got) != 0 {
		t.Errorf("the refused list was stored: %v", got)
	}
	if u, err := db.UserByThreePID(ctx, "msisdn", "1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a removed address still finds %q, %v", u, err)
	}
	err = db.WithTx(ctx, func(tx *Tx) error {
		if err := tx.SetExternalIDs(ctx, "@a:t", []ExternalID{{"p", "x"}}); err != nil {
			return err
		}
		return tx.SetExternalIDs(ctx, "@b:t", []ExternalID{{"p", "x"}})
	})
	if !errors.Is(err, ErrExternalIDInUse) {
		t.Errorf("another user's external ID: %v, want ErrExternalIDInUse", err)
	}
}

// TestDeviceSeen: a sighting is written behind the request, at most once a minute per device,
// and not at all for a device that is gone; Close waits for the writer.
func TestDeviceSeen(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	err := db.WithTx(ctx, func(tx *Tx) error {
		return tx.UpsertDevice(ctx, Device{UserID: "@a:t", DeviceID: "D", CreatedTS: 1, LastSeenIP: "10.0.0.1"}, "hash")
	})
	if err != nil {
		t.Fatal(err)
	}
	db.DeviceSeen("@a:t", "D", "10.0.0.2", "Client/1")
	db.DeviceSeen("@a:t", "D", "10.0.0.3", "Client/2") // within the minute: dropped
	db.DeviceSeen("@a:t", "GONE", "10.0.0.4", "Client/3")
	db.seen.wg.Wait()
	d, err := db.Device(ctx, "@a:t", "D")
	if err != nil {
		t.Fatal(err)
	}
	if d.LastSeenIP != "10.0.0.2" || d.LastSeenUserAgent != "Client/1" || time.Since(time.UnixMilli(d.LastSeenTS)) > time.Minute {
		t.Errorf("device after sightings: %+v", d)
	}
	// The token cache keeps serving without a generation bump.
	if _, err := db.DeviceByToken(ctx, "hash"); err != nil {
		t.Fatal(err)
	}
	var gen int64
	if err := db.queryRow(ctx, `SELECT generation FROM cache_generations WHERE name = 'devices'`).Scan(&gen); err != nil {
		t.Fatal(err)
	}
	db.DeviceSeen("@b:t", "E", "10.0.0.5", "x") // a new device: written
	db.seen.wg.Wait()
	var gen2 int64
	_ = db.queryRow(ctx, `SELECT generation FROM cache_generations WHERE name = 'devices'`).Scan(&gen2)
	if gen2 != gen {
		t.Errorf("a sighting bumped the devices cache generation %d -> %d", gen, gen2)
	}
}
