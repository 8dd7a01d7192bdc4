package storage

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

func TestSlidingSyncQueries(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var a, b, c int64
		var nids []int64 // events: a, b, c, a (hidden), b
		var recAlice, recBobPrivate, recAliceB int64
		var adA1, adB, adA2 int64
		err = db.WithTx(ctx, func(tx *Tx) error {
			var err error
			for _, r := range []struct {
				id  string
				nid *int64
			}{{"!a:x", &a}, {"!b:x", &b}, {"!c:x", &c}} {
				if *r.nid, err = tx.InsertRoom(ctx, r.id, "12", 1); err != nil {
					return err
				}
			}
			for _, m := range []struct {
				room       int64
				user, kind string
			}{{a, "@alice:x", "join"}, {b, "@alice:x", "join"}, {c, "@alice:x", "invite"}, {a, "@bob:x", "join"}} {
				if err := tx.SetMembership(ctx, m.room, m.user, m.kind, 1); err != nil {
					return err
				}
			}
			for i, ev := range []struct {
				room   int64
				status string
			}{{a, ""}, {b, ""}, {c, ""}, {a, StatusOutlier}, {b, ""}} {
				nid, err := tx.InsertEvent(ctx, &Event{EventID: "$e" + string(rune('0'+i)), RoomNID: ev.room, Type: "m.room.message",
					Sender: "@bob:x", Depth: int64(i + 1), Status: ev.status, JSON: []byte(`{}`)})
				if err != nil {
					return err
				}
				nids = append(nids, nid)
			}
			receipt := func(room int64, user, typ string) int64 {
				if err != nil {
					return 0
				}
				var pos int64
				pos, err = tx.SetReceipt(ctx, Receipt{RoomNID: room, UserID: user, Type: typ, EventID: "$e0", EventNID: nids[0], TS: 1})
				return pos
			}
			recAlice = receipt(a, "@alice:x", "m.read")
			receipt(a, "@bob:x", "m.read")
			recBobPrivate = receipt(a, "@bob:x", ReceiptPrivate)
			receipt(c, "@alice:x", "m.read") // not joined
			recAliceB = receipt(b, "@alice:x", "m.read.private")
			receipt(b, "@alice:x", "m.fully_read") // not a read receipt
			if err != nil {
				return err
			}
			if adA1, err = tx.SetAccountData(ctx, "@alice:x", "!a:x", "m.tag", `{"tags":{}}`); err != nil {
				return err
			}
			if adB, err = tx.SetAccountData(ctx, "@alice:x", "!b:x", "m.tag", `{}`); err != nil {
				return err
			}
			if _, err = tx.SetAccountData(ctx, "@alice:x", "", "m.direct", `{}`); err != nil {
				return err
			}
			adA2, err = tx.SetAccountData(ctx, "@alice:x", "!a:x", "m.marked_unread", `{"unread":true}`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}

		rooms, err := db.JoinedRoomsWithEvents(ctx, "@alice:x", nids[0], nids[4])
		if err != nil {
			t.Fatal(err)
		}
		// a's only event in the window is hidden; c is not joined.
		if diff := cmp.Diff(map[int64]int64{b: nids[4]}, rooms); diff != "" {
			t.Errorf("JoinedRoomsWithEvents (-want +got):\n%s", diff)
		}
		if rooms, _ = db.JoinedRoomsWithEvents(ctx, "@alice:x", 0, nids[3]); !cmp.Equal(rooms, map[int64]int64{a: nids[0], b: nids[1]}) {
			t.Errorf("JoinedRoomsWithEvents from 0 = %v", rooms)
		}

		receipts := func(user string, room, since, upTo int64) []string {
			t.Helper()
			rs, err := db.RoomReceiptsSince(ctx, user, room, since, upTo)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range rs {
				out = append(out, r.UserID+" "+r.Type)
			}
			return out
		}
		if diff := cmp.Diff([]string{"@alice:x m.read", "@bob:x m.read"}, receipts("@alice:x", a, 0, recAliceB)); diff != "" {
			t.Errorf("RoomReceiptsSince (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"@bob:x m.read", "@bob:x m.read.private"}, receipts("@bob:x", a, recAlice, recAliceB)); diff != "" {
			t.Errorf("RoomReceiptsSince of bob (-want +got):\n%s", diff)
		}

		own, err := db.OwnReadReceiptsSince(ctx, "@alice:x", 0, recAliceB+10)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[int64]int64{a: recAlice, b: recAliceB}, own); diff != "" {
			t.Errorf("OwnReadReceiptsSince (-want +got):\n%s", diff)
		}
		if own, _ = db.OwnReadReceiptsSince(ctx, "@alice:x", recAlice, recBobPrivate); len(own) != 0 {
			t.Errorf("OwnReadReceiptsSince counted others' receipts: %v", own)
		}

		ad, err := db.RoomAccountDataSince(ctx, "@alice:x", "!a:x", 0, adA2)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ad {
			got = append(got, e.RoomID+" "+e.Type)
		}
		if diff := cmp.Diff([]string{"!a:x m.tag", "!a:x m.marked_unread"}, got); diff != "" {
			t.Errorf("RoomAccountDataSince (-want +got):\n%s", diff)
		}
		if ad, _ = db.RoomAccountDataSince(ctx, "@alice:x", "!a:x", adA1, adB); len(ad) != 0 {
			t.Errorf("RoomAccountDataSince (%d, %d] = %v", adA1, adB, ad)
		}
	})
}
