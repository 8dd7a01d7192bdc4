package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestPurgeHistory purges a room with state, local and remote messages, a relation and a
// forked forward extremity: first keeping local events, then deleting them. State events and
// kept events become outliers, the extremities stay as they were, and the search index and
// relations of purged events go.
func TestPurgeHistory(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var room int64
		nids := map[string]int64{}
		type ev struct {
			id, typ, sender string
			depth           int64
			state           bool
		}
		evs := []ev{
			{"$create", "m.room.create", "@alice:x", 1, true},
			{"$join", "m.room.member", "@alice:x", 2, true},
			{"$local1", "m.room.message", "@alice:x", 3, false},
			{"$remote1", "m.room.message", "@bob:remote", 4, false},
			{"$fork", "m.room.message", "@bob:remote", 4, false}, // a forward extremity
			{"$topic", "m.room.topic", "@alice:x", 5, true},
			{"$reaction", "m.reaction", "@bob:remote", 6, false},
			{"$local2", "m.room.message", "@alice:x", 7, false},
			{"$point", "m.room.message", "@alice:x", 8, false},
			{"$latest", "m.room.message", "@alice:x", 9, false},
		}
		err = db.WithTx(ctx, func(tx *Tx) error {
			if room, err = tx.InsertRoom(ctx, "!r:x", "11", 1); err != nil {
				return err
			}
			for i, e := range evs {
				var sk int64
				if e.state {
					if sk, err = tx.StateKeyNID(ctx, StateKey{Type: e.typ}); err != nil {
						return err
					}
				}
				js := fmt.Sprintf(`{"type":%q,"content":{"body":"word %s"}}`, e.typ, e.id[1:])
				row := &Event{EventID: e.id, RoomNID: room, Type: e.typ, StateKeyNID: sk, Sender: e.sender,
					Depth: e.depth, OriginTS: int64(1000 * (i + 1)), JSON: []byte(js)}
				if _, err := tx.InsertEvent(ctx, row); err != nil {
					return err
				}
				nids[e.id] = row.NID
				if err := tx.IndexEvent(ctx, row.NID, room, "content.body", "word "+e.id[1:]); err != nil {
					return err
				}
			}
			if err := tx.InsertRelation(ctx, Relation{EventNID: nids["$reaction"], RoomNID: room, RelatesTo: "$local2",
				RelType: "m.annotation", EventType: "m.reaction", Sender: "@bob:remote", EventID: "$reaction", AggregationKey: "k"}); err != nil {
				return err
			}
			return tx.SetForwardExtremities(ctx, room, []int64{nids["$fork"], nids["$latest"]})
		})
		if err != nil {
			t.Fatal(err)
		}
		state := func() map[string]string {
			out := map[string]string{}
			for _, e := range evs {
				got, err := db.Event(ctx, e.id)
				switch {
				case errors.Is(err, ErrNotFound):
					out[e.id] = "deleted"
				case err != nil:
					t.Fatal(err)
				case got.Hidden:
					out[e.id] = got.Status
				default:
					out[e.id] = "visible"
				}
			}
			return out
		}
		depth, found, err := db.PurgeDepthAt(ctx, room, 9000) // $point's origin_ts
		if err != nil || !found || depth != 8 {
			t.Fatalf("PurgeDepthAt = %d, %v, %v; want 8", depth, found, err)
		}
		if _, found, _ := db.PurgeDepthAt(ctx, room, 1000); found {
			t.Fatal("PurgeDepthAt found an event before the first one")
		}

		// 1. Keep local events: only remote messages go, but not the forked extremity.
		p := &Purge{ID: "p1", RoomID: "!r:x", RoomNID: room, BeforeDepth: 8, UpToNID: nids["$latest"], CreatedTS: 1}
		if err := db.InsertPurge(ctx, *p); err != nil {
			t.Fatal(err)
		}
		if err := db.InsertPurge(ctx, Purge{ID: "p2", RoomID: "!r:x", RoomNID: room}); !errors.Is(err, ErrConflict) {
			t.Fatalf("second active purge of the room: %v, want ErrConflict", err)
		}
		res, err := db.RunPurge(ctx, p, ":x", 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Deleted != 2 || res.Kept != 5 {
			t.Errorf("first purge deleted %d, kept %d; want 2, 5", res.Deleted, res.Kept)
		}
		want := map[string]string{
			"$create": "outlier", "$join": "outlier", "$local1": "outlier", "$remote1": "deleted", "$fork": "visible",
			"$topic": "outlier", "$reaction": "deleted", "$local2": "outlier", "$point": "visible", "$latest": "visible",
		}
		if diff := cmp.Diff(want, state()); diff != "" {
			t.Errorf("after keeping local events (-want +got):\n%s", diff)
		}
		if rels, err := db.RelationsOf(ctx, []string{"$local2"}); err != nil || len(rels) != 0 {
			t.Errorf("relations of $local2 after the purge: %v, %v", rels, err)
		}
		if err := db.FinishPurge(ctx, "p1", "", 2); err != nil {
			t.Fatal(err)
		}
		if got, err := db.PurgeByID(ctx, "p1"); err != nil || got.Status != PurgeComplete {
			t.Fatalf("purge p1: %+v, %v", got, err)
		}

		// 2. Delete local events too: kept state stays, so do the extremities.
		p = &Purge{ID: "p3", RoomID: "!r:x", RoomNID: room, BeforeDepth: 8, UpToNID: nids["$latest"], DeleteLocal: true, CreatedTS: 3}
		if err := db.InsertPurge(ctx, *p); err != nil {
			t.Fatal(err)
		}
		if active, err := db.ActivePurges(ctx); err != nil || len(active) != 1 || active[0].ID != "p3" {
			t.Fatalf("active purges: %v, %v", active, err)
		}
		if _, err := db.RunPurge(ctx, p, ":x", 1000, func(time.Duration) {}); err != nil {
			t.Fatal(err)
		}
		want["$local1"], want["$local2"] = "deleted", "deleted"
		if diff := cmp.Diff(want, state()); diff != "" {
			t.Errorf("after deleting local events (-want +got):\n%s", diff)
		}
		hits, _, err := db.Search(ctx, SearchQuery{Terms: "word", RoomNIDs: []int64{room}, Limit: 20})
		if err != nil {
			t.Fatal(err)
		}
		var found2 []int64
		for _, h := range hits {
			found2 = append(found2, h.EventNID)
		}
		slices.Sort(found2)
		if diff := cmp.Diff([]int64{nids["$fork"], nids["$point"], nids["$latest"]}, found2); diff != "" {
			t.Errorf("search after the purge (-want +got):\n%s", diff)
		}
		// The room's timeline pages back to the purge point and no further.
		page, err := db.RoomEventsTopo(ctx, room, TopoEnd, nil, true, 20)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range page {
			ids = append(ids, e.EventID)
		}
		if diff := cmp.Diff([]string{"$latest", "$point", "$fork"}, ids); diff != "" {
			t.Errorf("/messages after the purge (-want +got):\n%s", diff)
		}
		if _, err := db.PurgeByID(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown purge: %v", err)
		}
	})
}
