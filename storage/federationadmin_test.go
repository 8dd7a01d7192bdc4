package storage

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

func TestFederationQueueStatusesAndReset(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		queueEvents(t, db, "a", 3, "b.test", "c.test")
		queueEDUs(t, db, "c.test", 2)
		queueEDUs(t, db, "d.test", 1)
		// b.test has a transaction in flight and has failed twice; gone.test failed once and
		// has nothing queued any more; ok.test has a row but no failures and no queue.
		txn, err := db.NextFederationTxn(ctx, "b.test", 2, 10, "t1")
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range []struct {
			dest     string
			failures int
			retry    int64
		}{{"b.test", 2, 5000}, {"gone.test", 1, 7000}, {"ok.test", 0, 0}} {
			if err := db.SetFederationBackoff(ctx, b.dest, b.failures, b.retry); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.FederationQueueStatuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []FederationQueueStatus{
			{"b.test", 3, 0, FederationDestination{TxnID: txn.ID, Failures: 2, RetryTS: 5000}},
			{"c.test", 3, 2, FederationDestination{}},
			{"d.test", 0, 1, FederationDestination{}},
			{"gone.test", 0, 0, FederationDestination{Failures: 1, RetryTS: 7000}},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("FederationQueueStatuses (-want +got):\n%s", d)
		}

		if err := db.ResetFederationBackoff(ctx, "b.test"); err != nil {
			t.Fatal(err)
		}
		if err := db.ResetFederationBackoff(ctx, "never.test"); !errors.Is(err, ErrNotFound) {
			t.Errorf("reset of an unknown destination: %v, want ErrNotFound", err)
		}
		// The transaction in flight stays, to be retried with the same ID.
		if d, err := db.FederationDestination(ctx, "b.test"); err != nil || d != (FederationDestination{TxnID: txn.ID}) {
			t.Errorf("b.test after reset: %+v, %v", d, err)
		}
		if n, err := db.ResetAllFederationBackoffs(ctx); err != nil || n != 1 {
			t.Errorf("ResetAllFederationBackoffs = %d, %v; want 1 (gone.test)", n, err)
		}
		got, err = db.FederationQueueStatuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want = []FederationQueueStatus{
			{"b.test", 3, 0, FederationDestination{TxnID: txn.ID}},
			{"c.test", 3, 2, FederationDestination{}},
			{"d.test", 0, 1, FederationDestination{}},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("after the resets (-want +got):\n%s", d)
		}
	})
}
