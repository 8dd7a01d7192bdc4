package storage

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestSharedNotifications: shared notifications count for the users whose spans cover them,
// except their sender and the users evaluated apart, in every reader: unread counts (by
// thread), new rows since a count, the badge, GET /notifications, the pusher's feed and the
// purge, which deletes a shared row once everyone it covers has read it.
func TestSharedNotifications(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, roomA := ephemeralFixture(t, url)
		const old = 100
		shared := func(nid int64, sender, thread string, highlight bool, apart ...string) SharedPush {
			return SharedPush{RoomNID: roomA, EventNID: nid, Sender: sender, ThreadID: thread, Highlight: highlight,
				Actions: `["notify"]`, TS: old, Apart: apart}
		}
		err := db.WithTx(ctx, func(tx *Tx) error {
			// alice is covered from 10 on; bob from 10 to 14 and again from 20.
			if err := tx.ChangePushSpans(ctx, []SpanChange{
				{UserID: "@alice:x", RoomNID: roomA, EventNID: 10, Open: true},
				{UserID: "@bob:x", RoomNID: roomA, EventNID: 10, Open: true},
				{UserID: "@bob:x", RoomNID: roomA, EventNID: 15},
				{UserID: "@bob:x", RoomNID: roomA, EventNID: 20, Open: true},
			}); err != nil {
				return err
			}
			if err := tx.InsertSharedPushes(ctx, []SharedPush{
				shared(10, "@x:y", ThreadMain, false),
				shared(12, "@alice:x", ThreadMain, false),
				shared(13, "@x:y", ThreadMain, false, "@bob:x"),
				shared(16, "@x:y", ThreadMain, false),
				shared(21, "@x:y", ThreadMain, false),
				shared(22, "@x:y", "$root", true),
			}); err != nil {
				return err
			}
			if err := tx.InsertPushActions(ctx, []PushAction{
				{UserID: "@bob:x", RoomNID: roomA, EventNID: 13, ThreadID: ThreadMain, Highlight: true, Actions: `["notify"]`, TS: old},
			}); err != nil {
				return err
			}
			return tx.SetPusher(ctx, Pusher{UserID: "@bob:x", AppID: "a", PushKey: "k", Kind: "http", Data: "{}"}, false)
		})
		if err != nil {
			t.Fatal(err)
		}
		type state struct {
			Counts map[string]map[string]UnreadCount
			Total  map[string]int
			Notes  map[string][]int64
		}
		look := func() state {
			t.Helper()
			s := state{Counts: map[string]map[string]UnreadCount{}, Total: map[string]int{}, Notes: map[string][]int64{}}
			for _, user := range []string{"@alice:x", "@bob:x"} {
				read, err := db.ReadPositions(ctx, user, roomA)
				if err != nil {
					t.Fatal(err)
				}
				if s.Counts[user], err = db.UnreadCounts(ctx, user, roomA, read, 1<<62); err != nil {
					t.Fatal(err)
				}
				if s.Total[user], err = db.UnreadTotal(ctx, user); err != nil {
					t.Fatal(err)
				}
				notes, err := db.Notifications(ctx, user, 0, 100, false)
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range notes {
					s.Notes[user] = append(s.Notes[user], n.EventNID)
				}
			}
			return s
		}
		want := state{
			Counts: map[string]map[string]UnreadCount{
				"@alice:x": {ThreadMain: {Notifications: 4}, "$root": {Notifications: 1, Highlights: 1}},
				"@bob:x":   {ThreadMain: {Notifications: 4, Highlights: 1}, "$root": {Notifications: 1, Highlights: 1}},
			},
			Total: map[string]int{"@alice:x": 5, "@bob:x": 5},
			Notes: map[string][]int64{"@alice:x": {22, 21, 16, 13, 10}, "@bob:x": {22, 21, 13, 12, 10}},
		}
		if d := cmp.Diff(want, look()); d != "" {
			t.Errorf("notifications (-want +got):\n%s", d)
		}
		hl, err := db.Notifications(ctx, "@bob:x", 0, 100, true)
		if err != nil || len(hl) != 2 || hl[0].EventNID != 22 || hl[1].EventNID != 13 {
			t.Errorf("bob's highlights = %v, %v; want 22 and 13", hl, err)
		}
		rows, err := db.UnreadRows(ctx, "@bob:x", roomA, 11, 21)
		if err != nil {
			t.Fatal(err)
		}
		wantRows := []UnreadRow{{ThreadMain, 12, false}, {ThreadMain, 13, true}, {ThreadMain, 21, false}}
		if d := cmp.Diff(wantRows, rows, cmpopts.SortSlices(func(a, b UnreadRow) bool { return a.EventNID < b.EventNID })); d != "" {
			t.Errorf("bob's rows in (11, 21] (-want +got):\n%s", d)
		}
		acts, err := db.PushActionsAfter(ctx, 11, 1<<62, 3)
		if err != nil {
			t.Fatal(err)
		}
		var pushed []int64
		for _, a := range acts {
			if a.UserID != "@bob:x" {
				t.Errorf("push action of %s, who has no pusher", a.UserID)
			}
			pushed = append(pushed, a.EventNID)
		}
		if d := cmp.Diff([]int64{12, 13, 21}, pushed); d != "" {
			t.Errorf("pusher feed after 11, 3 events (-want +got):\n%s", d)
		}

		// bob reads up to 13, alice up to 21: only 21 (bob's) and 22 (both) stay unread.
		err = db.WithTx(ctx, func(tx *Tx) error {
			for _, r := range []Receipt{
				{RoomNID: roomA, UserID: "@bob:x", Type: "m.read", EventID: "$13", EventNID: 13},
				{RoomNID: roomA, UserID: "@alice:x", Type: "m.read", EventID: "$21", EventNID: 21},
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
		before := look()
		if d := cmp.Diff(map[string]map[string]UnreadCount{
			"@alice:x": {"$root": {Notifications: 1, Highlights: 1}},
			"@bob:x":   {ThreadMain: {Notifications: 1}, "$root": {Notifications: 1, Highlights: 1}},
		}, before.Counts); d != "" {
			t.Errorf("counts after the receipts (-want +got):\n%s", d)
		}
		// Bob's own row at 13 and the shared rows 10, 12, 13 and 16 are read by all they cover.
		if n, err := db.PurgeReadNotifications(ctx, 1000, 2); err != nil || n != 5 {
			t.Fatalf("PurgeReadNotifications = %d, %v; want 5", n, err)
		}
		after := look()
		if d := cmp.Diff(before.Counts, after.Counts); d != "" {
			t.Errorf("the purge changed unread counts (-before +after):\n%s", d)
		}
		if d := cmp.Diff(map[string][]int64{"@alice:x": {22, 21}, "@bob:x": {22, 21}}, after.Notes); d != "" {
			t.Errorf("notifications after the purge (-want +got):\n%s", d)
		}
	})
}
