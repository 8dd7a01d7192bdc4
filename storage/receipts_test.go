package storage

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// ephemeralFixture opens a database with room A (alice and bob joined, carol invited) and
// room B (dave joined), and returns it with the NID of room A.
func ephemeralFixture(t *testing.T, url string) (*DB, int64) {
	t.Helper()
	ctx := context.Background()
	db, err := Open(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var roomA int64
	err = db.WithTx(ctx, func(tx *Tx) error {
		a, err := tx.InsertRoom(ctx, "!a:x", "12", 1)
		if err != nil {
			return err
		}
		b, err := tx.InsertRoom(ctx, "!b:x", "12", 1)
		if err != nil {
			return err
		}
		roomA = a
		for i, m := range []struct {
			room       int64
			user, kind string
		}{{a, "@alice:x", "join"}, {a, "@bob:x", "join"}, {a, "@carol:x", "invite"}, {b, "@dave:x", "join"}} {
			if err := tx.SetMembership(ctx, m.room, m.user, m.kind, int64(i+1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return db, roomA
}

func TestReceipts(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, room := ephemeralFixture(t, url)
		set := func(r Receipt) int64 {
			t.Helper()
			var pos int64
			if err := db.WithTx(ctx, func(tx *Tx) error {
				var err error
				pos, err = tx.SetReceipt(ctx, r)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return pos
		}
		read := set(Receipt{RoomNID: room, UserID: "@bob:x", Type: "m.read", EventID: "$10", EventNID: 10, TS: 100})
		private := set(Receipt{RoomNID: room, UserID: "@bob:x", Type: ReceiptPrivate, EventID: "$11", EventNID: 11, TS: 101})
		if older := set(Receipt{RoomNID: room, UserID: "@bob:x", Type: "m.read", EventID: "$5", EventNID: 5, TS: 102}); older != 0 {
			t.Errorf("a receipt for an older event moved the stream to %d", older)
		}
		threaded := set(Receipt{RoomNID: room, UserID: "@bob:x", Type: "m.read", ThreadID: "main", EventID: "$6", EventNID: 6, TS: 103})
		if !(0 < read && read < private && private < threaded) {
			t.Fatalf("positions %d, %d, %d are not increasing", read, private, threaded)
		}
		since := func(user string, from int64) []string {
			t.Helper()
			rs, err := db.ReceiptsSince(ctx, user, from, threaded)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range rs {
				out = append(out, r.UserID+" "+r.Type+" "+r.ThreadID+" "+r.EventID)
			}
			return out
		}
		for _, tc := range []struct {
			user string
			from int64
			want []string
		}{
			{"@alice:x", 0, []string{"@bob:x m.read  $10", "@bob:x m.read main $6"}},
			{"@bob:x", 0, []string{"@bob:x m.read  $10", "@bob:x m.read.private  $11", "@bob:x m.read main $6"}},
			{"@alice:x", read, []string{"@bob:x m.read main $6"}},
			{"@carol:x", 0, nil}, // invited, not joined
			{"@dave:x", 0, nil},  // another room
		} {
			if diff := cmp.Diff(tc.want, since(tc.user, tc.from)); diff != "" {
				t.Errorf("ReceiptsSince(%s, %d) (-want +got):\n%s", tc.user, tc.from, diff)
			}
		}
	})
}
