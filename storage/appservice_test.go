package storage

import (
	"context"
	"errors"
	"testing"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestAppServiceQueue: a transaction and the position move together; a stale position is a
// conflict (no event goes into two transactions); acknowledged transactions leave the queue
// in order; receipts of every room are read in stream order.
func TestAppServiceQueue(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, roomA := ephemeralFixture(t, url)
		if _, err := db.AppServiceState(ctx, "irc"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("state before init: %v", err)
		}
		for i := 0; i < 2; i++ { // idempotent
			if err := db.WithTx(ctx, func(tx *Tx) error { return tx.InitAppService(ctx, "irc") }); err != nil {
				t.Fatal(err)
			}
		}
		st, err := db.AppServiceState(ctx, "irc")
		if err != nil {
			t.Fatal(err)
		}
		start := st.StreamPos
		advance := func(from, to int64, body []byte, n int) (int64, error) {
			var id int64
			err := db.WithTx(ctx, func(tx *Tx) error {
				var err error
				id, err = tx.AdvanceAppService(ctx, "irc", from, to, body, n, 1)
				return err
			})
			return id, err
		}
		if id, err := advance(start, start+5, []byte(`{"events":[1]}`), 1); err != nil || id != 1 {
			t.Fatalf("first transaction: %d %v", id, err)
		}
		if _, err := advance(start, start+6, []byte(`{}`), 1); !errors.Is(err, ErrConflict) {
			t.Fatalf("advance from a stale position: %v", err)
		}
		if id, err := advance(start+5, start+7, nil, 0); err != nil || id != 0 {
			t.Fatalf("advance without a transaction: %d %v", id, err)
		}
		if id, err := advance(start+7, start+9, []byte(`{"events":[2,3]}`), 2); err != nil || id != 2 {
			t.Fatalf("second transaction: %d %v", id, err)
		}
		st, _ = db.AppServiceState(ctx, "irc")
		if st.StreamPos != start+9 || st.Pending != 2 || st.PendingEvts != 3 || st.LastTxnID != 2 {
			t.Fatalf("state: %+v", st)
		}
		for _, want := range []int64{1, 2} {
			txn, err := db.FirstAppServiceTxn(ctx, "irc")
			if err != nil || txn.TxnID != want {
				t.Fatalf("first transaction: %+v %v, want %d", txn, err, want)
			}
			if err := db.WithTx(ctx, func(tx *Tx) error { return tx.SetAppServiceError(ctx, "irc", "status 500", 2) }); err != nil {
				t.Fatal(err)
			}
			if err := db.WithTx(ctx, func(tx *Tx) error { return tx.AckAppServiceTxn(ctx, "irc", txn.TxnID) }); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.FirstAppServiceTxn(ctx, "irc"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("queue after acknowledging all: %v", err)
		}
		if st, _ = db.AppServiceState(ctx, "irc"); st.LastError != "" || st.Pending != 0 {
			t.Fatalf("state after acknowledging: %+v", st)
		}

		var positions []int64
		err = db.WithTx(ctx, func(tx *Tx) error {
			for _, u := range []string{"@a:x", "@b:x"} {
				pos, err := tx.SetReceipt(ctx, Receipt{RoomNID: roomA, UserID: u, Type: "m.read", EventID: "$1", EventNID: 1})
				if err != nil {
					return err
				}
				positions = append(positions, pos)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rs, rooms, err := db.AllReceiptsSince(ctx, positions[0]-1, 10)
		if err != nil || len(rs) != 2 || rs[0].UserID != "@a:x" || rooms[1] != "!a:x" {
			t.Fatalf("receipts: %+v %v %v", rs, rooms, err)
		}
		if rs, _, _ = db.AllReceiptsSince(ctx, positions[0], 10); len(rs) != 1 || rs[0].UserID != "@b:x" {
			t.Fatalf("receipts after the first: %+v", rs)
		}
	})
}
