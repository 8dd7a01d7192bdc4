package storage

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

func TestPresence(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, _ := ephemeralFixture(t, url)
		var last int64
		for _, u := range []string{"@alice:x", "@bob:x", "@carol:x", "@dave:x"} {
			if err := db.WithTx(ctx, func(tx *Tx) error {
				var err error
				last, err = tx.SetPresence(ctx, Presence{UserID: u, State: "online", StatusMsg: "hi " + u, LastActiveTS: 5})
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.TouchPresence(ctx, "@alice:x", 9) }); err != nil {
			t.Fatal(err)
		}
		p, err := db.Presence(ctx, "@alice:x")
		if err != nil {
			t.Fatal(err)
		}
		if want := (Presence{UserID: "@alice:x", State: "online", StatusMsg: "hi @alice:x", LastActiveTS: 9, StreamPos: last - 3}); *p != want {
			t.Errorf("Presence(alice) = %+v, want %+v (touching keeps the position)", *p, want)
		}
		if _, err := db.Presence(ctx, "@nobody:x"); err != ErrNotFound {
			t.Errorf("Presence(nobody): %v, want ErrNotFound", err)
		}
		users := func(ps []*Presence) []string {
			var out []string
			for _, p := range ps {
				out = append(out, p.UserID)
			}
			return out
		}
		// bob sees himself and alice (a shared joined room), not carol (invited) or dave.
		ps, err := db.PresenceSince(ctx, "@bob:x", 0, last)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"@alice:x", "@bob:x"}, users(ps)); diff != "" {
			t.Errorf("PresenceSince(bob) (-want +got):\n%s", diff)
		}
		if ps, _ := db.PresenceSince(ctx, "@bob:x", last-2, last); len(ps) != 0 {
			t.Errorf("PresenceSince(bob, after his own) = %v, want none", users(ps))
		}
		for _, tc := range []struct {
			a, b string
			want bool
		}{{"@alice:x", "@bob:x", true}, {"@alice:x", "@carol:x", false}, {"@alice:x", "@dave:x", false}} {
			if got, err := db.SharesRoom(ctx, tc.a, tc.b); err != nil || got != tc.want {
				t.Errorf("SharesRoom(%s, %s) = %v, %v; want %v", tc.a, tc.b, got, err, tc.want)
			}
		}
		peers, err := db.RoomPeers(ctx, "@alice:x")
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(peers)
		if diff := cmp.Diff([]string{"@alice:x", "@bob:x"}, peers); diff != "" {
			t.Errorf("RoomPeers(alice) (-want +got):\n%s", diff)
		}
		if err := db.WithTx(ctx, func(tx *Tx) error {
			_, err := tx.SetPresence(ctx, Presence{UserID: "@dave:x", State: "offline"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if ps, err := db.PresenceNotOffline(ctx); err != nil || len(ps) != 3 {
			t.Errorf("PresenceNotOffline = %v, %v; want 3 users", users(ps), err)
		}
	})
}
