package storage

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// populateOperators fills the tables of migration 0021 for the port test.
func populateOperators(ctx context.Context, tx *Tx) error {
	uses, expiry := int64(5), int64(9_000_000_000_000)
	if err := tx.InsertRegistrationToken(ctx, RegistrationToken{Token: "tok", UsesAllowed: &uses, ExpiryTime: &expiry}); err != nil {
		return err
	}
	if err := tx.InsertRegistrationToken(ctx, RegistrationToken{Token: "open"}); err != nil {
		return err
	}
	if err := tx.SetServerNoticeRoom(ctx, "@alice:test", "!notices:test"); err != nil {
		return err
	}
	return tx.InsertServerNoticeTxn(ctx, "@admin:test", "t1", "$notice")
}

// TestRegistrationTokenUses: a token with N uses admits exactly N reservations, however many
// race for it; a failed registration gives its use back; an expired token admits none.
func TestRegistrationTokenUses(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 8)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		uses, past := int64(3), int64(1000)
		err = db.WithTx(ctx, func(tx *Tx) error {
			if err := tx.InsertRegistrationToken(ctx, RegistrationToken{Token: "three", UsesAllowed: &uses}); err != nil {
				return err
			}
			return tx.InsertRegistrationToken(ctx, RegistrationToken{Token: "old", ExpiryTime: &past})
		})
		if err != nil {
			t.Fatal(err)
		}
		reserve := func(token string) bool {
			for {
				var ok bool
				err := db.WithTx(ctx, func(tx *Tx) error {
					var err error
					ok, err = tx.ReserveRegistrationToken(ctx, token, 2000)
					return err
				})
				if errors.Is(err, ErrConflict) {
					continue // another writer got in the way: try again, as a client would
				} else if err != nil {
					t.Error(err)
				}
				return ok
			}
		}
		var got atomic.Int32
		var wg sync.WaitGroup
		for range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if reserve("three") {
					got.Add(1)
				}
			}()
		}
		wg.Wait()
		if got.Load() != 3 {
			t.Errorf("%d reservations of a token with 3 uses", got.Load())
		}
		finish := func(completed bool) {
			if err := db.WithTx(ctx, func(tx *Tx) error { return tx.FinishRegistrationToken(ctx, "three", completed) }); err != nil {
				t.Fatal(err)
			}
		}
		finish(true)
		finish(true)
		finish(false) // the third registration failed: its use is free again
		tok, err := db.RegistrationToken(ctx, "three")
		if err != nil || tok.Pending != 0 || tok.Completed != 2 || !tok.Valid(2000) {
			t.Errorf("after finishing: %+v %v", tok, err)
		}
		if !reserve("three") || reserve("three") {
			t.Errorf("the given-back use is not available exactly once")
		}
		if reserve("old") || reserve("missing") {
			t.Errorf("an expired or unknown token was reserved")
		}
	})
}
