package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// queueEvents stores n events and queues each for destinations in the same transaction,
// returning the events' JSON in order.
func queueEvents(t *testing.T, db *DB, prefix string, n int, destinations ...string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	err := db.WithTx(ctx, func(tx *Tx) error {
		roomNID, err := tx.InsertRoom(ctx, "!"+prefix+":test", "10", 1)
		if err != nil {
			return err
		}
		for i := range n {
			js := fmt.Sprintf(`{"event_id":"$%s%d"}`, prefix, i)
			nid, err := tx.InsertEvent(ctx, &Event{EventID: fmt.Sprintf("$%s%d", prefix, i), RoomNID: roomNID,
				Type: "m.room.message", Sender: "@a:test", Depth: int64(i + 1), JSON: []byte(js)})
			if err != nil {
				return err
			}
			if err := tx.QueuePDU(ctx, nid, destinations); err != nil {
				return err
			}
			out = append(out, js)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func queueEDUs(t *testing.T, db *DB, destination string, n int) []FederationEDU {
	t.Helper()
	var out []FederationEDU
	err := db.WithTx(context.Background(), func(tx *Tx) error {
		for i := range n {
			edu := FederationEDU{Type: "m.typing", Content: []byte(fmt.Sprintf(`{"n":%d}`, i))}
			if err := tx.QueueEDU(context.Background(), destination, edu.Type, edu.Content); err != nil {
				return err
			}
			out = append(out, edu)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func strs(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

func TestFederationQueue(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()

		// Nothing queued.
		if dests, err := db.PendingFederationDestinations(ctx); err != nil || len(dests) != 0 {
			t.Fatalf("pending destinations of an empty queue: %v, %v", dests, err)
		}
		if _, err := db.NextFederationTxn(ctx, "a.test", 50, 100, "t0"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("next transaction of an empty queue: %v, want ErrNotFound", err)
		}
		if _, err := db.FederationDestination(ctx, "a.test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("state of an unknown destination: %v, want ErrNotFound", err)
		}

		// Rows queued in a transaction that rolls back are not queued.
		boom := errors.New("boom")
		err = db.WithTx(ctx, func(tx *Tx) error {
			if err := tx.QueuePDU(ctx, 1, []string{"a.test"}); err != nil {
				return err
			}
			if err := tx.QueueEDU(ctx, "a.test", "m.typing", []byte(`{}`)); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if dests, err := db.PendingFederationDestinations(ctx); err != nil || len(dests) != 0 {
			t.Fatalf("pending destinations after a rollback: %v, %v", dests, err)
		}

		pdus := queueEvents(t, db, "a", 120, "a.test", "b.test")
		edus := queueEDUs(t, db, "a.test", 150)
		dests, err := db.PendingFederationDestinations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"a.test", "b.test"}, dests); diff != "" {
			t.Errorf("pending destinations (-want +got):\n%s", diff)
		}

		// The first batch: the oldest 50 PDUs and 100 EDUs, in queue order.
		txn, err := db.NextFederationTxn(ctx, "a.test", 50, 100, "t1")
		if err != nil {
			t.Fatal(err)
		}
		want := &FederationTxn{ID: "t1", EDUs: edus[:100]}
		if diff := cmp.Diff(pdus[:50], strs(txn.PDUs)); diff != "" {
			t.Errorf("first batch's PDUs (-want +got):\n%s", diff)
		}
		txn.PDUs = nil
		if diff := cmp.Diff(want, txn); diff != "" {
			t.Errorf("first batch (-want +got):\n%s", diff)
		}

		// It fails; more is queued; the retry is the same transaction, even asked with another ID.
		if err := db.SetFederationBackoff(ctx, "a.test", 2, 5000); err != nil {
			t.Fatal(err)
		}
		queueEDUs(t, db, "a.test", 1)
		retry, err := db.NextFederationTxn(ctx, "a.test", 50, 100, "t2")
		if err != nil {
			t.Fatal(err)
		}
		if retry.ID != "t1" || len(retry.PDUs) != 50 || len(retry.EDUs) != 100 || string(retry.PDUs[0]) != pdus[0] {
			t.Errorf("retry: ID %s, %d PDUs, %d EDUs; want t1 with the same 50 and 100", retry.ID, len(retry.PDUs), len(retry.EDUs))
		}
		state, err := db.FederationDestination(ctx, "a.test")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(FederationDestination{TxnID: "t1", Failures: 2, RetryTS: 5000}, state); diff != "" {
			t.Errorf("state after a failure (-want +got):\n%s", diff)
		}

		// Sent: the rows go and the backoff is reset; the next batch follows on.
		if err := db.FederationTxnSent(ctx, "a.test", "t1"); err != nil {
			t.Fatal(err)
		}
		if state, err := db.FederationDestination(ctx, "a.test"); err != nil || state != (FederationDestination{}) {
			t.Errorf("state after success: %+v, %v; want zero", state, err)
		}
		txn, err = db.NextFederationTxn(ctx, "a.test", 50, 100, "t3")
		if err != nil {
			t.Fatal(err)
		}
		if txn.ID != "t3" || len(txn.EDUs) != 51 || string(txn.EDUs[0].Content) != `{"n":100}` {
			t.Errorf("second batch: ID %s, %d EDUs; want t3 with 51 EDUs from n=100", txn.ID, len(txn.EDUs))
		}
		if diff := cmp.Diff(pdus[50:100], strs(txn.PDUs)); diff != "" {
			t.Errorf("second batch's PDUs (-want +got):\n%s", diff)
		}
		if err := db.FederationTxnSent(ctx, "a.test", "t3"); err != nil {
			t.Fatal(err)
		}
		txn, err = db.NextFederationTxn(ctx, "a.test", 50, 100, "t4")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(pdus[100:], strs(txn.PDUs)); diff != "" || len(txn.EDUs) != 0 {
			t.Errorf("last batch: %d EDUs, PDUs (-want +got):\n%s", len(txn.EDUs), diff)
		}
		if err := db.FederationTxnSent(ctx, "a.test", "t4"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.NextFederationTxn(ctx, "a.test", 50, 100, "t5"); !errors.Is(err, ErrNotFound) {
			t.Errorf("drained queue: %v, want ErrNotFound", err)
		}

		// b.test's queue is its own, untouched by a.test's batches.
		if dests, err := db.PendingFederationDestinations(ctx); err != nil || !cmp.Equal(dests, []string{"b.test"}) {
			t.Errorf("pending destinations: %v, %v; want [b.test]", dests, err)
		}
		txn, err = db.NextFederationTxn(ctx, "b.test", 200, 100, "b1")
		if err != nil || len(txn.PDUs) != 120 {
			t.Fatalf("b.test's batch: %v, %v", txn, err)
		}
	})
}

// TestQueuePDUOnce: an event waiting for a destination is not queued for it twice.
func TestQueuePDUOnce(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		queueEvents(t, db, "x", 1, "a.test")
		err = db.WithTx(ctx, func(tx *Tx) error {
			nid, err := tx.MaxEventNID(ctx)
			if err != nil {
				return err
			}
			return tx.QueuePDU(ctx, nid, []string{"a.test", "a.test"})
		})
		if err != nil {
			t.Fatal(err)
		}
		txn, err := db.NextFederationTxn(ctx, "a.test", 50, 100, "t1")
		if err != nil || len(txn.PDUs) != 1 {
			t.Fatalf("batch: %+v, %v; want one PDU", txn, err)
		}
	})
}

// TestFederationTxnRowsGone: a transaction in flight whose rows are gone ends, and the next
// batch starts afresh.
func TestFederationTxnRowsGone(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		queueEDUs(t, db, "a.test", 1)
		if _, err := db.NextFederationTxn(ctx, "a.test", 50, 100, "t1"); err != nil {
			t.Fatal(err)
		}
		err = db.WithTx(ctx, func(tx *Tx) error {
			_, err := tx.exec(ctx, `DELETE FROM federation_queue_edus`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if txn, err := db.NextFederationTxn(ctx, "a.test", 50, 100, "t2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("in-flight transaction without rows: %+v, %v; want ErrNotFound", txn, err)
		}
		if state, err := db.FederationDestination(ctx, "a.test"); err != nil || state.TxnID != "" {
			t.Errorf("state: %+v, %v; want no transaction in flight", state, err)
		}
		queueEDUs(t, db, "a.test", 1)
		if txn, err := db.NextFederationTxn(ctx, "a.test", 50, 100, "t3"); err != nil || txn.ID != "t3" || len(txn.EDUs) != 1 {
			t.Errorf("next batch: %+v, %v; want t3 with one EDU", txn, err)
		}
	})
}
