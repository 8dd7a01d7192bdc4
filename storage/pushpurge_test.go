package storage

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

func TestPurgeReadNotifications(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, roomA := ephemeralFixture(t, url)
		const old, recent, cutoff = 100, 5000, 1000
		acts := []PushAction{
			// bob: 10 and 11 are read by his unthreaded receipt at 11, 14 by his receipt in
			// $root; 12 is old but unread, 13 read by nothing and recent.
			{UserID: "@bob:x", RoomNID: roomA, EventNID: 10, ThreadID: ThreadMain, Actions: `["notify"]`, TS: old},
			{UserID: "@bob:x", RoomNID: roomA, EventNID: 11, ThreadID: "$root", Actions: `["notify"]`, TS: old},
			{UserID: "@bob:x", RoomNID: roomA, EventNID: 12, ThreadID: ThreadMain, Highlight: true, Actions: `["notify"]`, TS: old},
			{UserID: "@bob:x", RoomNID: roomA, EventNID: 13, ThreadID: ThreadMain, Actions: `["notify"]`, TS: recent},
			{UserID: "@bob:x", RoomNID: roomA, EventNID: 14, ThreadID: "$root", Highlight: true, Actions: `["notify"]`, TS: old},
			// alice has read nothing: her old notification stays.
			{UserID: "@alice:x", RoomNID: roomA, EventNID: 10, ThreadID: ThreadMain, Actions: `["notify"]`, TS: old},
		}
		// dave: 25 old notifications, the first 20 read; several batches.
		for nid := int64(100); nid < 125; nid++ {
			acts = append(acts, PushAction{UserID: "@dave:x", RoomNID: roomA, EventNID: nid, ThreadID: ThreadMain, Actions: `["notify"]`, TS: old})
		}
		err := db.WithTx(ctx, func(tx *Tx) error {
			if err := tx.InsertPushActions(ctx, acts); err != nil {
				return err
			}
			for _, r := range []Receipt{
				{RoomNID: roomA, UserID: "@bob:x", Type: "m.read", EventID: "$11", EventNID: 11},
				{RoomNID: roomA, UserID: "@bob:x", Type: ReceiptPrivate, ThreadID: "$root", EventID: "$14", EventNID: 14},
				{RoomNID: roomA, UserID: "@dave:x", Type: "m.read", EventID: "$119", EventNID: 119},
			} {
				if _, err := tx.SetReceipt(ctx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		type counts struct {
			Rooms map[string]map[string]UnreadCount
			Total map[string]int
		}
		unread := func() counts {
			t.Helper()
			c := counts{Rooms: map[string]map[string]UnreadCount{}, Total: map[string]int{}}
			for _, user := range []string{"@alice:x", "@bob:x", "@dave:x"} {
				read, err := db.ReadPositions(ctx, user, roomA)
				if err != nil {
					t.Fatal(err)
				}
				if c.Rooms[user], err = db.UnreadCounts(ctx, user, roomA, read, 1<<62); err != nil {
					t.Fatal(err)
				}
				if c.Total[user], err = db.UnreadTotal(ctx, user); err != nil {
					t.Fatal(err)
				}
			}
			return c
		}
		nids := func(user string) []int64 {
			t.Helper()
			notes, err := db.Notifications(ctx, user, 0, 100, false)
			if err != nil {
				t.Fatal(err)
			}
			var out []int64
			for _, n := range notes {
				out = append(out, n.EventNID)
			}
			return out
		}

		before := unread()
		n, err := db.PurgeReadNotifications(ctx, cutoff, 7)
		if err != nil || n != 3+20 {
			t.Fatalf("PurgeReadNotifications = %d, %v; want 23", n, err)
		}
		if d := cmp.Diff(before, unread()); d != "" {
			t.Errorf("unread counts changed by the purge (-before +after):\n%s", d)
		}
		if d := cmp.Diff([]int64{13, 12}, nids("@bob:x")); d != "" {
			t.Errorf("bob's notifications (-want +got):\n%s", d)
		}
		if d := cmp.Diff([]int64{10}, nids("@alice:x")); d != "" {
			t.Errorf("alice's notifications (-want +got):\n%s", d)
		}
		if d := cmp.Diff([]int64{124, 123, 122, 121, 120}, nids("@dave:x")); d != "" {
			t.Errorf("dave's notifications (-want +got):\n%s", d)
		}
		if n, err := db.PurgeReadNotifications(ctx, cutoff, 7); err != nil || n != 0 {
			t.Errorf("second purge = %d, %v; want 0", n, err)
		}
		// Once bob reads the rest, his old one goes, the recent one stays until it is old.
		err = db.WithTx(ctx, func(tx *Tx) error {
			_, err := tx.SetReceipt(ctx, Receipt{RoomNID: roomA, UserID: "@bob:x", Type: "m.read", EventID: "$13", EventNID: 13})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := db.PurgeReadNotifications(ctx, cutoff, 1); err != nil || n != 1 {
			t.Errorf("purge after bob's receipt = %d, %v; want 1", n, err)
		}
		if d := cmp.Diff([]int64{13}, nids("@bob:x")); d != "" {
			t.Errorf("bob's notifications (-want +got):\n%s", d)
		}
	})
}
