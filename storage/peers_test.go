package storage

import (
	"context"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestPeersCached: RoomPeers and PresenceSince answer the same from the cached joined members
// of rooms as from the database, and see a membership change at once.
func TestPeersCached(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, roomA := ephemeralFixture(t, url)
		var last int64
		for _, u := range []string{"@alice:x", "@bob:x", "@carol:x", "@dave:x"} {
			if err := db.WithTx(ctx, func(tx *Tx) (err error) {
				last, err = tx.SetPresence(ctx, Presence{UserID: u, State: "online", LastActiveTS: 5})
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		check := func(what string) {
			t.Helper()
			for _, u := range []string{"@alice:x", "@bob:x", "@carol:x", "@dave:x"} {
				want, err := db.Q.RoomPeers(ctx, u)
				if err != nil {
					t.Fatal(err)
				}
				got, err := db.RoomPeers(ctx, u) // fills the cache
				if err != nil {
					t.Fatal(err)
				}
				sort.Strings(want)
				sort.Strings(got)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s: RoomPeers(%s) (-db +cached):\n%s", what, u, diff)
				}
				wantPs, err := db.Q.PresenceSince(ctx, u, 0, last)
				if err != nil {
					t.Fatal(err)
				}
				gotPs, err := db.PresenceSince(ctx, u, 0, last) // from the cache
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(wantPs, gotPs); diff != "" {
					t.Errorf("%s: PresenceSince(%s) (-db +cached):\n%s", what, u, diff)
				}
			}
		}
		check("at first")
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.SetMembership(ctx, roomA, "@carol:x", "join", 10) }); err != nil {
			t.Fatal(err)
		}
		check("after carol joined")
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.SetMembership(ctx, roomA, "@alice:x", "leave", 11) }); err != nil {
			t.Fatal(err)
		}
		check("after alice left")
	})
}
