package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// roomPurgeKept lists the tables naming a room that PurgeRoom leaves alone, and why.
var roomPurgeKept = map[string]string{
	"blocked_rooms":       "a deleted room stays blocked",
	"room_deletes":        "the status of the deletion itself",
	"reports":             "reports stay for the admins",
	"key_backup_sessions": "a user's own key backup",
	"purged_room_leaves":  "written by the purge: the members' leaves, for their /sync",
}

// TestPurgeRoomCoversEveryTable fails when a table with a room_nid or room_id column is neither
// purged with its room nor listed as kept: a new table must choose.
func TestPurgeRoomCoversEveryTable(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		tables, err := db.strings(ctx, db.dialect.tables)
		if err != nil {
			t.Fatal(err)
		}
		purged := strings.Join(append(append([]string{}, roomPurges...), roomPurgesByID...), "\n")
		for _, table := range tables {
			if strings.HasPrefix(table, "event_search_") { // FTS5's shadow tables
				continue
			}
			rows, err := db.query(ctx, fmt.Sprintf(`SELECT * FROM %s LIMIT 0`, table))
			if err != nil {
				t.Fatal(err)
			}
			cols, err := rows.Columns()
			rows.Close()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cols {
				if c != "room_nid" && c != "room_id" {
					continue
				}
				if _, kept := roomPurgeKept[table]; !kept && !strings.Contains(purged, "DELETE FROM "+table+" WHERE") {
					t.Errorf("table %s has %s but PurgeRoom does not delete from it (or list it in roomPurgeKept)", table, c)
				}
			}
		}
	})
}

// TestPurgeRoom: a purged room's rows are gone; another room's stay.
func TestPurgeRoom(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, roomA := ephemeralFixture(t, url)
		err := db.WithTx(ctx, func(tx *Tx) error {
			for _, a := range []struct{ alias, room string }{{"#a:x", "!a:x"}, {"#b:x", "!b:x"}} {
				if err := tx.InsertAlias(ctx, a.alias, a.room, "@alice:x"); err != nil {
					return err
				}
			}
			if err := tx.BlockRoom(ctx, "!a:x", "@admin:x", 1); err != nil {
				return err
			}
			_, err := tx.SetAccountData(ctx, "@alice:x", "!a:x", "m.fully_read", `{}`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.PurgeRoom(ctx, roomA, "!a:x") }); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Room(ctx, "!a:x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("purged room: %v", err)
		}
		if ms, err := db.RoomMembers(ctx, roomA, ""); err != nil || len(ms) != 0 {
			t.Errorf("members of the purged room: %v %v", ms, err)
		}
		if ms, err := db.UserMemberships(ctx, "@alice:x", ""); err != nil || len(ms) != 0 {
			t.Errorf("alice's memberships: %v %v", ms, err)
		}
		if _, _, err := db.Alias(ctx, "#a:x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("alias of the purged room: %v", err)
		}
		if _, err := db.AccountDataEntry(ctx, "@alice:x", "!a:x", "m.fully_read"); !errors.Is(err, ErrNotFound) {
			t.Errorf("room account data of the purged room: %v", err)
		}
		if by, err := db.RoomBlockedBy(ctx, "!a:x"); err != nil || by != "@admin:x" {
			t.Errorf("block of the purged room: %q %v", by, err)
		}
		if _, err := db.Room(ctx, "!b:x"); err != nil {
			t.Errorf("other room: %v", err)
		}
		if ms, err := db.UserMemberships(ctx, "@dave:x", ""); err != nil || len(ms) != 1 {
			t.Errorf("dave's memberships of the other room: %v %v", ms, err)
		}
		if _, _, err := db.Alias(ctx, "#b:x"); err != nil {
			t.Errorf("alias of the other room: %v", err)
		}
	})
}
