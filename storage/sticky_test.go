package storage

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestStickyEvents: the sticky events of a room are those still sticky at the given time, in
// the stream range asked, without redacted ones; expired rows go as new ones arrive.
func TestStickyEvents(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var room int64
		nids := map[string]int64{}
		insert := func(id string, until int64, redacted bool) {
			t.Helper()
			if err := db.WithTx(ctx, func(tx *Tx) error {
				ev := &Event{EventID: id, RoomNID: room, Type: "m.rtc.member", Sender: "@a:test", JSON: []byte(`{}`), StickyUntil: until}
				if redacted {
					ev.RedactedBy = "$r"
				}
				nid, err := tx.InsertEvent(ctx, ev)
				nids[id] = nid
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.WithTx(ctx, func(tx *Tx) (err error) {
			room, err = tx.InsertRoom(ctx, "!r:test", "11", 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		insert("$short", 2000, false)
		insert("$long", 9000, false)
		insert("$plain", 0, false)
		insert("$redacted", 9000, true)
		ids := func(evs []StickyEvent) []string {
			var out []string
			for _, e := range evs {
				out = append(out, e.EventID)
			}
			return out
		}
		got, err := db.StickyEvents(ctx, room, 0, 1<<40, 1000, 10)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"$short", "$long"}, ids(got)); diff != "" {
			t.Errorf("at 1000 (-want +got):\n%s", diff)
		}
		if got, _ = db.StickyEvents(ctx, room, 0, 1<<40, 5000, 10); !cmp.Equal(ids(got), []string{"$long"}) || got[0].ExpiresTS != 9000 {
			t.Errorf("at 5000: %v", got)
		}
		if got, _ = db.StickyEvents(ctx, room, nids["$long"], 1<<40, 1000, 10); len(got) != 0 {
			t.Errorf("after $long: %v", ids(got))
		}
		refs, err := db.UnexpiredSticky(ctx, nids["$short"], 1000)
		if err != nil || len(refs) != 1 || refs[0].NID != nids["$short"] || refs[0].RoomNID != room {
			t.Errorf("UnexpiredSticky up to $short: %v, %v", refs, err)
		}
		// A sticky event arriving an hour after $short expired deletes its row.
		insert("$later", 2000+maxStickyMS+1, false)
		if refs, _ = db.UnexpiredSticky(ctx, 1<<40, 0); len(refs) != 3 {
			t.Errorf("after a later sticky event, rows %v, want $long, $redacted and $later", refs)
		}
	})
}
