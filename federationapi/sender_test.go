package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// fakeClock is a clock that sleeping moves forward, at once.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time       // guarded by mu
	sleeps []time.Duration // every sleep, in order; guarded by mu
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.UnixMilli(1_700_000_000_000)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return ctx.Err()
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// fakeRemote answers transactions as respond says, recording every attempt.
type fakeRemote struct {
	// respond answers the nth attempt (from 1) to t's destination; nil: success.
	respond func(ctx context.Context, n int, t gomatrixserverlib.Transaction) (fclient.RespSend, error)

	mu          sync.Mutex
	attempts    map[spec.ServerName][]gomatrixserverlib.Transaction // guarded by mu
	inFlight    map[spec.ServerName]int                             // guarded by mu
	maxInFlight map[spec.ServerName]int                             // guarded by mu
	started     chan spec.ServerName                                // told of each attempt as it starts
}

func newFakeRemote() *fakeRemote {
	return &fakeRemote{
		attempts: map[spec.ServerName][]gomatrixserverlib.Transaction{}, inFlight: map[spec.ServerName]int{},
		maxInFlight: map[spec.ServerName]int{}, started: make(chan spec.ServerName, 1000),
	}
}

func (f *fakeRemote) SendTransaction(ctx context.Context, t gomatrixserverlib.Transaction) (fclient.RespSend, error) {
	f.mu.Lock()
	f.attempts[t.Destination] = append(f.attempts[t.Destination], t)
	n := len(f.attempts[t.Destination])
	f.inFlight[t.Destination]++
	f.maxInFlight[t.Destination] = max(f.maxInFlight[t.Destination], f.inFlight[t.Destination])
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight[t.Destination]--
		f.mu.Unlock()
	}()
	f.started <- t.Destination
	if f.respond == nil {
		return fclient.RespSend{}, nil
	}
	return f.respond(ctx, n, t)
}

func (f *fakeRemote) Attempts(dest spec.ServerName) []gomatrixserverlib.Transaction {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gomatrixserverlib.Transaction(nil), f.attempts[dest]...)
}

func (f *fakeRemote) MaxInFlight(dest spec.ServerName) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInFlight[dest]
}

// senderFixture is a database with a room, a fake clock and a way to make senders.
type senderFixture struct {
	t       *testing.T
	db      *storage.DB
	clock   *fakeClock
	roomNID int64
	nEvents int
	idle    chan spec.ServerName
}

