package storage

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

func TestUnreadCountsAndNotifications(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, roomA := ephemeralFixture(t, url)
		// bob's notifications: events 10 (main), 11 (thread $root, highlight), 12 (main, highlight), 13 (thread).
		acts := []PushAction{
			{UserID: "@bob:x", RoomNID: roomA, EventNID: 10, ThreadID: ThreadMain, Actions: `["notify"]`, TS: 1},
			{UserID: "@bob:x", RoomNID: roomA, EventNID: 11, ThreadID: "$root", Highlight: true, Actions: `["notify"]`, TS: 2},
			{UserID: "@bob:x", RoomNID: roomA, EventNID: 12, ThreadID: ThreadMain, Highlight: true, Actions: `["notify"]`, TS: 3},
			{UserID: "@bob:x", RoomNID: roomA, EventNID: 13, ThreadID: "$root", Actions: `["notify"]`, TS: 4},
			{UserID: "@alice:x", RoomNID: roomA, EventNID: 13, ThreadID: "$root", Actions: `["notify"]`, TS: 4},
		}
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.InsertPushActions(ctx, acts) }); err != nil {
			t.Fatal(err)
		}
		counts := func() map[string]UnreadCount {
			t.Helper()
			read, err := db.ReadPositions(ctx, "@bob:x", roomA)
			if err != nil {
				t.Fatal(err)
			}
			c, err := db.UnreadCounts(ctx, "@bob:x", roomA, read, 1<<62)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		receipt := func(typ, thread string, nid int64) {
			t.Helper()
			err := db.WithTx(ctx, func(tx *Tx) error {
				_, err := tx.SetReceipt(ctx, Receipt{RoomNID: roomA, UserID: "@bob:x", Type: typ, ThreadID: thread, EventID: "$e", EventNID: nid})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		want := map[string]UnreadCount{ThreadMain: {2, 1}, "$root": {2, 1}}
		if d := cmp.Diff(want, counts()); d != "" {
			t.Errorf("no receipt (-want +got):\n%s", d)
		}
		// A threaded receipt in the main timeline leaves the thread alone.
		receipt("m.read", ThreadMain, 12)
		want = map[string]UnreadCount{"$root": {2, 1}}
		if d := cmp.Diff(want, counts()); d != "" {
			t.Errorf("main receipt (-want +got):\n%s", d)
		}
		// A private unthreaded receipt at 11 reads everything up to it.
		receipt(ReceiptPrivate, "", 11)
		want = map[string]UnreadCount{"$root": {1, 0}}
		if d := cmp.Diff(want, counts()); d != "" {
			t.Errorf("private receipt (-want +got):\n%s", d)
		}
		if n, err := db.UnreadTotal(ctx, "@bob:x"); err != nil || n != 1 {
			t.Errorf("UnreadTotal = %d, %v; want 1", n, err)
		}

		notes, err := db.Notifications(ctx, "@bob:x", 0, 3, false)
		if err != nil {
			t.Fatal(err)
		}
		type short struct {
			NID  int64
			Read bool
			Room string
		}
		var got []short
		for _, n := range notes {
			got = append(got, short{n.EventNID, n.Read, n.RoomID})
		}
		if d := cmp.Diff([]short{{13, false, "!a:x"}, {12, true, "!a:x"}, {11, true, "!a:x"}}, got); d != "" {
			t.Errorf("Notifications (-want +got):\n%s", d)
		}
		notes, err = db.Notifications(ctx, "@bob:x", 12, 10, true)
		if err != nil || len(notes) != 1 || notes[0].EventNID != 11 || !notes[0].Highlight {
			t.Errorf("highlights before 12 = %+v, %v", notes, err)
		}

		receipt("m.read", "", 13)
		if d := cmp.Diff(map[string]UnreadCount{}, counts()); d != "" {
			t.Errorf("all read (-want +got):\n%s", d)
		}
	})
}

func TestPushersAndRules(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, roomA := ephemeralFixture(t, url)
		p := Pusher{UserID: "@bob:x", AppID: "app", PushKey: "k", Kind: "http", AppDisplayName: "A", DeviceDisplayName: "D",
			Lang: "en", Data: `{"url":"u"}`, PushKeyTS: 5}
		set := func(p Pusher, appendOthers bool) {
			t.Helper()
			if err := db.WithTx(ctx, func(tx *Tx) error { return tx.SetPusher(ctx, p, appendOthers) }); err != nil {
				t.Fatal(err)
			}
		}
		set(p, false)
		alice := p
		alice.UserID = "@alice:x"
		set(alice, true) // bob keeps his
		if ps, _ := db.Pushers(ctx, "@bob:x"); len(ps) != 1 {
			t.Errorf("bob's pushers after alice appended: %+v", ps)
		}
		p.Lang = "fr"
		set(p, false) // alice loses hers, bob's is updated
		if ps, _ := db.Pushers(ctx, "@alice:x"); len(ps) != 0 {
			t.Errorf("alice's pushers: %+v", ps)
		}
		ps, err := db.Pushers(ctx, "@bob:x")
		if err != nil || len(ps) != 1 || ps[0].Lang != "fr" || ps[0].PushKeyTS != 5 {
			t.Errorf("bob's pushers: %+v, %v", ps, err)
		}

		err = db.WithTx(ctx, func(tx *Tx) error {
			return tx.InsertPushActions(ctx, []PushAction{
				{UserID: "@bob:x", RoomNID: roomA, EventNID: 20, ThreadID: ThreadMain, Actions: `[]`},
				{UserID: "@alice:x", RoomNID: roomA, EventNID: 21, ThreadID: ThreadMain, Actions: `[]`},
				{UserID: "@bob:x", RoomNID: roomA, EventNID: 22, ThreadID: ThreadMain, Actions: `[]`},
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		acts, err := db.PushActionsAfter(ctx, 20, 1<<62, 10)
		if err != nil || len(acts) != 1 || acts[0].EventNID != 22 {
			t.Errorf("PushActionsAfter(20) = %+v, %v; want bob's 22 only", acts, err)
		}
		if acts, err = db.PushActionsAfter(ctx, 0, 1<<62, 1); err != nil || len(acts) != 1 || acts[0].EventNID != 20 {
			t.Errorf("PushActionsAfter(0, 1) = %+v, %v; want bob's 20 only", acts, err)
		}

		del := func() error {
			return db.WithTx(ctx, func(tx *Tx) error { return tx.DeletePusher(ctx, "@bob:x", "app", "k") })
		}
		if err := del(); err != nil {
			t.Fatal(err)
		}
		if err := del(); err != ErrNotFound {
			t.Errorf("second delete: %v, want ErrNotFound", err)
		}

		var pos int64
		err = db.WithTx(ctx, func(tx *Tx) error {
			if _, err := tx.SetAccountData(ctx, "@bob:x", "", "m.push_rules", `{"a":1}`); err != nil {
				return err
			}
			if _, err := tx.SetAccountData(ctx, "@bob:x", "!a:x", "m.push_rules", `{}`); err != nil {
				return err
			}
			pos, err = tx.SetAccountData(ctx, "@carol:x", "", "m.push_rules", `{"c":1}`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		changed, err := db.PushRulesChangedSince(ctx, pos-1)
		if err != nil || len(changed) != 1 || changed[0].UserID != "@carol:x" || changed[0].StreamPos != pos {
			t.Errorf("PushRulesChangedSince = %+v, %v", changed, err)
		}
		of, err := db.PushRulesOf(ctx, []string{"@bob:x", "@dave:x"})
		if err != nil || len(of) != 1 || of[0].Content != `{"a":1}` {
			t.Errorf("PushRulesOf = %+v, %v", of, err)
		}
	})
}
