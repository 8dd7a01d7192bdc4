package storage

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestCollapseFederationQueue: collapsing keeps the transaction in flight whole and, of the
// waiting PDUs, the newest of each room; other destinations and EDUs are untouched.
func TestCollapseFederationQueue(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		a := queueEvents(t, db, "a", 4, "remote", "other")
		inFlight, err := db.NextFederationTxn(ctx, "remote", 2, 0, "t1")
		if err != nil || len(inFlight.PDUs) != 2 {
			t.Fatalf("first transaction: %v, %v", inFlight, err)
		}
		b := queueEvents(t, db, "b", 3, "remote")
		queueEDUs(t, db, "remote", 2)
		n, err := db.CollapseFederationQueue(ctx, "remote")
		if err != nil || n != 3 {
			t.Fatalf("collapse dropped %d rows (%v), want 3: a2 and b0, b1", n, err)
		}
		again, err := db.NextFederationTxn(ctx, "remote", 50, 100, "t2")
		if err != nil || again.ID != "t1" || len(again.PDUs) != 2 {
			t.Fatalf("the transaction in flight after collapsing: %+v, %v", again, err)
		}
		if err := db.FederationTxnSent(ctx, "remote", "t1"); err != nil {
			t.Fatal(err)
		}
		rest, err := db.NextFederationTxn(ctx, "remote", 50, 100, "t3")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{a[3], b[2]}, strs(rest.PDUs)); diff != "" || len(rest.EDUs) != 2 {
			t.Fatalf("after collapsing, %d EDUs and PDUs (-want +got):\n%s", len(rest.EDUs), diff)
		}
		other, err := db.NextFederationTxn(ctx, "other", 50, 100, "t4")
		if err != nil || len(other.PDUs) != 4 {
			t.Fatalf("another destination's queue: %+v, %v", other, err)
		}
	})
}