func newSenderFixture(t *testing.T) *senderFixture {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "lattice.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &senderFixture{t: t, db: db, clock: newFakeClock(), idle: make(chan spec.ServerName, 1000)}
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		f.roomNID, err = tx.InsertRoom(ctx, "!room:lattice.test", "10", 1)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// start starts a sender sending through remote.
func (f *senderFixture) start(remote *fakeRemote) *Sender {
	f.t.Helper()
	s := NewSender(SenderConfig{Origin: ourName, Now: f.clock.Now, Sleep: f.clock.Sleep}, f.db, remote, slog.New(slog.DiscardHandler))
	s.idle = f.idle
	if err := s.Start(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

// queuePDUs stores n events, each queued for destinations in its own transaction, and
// returns their IDs in order.
func (f *senderFixture) queuePDUs(n int, destinations ...string) []string {
	f.t.Helper()
	ctx := context.Background()
	var ids []string
	err := f.db.WithTx(ctx, func(tx *storage.Tx) error {
		for range n {
			f.nEvents++
			id := fmt.Sprintf("$ev%d", f.nEvents)
			nid, err := tx.InsertEvent(ctx, &storage.Event{EventID: id, RoomNID: f.roomNID, Type: "m.room.message",
				Sender: "@alice:lattice.test", Depth: int64(f.nEvents), JSON: []byte(`{"event_id":"` + id + `"}`)})
			if err != nil {
				return err
			}
			if err := tx.QueuePDU(ctx, nid, destinations); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return ids
}

func (f *senderFixture) queueEDUs(dest string, n int) []string {
	f.t.Helper()
	var contents []string
	err := f.db.WithTx(context.Background(), func(tx *storage.Tx) error {
		for i := range n {
			c := fmt.Sprintf(`{"n":%d}`, i)
			contents = append(contents, c)
			if err := tx.QueueEDU(context.Background(), dest, "m.typing", []byte(c)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return contents
}

// waitIdle waits until the workers of dests have stopped with empty queues.
func (f *senderFixture) waitIdle(dests ...spec.ServerName) {
	f.t.Helper()
	want := map[spec.ServerName]bool{}
	for _, d := range dests {
		want[d] = true
	}
	for len(want) > 0 {
		select {
		case d := <-f.idle:
			delete(want, d)
		case <-time.After(10 * time.Second):
			f.t.Fatalf("the workers of %v did not finish", want)
		}
	}
}

// waitStarted waits for the next attempt to dest.
func waitStarted(t *testing.T, remote *fakeRemote, dest spec.ServerName) {
	t.Helper()
	for {
		select {
		case d := <-remote.started:
			if d == dest {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no transaction to %s", dest)
		}
	}
}

// pduIDs returns the event IDs of t's PDUs.
func pduIDs(t *testing.T, txn gomatrixserverlib.Transaction) []string {
	t.Helper()
	ids := []string{}
	for _, pdu := range txn.PDUs {
		var ev struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(pdu, &ev); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.EventID)
	}
	return ids
}

func TestSenderBatchesPDUs(t *testing.T) {
	f := newSenderFixture(t)
	ids := f.queuePDUs(120, "remote.test")
	remote := newFakeRemote()
	f.start(remote)
	f.waitIdle("remote.test")

	txns := remote.Attempts("remote.test")
	if len(txns) != 3 {
		t.Fatalf("%d transactions, want 3", len(txns))
	}
	seen := map[gomatrixserverlib.TransactionID]bool{}
	for i, want := range [][]string{ids[:50], ids[50:100], ids[100:]} {
		txn := txns[i]
		if diff := cmp.Diff(want, pduIDs(t, txn)); diff != "" {
			t.Errorf("transaction %d's PDUs (-want +got):\n%s", i, diff)
		}
		if txn.Origin != ourName || txn.Destination != "remote.test" || len(txn.EDUs) != 0 {
			t.Errorf("transaction %d: origin %s, destination %s, %d EDUs", i, txn.Origin, txn.Destination, len(txn.EDUs))
		}
		if txn.TransactionID == "" || seen[txn.TransactionID] {
			t.Errorf("transaction %d has the ID %q, empty or used before", i, txn.TransactionID)
		}
		seen[txn.TransactionID] = true
	}
	if dests, err := f.db.PendingFederationDestinations(context.Background()); err != nil || len(dests) != 0 {
		t.Errorf("pending destinations after sending everything: %v, %v", dests, err)
	}
}

func TestSenderBatchesEDUs(t *testing.T) {
	f := newSenderFixture(t)
	ids := f.queuePDUs(10, "remote.test")
	contents := f.queueEDUs("remote.test", 250)
	remote := newFakeRemote()
	f.start(remote)
	f.waitIdle("remote.test")

	txns := remote.Attempts("remote.test")
	if len(txns) != 3 {
		t.Fatalf("%d transactions, want 3", len(txns))
	}
	for i, want := range []struct {
		pdus []string
		edus []string
	}{{ids, contents[:100]}, {[]string{}, contents[100:200]}, {[]string{}, contents[200:]}} {
		var edus []string
		for _, edu := range txns[i].EDUs {
			if edu.Type != "m.typing" || edu.Origin != string(ourName) {
				t.Errorf("transaction %d: EDU type %s, origin %s", i, edu.Type, edu.Origin)
			}
			edus = append(edus, string(edu.Content))
		}
		if diff := cmp.Diff(want.edus, edus); diff != "" {
			t.Errorf("transaction %d's EDUs (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(want.pdus, pduIDs(t, txns[i])); diff != "" {
			t.Errorf("transaction %d's PDUs (-want +got):\n%s", i, diff)
		}
		// "pdus" is required: an EDU-only transaction sends an empty array, not null.
		body, err := json.Marshal(txns[i])
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(body, &fields); err != nil {
			t.Fatal(err)
		}
		if string(fields["pdus"]) == "null" {
			t.Errorf("transaction %d: \"pdus\": null", i)
		}
	}
}

func TestSenderRetriesWithBackoff(t *testing.T) {
	f := newSenderFixture(t)
	ids := f.queuePDUs(1, "remote.test")
	remote := newFakeRemote()
	remote.respond = func(_ context.Context, n int, t gomatrixserverlib.Transaction) (fclient.RespSend, error) {
		if n <= 3 {
			return fclient.RespSend{}, errors.New("connection refused")
		}
		// One PDU failed on the destination: logged, not retried.
		return fclient.RespSend{PDUs: map[string]fclient.PDUResult{ids[0]: {Error: "bad signature"}}}, nil
	}
	f.start(remote)
	f.waitIdle("remote.test")

	txns := remote.Attempts("remote.test")
	if len(txns) != 4 {
		t.Fatalf("%d attempts, want 4 (3 failures, 1 success)", len(txns))
	}
	for i, txn := range txns {
		if txn.TransactionID != txns[0].TransactionID || !cmp.Equal(pduIDs(t, txn), ids) {
			t.Errorf("attempt %d: ID %s with %v; want the first attempt's ID %s and PDUs %v", i, txn.TransactionID, pduIDs(t, txn), txns[0].TransactionID, ids)
		}
	}
	if diff := cmp.Diff([]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, f.clock.Sleeps()); diff != "" {
		t.Errorf("waits between attempts (-want +got):\n%s", diff)
	}
	// The success reset the backoff.
	state, err := f.db.FederationDestination(context.Background(), "remote.test")
	if err != nil || state != (storage.FederationDestination{}) {
		t.Errorf("state after success: %+v, %v; want zero", state, err)
	}
}

func TestSenderResumesAfterRestart(t *testing.T) {
	f := newSenderFixture(t)
	ids := f.queuePDUs(120, "remote.test")

	// The first process: two attempts fail, the third is in flight when it stops.
	first := newFakeRemote()
	first.respond = func(ctx context.Context, n int, _ gomatrixserverlib.Transaction) (fclient.RespSend, error) {
		if n <= 2 {
			return fclient.RespSend{}, errors.New("timeout")
		}
		<-ctx.Done()
		return fclient.RespSend{}, ctx.Err()
	}
	s := f.start(first)
	for range 3 {
		waitStarted(t, first, "remote.test")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	txnID := first.Attempts("remote.test")[0].TransactionID
	state, err := f.db.FederationDestination(context.Background(), "remote.test")
	if err != nil {
		t.Fatal(err)
	}
	// Failures 1 and 2 waited 1 s and 2 s; the interrupted attempt counts for nothing.
	wantRetry := first.Attempts("remote.test")[1].OriginServerTS.Time().Add(2 * time.Second).UnixMilli()
	if diff := cmp.Diff(storage.FederationDestination{TxnID: string(txnID), Failures: 2, RetryTS: wantRetry}, state); diff != "" {
		t.Errorf("persisted state (-want +got):\n%s", diff)
	}

	// The second process starts 500 ms after the second failure, within its backoff: it
	// waits out the rest, retries the same transaction, fails once more (a 4 s wait: the
	// failures are counted on from the first process), then sends everything.
	f.clock.mu.Lock()
	f.clock.now = time.UnixMilli(wantRetry).Add(-1500 * time.Millisecond)
	f.clock.sleeps = nil
	f.clock.mu.Unlock()
	second := newFakeRemote()
	second.respond = func(_ context.Context, n int, _ gomatrixserverlib.Transaction) (fclient.RespSend, error) {
		if n == 1 {
			return fclient.RespSend{}, errors.New("503")
		}
		return fclient.RespSend{}, nil
	}
	f.start(second)
	f.waitIdle("remote.test")
	txns := second.Attempts("remote.test")
	if len(txns) != 4 {
		t.Fatalf("%d attempts after the restart, want 4", len(txns))
	}
	if txns[0].TransactionID != txnID || txns[1].TransactionID != txnID {
		t.Errorf("attempts after the restart have IDs %s and %s, want the interrupted %s", txns[0].TransactionID, txns[1].TransactionID, txnID)
	}
	var got []string
	for _, txn := range txns[1:] {
		got = append(got, pduIDs(t, txn)...)
	}
	if diff := cmp.Diff(ids, got); diff != "" {
		t.Errorf("PDUs sent after the restart (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]time.Duration{1500 * time.Millisecond, 4 * time.Second}, f.clock.Sleeps()); diff != "" {
		t.Errorf("waits after the restart (-want +got):\n%s", diff)
	}
}

// TestSenderDestinationsIndependent: a destination that does not answer holds back only its
// own queue, with never more than one transaction in flight to it.
func TestSenderDestinationsIndependent(t *testing.T) {
	f := newSenderFixture(t)
	f.queuePDUs(120, "slow.test", "fast.test")
	gate := make(chan struct{})
	remote := newFakeRemote()
	remote.respond = func(ctx context.Context, _ int, t gomatrixserverlib.Transaction) (fclient.RespSend, error) {
		if t.Destination == "slow.test" {
			select {
			case <-gate:
			case <-ctx.Done():
				return fclient.RespSend{}, ctx.Err()
			}
		}
		return fclient.RespSend{}, nil
	}
	s := f.start(remote)
	waitStarted(t, remote, "slow.test")
	f.waitIdle("fast.test")
	if n := len(remote.Attempts("fast.test")); n != 3 {
		t.Errorf("fast.test got %d transactions while slow.test was stuck, want 3", n)
	}
	if n := len(remote.Attempts("slow.test")); n != 1 {
		t.Errorf("slow.test got %d transactions while the first was in flight, want 1", n)
	}
	// More work for slow.test while it is busy: its worker takes it on.
	f.queuePDUs(10, "slow.test")
	s.Wake("slow.test")
	close(gate)
	f.waitIdle("slow.test")
	if n := len(remote.Attempts("slow.test")); n != 3 {
		t.Errorf("slow.test got %d transactions, want 3 (50, 50, 30)", n)
	}
	for _, dest := range []spec.ServerName{"slow.test", "fast.test"} {
		if n := remote.MaxInFlight(dest); n != 1 {
			t.Errorf("%s had up to %d transactions in flight, want 1", dest, n)
		}
	}
}

// TestSenderWake: a worker starts on demand for rows committed after Start, and again after
// it stopped.
func TestSenderWake(t *testing.T) {
	f := newSenderFixture(t)
	remote := newFakeRemote()
	s := f.start(remote)
	for i := range 2 {
		ids := f.queuePDUs(1, "remote.test")
		s.Wake("remote.test")
		f.waitIdle("remote.test")
		txns := remote.Attempts("remote.test")
		if len(txns) != i+1 || !cmp.Equal(pduIDs(t, txns[i]), ids) {
			t.Fatalf("after wake-up %d: %d transactions, the last with %v; want %v", i+1, len(txns), pduIDs(t, txns[len(txns)-1]), ids)
		}
	}
}

func TestSenderBackoff(t *testing.T) {
	s := NewSender(SenderConfig{}, nil, nil, slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {12, 2048 * time.Second},
		{13, time.Hour}, {1000, time.Hour},
	} {
		if got := s.backoff(tc.failures); got != tc.want {
			t.Errorf("backoff after %d failures: %v, want %v", tc.failures, got, tc.want)
		}
	}
}

// TestSenderCatchUp: after catchUpAfter failures in a row, the waiting PDUs of the
// destination are reduced to the newest of the room; the transaction in flight is still
// retried whole, then the newest event goes, and the destination catches up from it.
func TestSenderCatchUp(t *testing.T) {
	f := newSenderFixture(t)
	ids := f.queuePDUs(60, "down.test") // one full transaction in flight, 10 waiting
	remote := newFakeRemote()
	remote.respond = func(_ context.Context, n int, t gomatrixserverlib.Transaction) (fclient.RespSend, error) {
		if n <= catchUpAfter {
			return fclient.RespSend{}, errors.New("connection refused")
		}
		return fclient.RespSend{}, nil
	}
	f.start(remote)
	f.waitIdle("down.test")
	txns := remote.Attempts("down.test")
	if len(txns) != catchUpAfter+2 {
		t.Fatalf("%d attempts, want %d failures and 2 successes", len(txns), catchUpAfter)
	}
	if got := pduIDs(t, txns[len(txns)-2]); !cmp.Equal(got, ids[:maxTxnPDUs]) {
		t.Errorf("the transaction in flight was sent with %d PDUs, want the first %d", len(got), maxTxnPDUs)
	}
	if got := pduIDs(t, txns[len(txns)-1]); !cmp.Equal(got, ids[len(ids)-1:]) {
		t.Errorf("after catching up the sender sent %v, want only the newest event %s", got, ids[len(ids)-1])
	}
}

// TestSenderBackoffCleared: a destination waiting out a long backoff is tried again soon
// after the stored backoff is cleared (lattice federation-retry), without a restart.
func TestSenderBackoffCleared(t *testing.T) {
	f := newSenderFixture(t)
	f.queuePDUs(1, "slow.test")
	ctx := context.Background()
	if err := f.db.SetFederationBackoff(ctx, "slow.test", 20, f.clock.Now().Add(time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	remote := newFakeRemote()
	var waited time.Duration
	sleep := func(ctx context.Context, d time.Duration) error {
		waited += d
		if waited >= 2*backoffCheckEvery {
			// An administrator clears the backoff a minute into the hour.
			if err := f.db.SetFederationBackoff(ctx, "slow.test", 0, 0); err != nil {
				t.Error(err)
			}
		}
		return f.clock.Sleep(ctx, d)
	}
	s := NewSender(SenderConfig{Origin: ourName, Now: f.clock.Now, Sleep: sleep}, f.db, remote, slog.New(slog.DiscardHandler))
	s.idle = f.idle
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f.waitIdle("slow.test")
	if n := len(remote.Attempts("slow.test")); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
	if waited > 3*backoffCheckEvery {
		t.Fatalf("the sender waited %v although the backoff was cleared after %v", waited, 2*backoffCheckEvery)
	}
}
