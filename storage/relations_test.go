package storage

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestRelationsStayInTheirRoom checks that a relation between events of two rooms is never
// returned: not recorded when the parent is known to be in another room, and left out of every
// query when the parent arrives later in another room.
func TestRelationsStayInTheirRoom(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var x, y int64
		depth := int64(0)
		insert := func(tx *Tx, room int64, id, relatesTo, relType string) error {
			depth++
			ev := &Event{EventID: id, RoomNID: room, Type: "m.room.message", Sender: "@mallory:x", Depth: depth, JSON: []byte(`{}`)}
			if _, err := tx.InsertEvent(ctx, ev); err != nil {
				return err
			}
			if relatesTo == "" {
				return nil
			}
			return tx.InsertRelation(ctx, Relation{EventNID: ev.NID, RoomNID: room, RelatesTo: relatesTo, RelType: relType,
				EventType: ev.Type, Sender: ev.Sender, EventID: id, AggregationKey: "k"})
		}
		err = db.WithTx(ctx, func(tx *Tx) error {
			var err error
			if x, err = tx.InsertRoom(ctx, "!x:x", "11", 1); err != nil {
				return err
			}
			if y, err = tx.InsertRoom(ctx, "!y:x", "11", 1); err != nil {
				return err
			}
			for _, e := range []struct {
				room               int64
				id, parent, relTyp string
			}{
				{x, "$root", "", ""},
				{y, "$thread-from-y", "$root", "m.thread"},
				{y, "$reaction-from-y", "$root", "m.annotation"},
				{y, "$early", "$later", "m.thread"}, // the parent is not known yet
				{x, "$later", "", ""},
				{x, "$reply", "$root", "m.thread"},
			} {
				if err := insert(tx, e.room, e.id, e.parent, e.relTyp); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		eventIDs := func(rels []Relation, err error) []string {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range rels {
				if r.EventID != "" {
					out = append(out, r.EventID)
				} else {
					out = append(out, r.RelatesTo)
				}
			}
			return out
		}
		for _, c := range []struct {
			name string
			got  []string
			want []string
		}{
			{"RelationsOf", eventIDs(db.RelationsOf(ctx, []string{"$root", "$later"})), []string{"$reply"}},
			{"ChildRelations of root", eventIDs(db.ChildRelations(ctx, "$root", "", "", 0, 0, true, 10)), []string{"$reply"}},
			{"ChildRelations of later", eventIDs(db.ChildRelations(ctx, "$later", "", "", 0, 0, true, 10)), nil},
			{"ThreadRoots of x", eventIDs(db.ThreadRoots(ctx, x, "", 0, 10)), []string{"$root"}},
			{"ThreadRoots of y", eventIDs(db.ThreadRoots(ctx, y, "", 0, 10)), nil},
		} {
			if diff := cmp.Diff(c.want, c.got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", c.name, diff)
			}
		}
		for _, room := range []int64{x, y} {
			if dup, err := db.HasAnnotation(ctx, room, "$root", "@mallory:x", "m.room.message", "k"); err != nil || dup {
				t.Errorf("HasAnnotation in room %d = %v, %v; want false", room, dup, err)
			}
		}
		later, err := db.Event(ctx, "$later")
		if err != nil {
			t.Fatal(err)
		}
		if later.HasChildren {
			t.Error("$later is marked as having children from another room")
		}
	})
}
