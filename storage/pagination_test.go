package storage

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestPagingFromSplitPoint pages through a room whose stream order is not its topological
// order (two branches of a fork, the second stored after the first, and backfilled history
// stored last): from the point just before the newest events by stream position, paging
// backwards reads every older event by stream, plus the backfilled ones, exactly once and
// deepest first; paging forwards reads exactly the newest events. A plain topological
// position at the first newest event would miss the deeper events of the first branch.
func TestPagingFromSplitPoint(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		// In stream order: the room's start (depths 5, 6), branch A (7-10), branch B (7-9),
		// the merge (11), then history backfilled before the start (3, 4).
		stored := []struct {
			id     string
			depth  int64
			status string
		}{
			{"$s5", 5, ""}, {"$s6", 6, ""},
			{"$a7", 7, ""}, {"$a8", 8, ""}, {"$a9", 9, ""}, {"$a10", 10, ""},
			{"$b7", 7, ""}, {"$b8", 8, ""}, {"$b9", 9, ""},
			{"$m11", 11, ""},
			{"$h4", 4, StatusBackfilled}, {"$h3", 3, StatusBackfilled},
		}
		var room int64
		nids := map[string]int64{}
		err = db.WithTx(ctx, func(tx *Tx) error {
			var err error
			if room, err = tx.InsertRoom(ctx, "!r:x", "11", 1); err != nil {
				return err
			}
			for _, e := range stored {
				ev := &Event{EventID: e.id, RoomNID: room, Type: "m.room.message", Sender: "@a:x", Depth: e.depth, Status: e.status, JSON: []byte(`{}`)}
				if nids[e.id], err = tx.InsertEvent(ctx, ev); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// page reads every page of size 2 from `from` and returns the event IDs in order.
		page := func(from PagePos, backwards bool) []string {
			var out []string
			for i := 0; i < 20; i++ {
				evs, err := db.RoomEventsPage(ctx, room, from, nil, backwards, 2)
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range evs {
					out = append(out, ev.EventID)
					from = from.Passed(ev, backwards)
				}
				if len(evs) < 2 {
					return out
				}
			}
			t.Fatal("paging does not end")
			return nil
		}
		// The newest three events by stream position: $b8, $b9, $m11 (a /sync timeline).
		split := StreamSplit(nids["$b8"])
		if diff := cmp.Diff([]string{"$a10", "$a9", "$a8", "$b7", "$a7", "$s6", "$s5", "$h4", "$h3"}, page(split, true)); diff != "" {
			t.Errorf("backwards from the point before the newest three (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"$b8", "$b9", "$m11"}, page(split, false)); diff != "" {
			t.Errorf("forwards from the point before the newest three (-want +got):\n%s", diff)
		}
		// A /sync position: everything up to it is before it.
		if diff := cmp.Diff([]string{"$m11", "$a10", "$b9", "$a9", "$b8", "$a8", "$b7", "$a7", "$s6", "$s5", "$h4", "$h3"},
			page(StreamSplit(nids["$m11"]+1), true)); diff != "" {
			t.Errorf("backwards from after the newest event (-want +got):\n%s", diff)
		}
		// Plain topological positions page through everything, deepest first.
		if diff := cmp.Diff([]string{"$m11", "$a10", "$b9", "$a9", "$b8", "$a8", "$b7", "$a7", "$s6", "$s5", "$h4", "$h3"},
			page(Plain(TopoEnd), true)); diff != "" {
			t.Errorf("backwards from the end (-want +got):\n%s", diff)
		}
		// to: backwards from the end down to the split point reads the newest three.
		to := split
		evs, err := db.RoomEventsPage(ctx, room, Plain(TopoEnd), &to, true, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ev := range evs {
			got = append(got, ev.EventID)
		}
		if diff := cmp.Diff([]string{"$m11", "$b9", "$b8"}, got); diff != "" {
			t.Errorf("backwards from the end to the split point (-want +got):\n%s", diff)
		}
	})
}
