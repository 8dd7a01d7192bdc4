package storage

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// populateE2EE writes a row into every end-to-end encryption table, for the port tests.
func populateE2EE(ctx context.Context, tx *Tx) error {
	if _, err := tx.SetDeviceKeys(ctx, "@alice:test", "DEValice", `{"device_id":"DEValice"}`); err != nil {
		return err
	}
	keys := []OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "AAAA", KeyJSON: `{"key":"k"}`}}
	if err := tx.AddOneTimeKeys(ctx, "@alice:test", "DEValice", keys); err != nil {
		return err
	}
	if err := tx.SetFallbackKeys(ctx, "@alice:test", "DEValice", keys); err != nil {
		return err
	}
	if err := tx.SetCrossSigningKey(ctx, "@alice:test", KeyMaster, `{"keys":{"ed25519:m":"m"}}`); err != nil {
		return err
	}
	if err := tx.AddKeySignature(ctx, KeySignature{TargetUserID: "@alice:test", TargetKeyID: "m", SignerUserID: "@alice:test", SignerKeyID: "ed25519:DEValice", Signature: "sig"}); err != nil {
		return err
	}
	if _, err := tx.DeviceListChanged(ctx, "@alice:test"); err != nil {
		return err
	}
	if err := tx.InsertToDeviceTxn(ctx, "@bob:test", "DEVbob", "t1", 1); err != nil {
		return err
	}
	if _, err := tx.InsertToDeviceMessages(ctx, []ToDeviceMessage{{UserID: "@alice:test", DeviceID: "DEValice", Sender: "@bob:test", Type: "m.x", Content: `{}`}}); err != nil {
		return err
	}
	v, err := tx.CreateKeyBackupVersion(ctx, "@alice:test", "m.megolm_backup.v1.curve25519-aes-sha2", `{}`)
	if err != nil {
		return err
	}
	return tx.PutBackupSessions(ctx, "@alice:test", v, []BackupSession{{RoomID: "!r:test", SessionID: "s", SessionData: `{}`}})
}

func openBackend(t *testing.T, url string) *DB {
	t.Helper()
	db, err := Open(context.Background(), url, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func withTx(t *testing.T, db *DB, fn func(tx *Tx) error) {
	t.Helper()
	if err := db.WithTx(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// TestClaimKeyConcurrent: concurrent claims never hand out one key twice; once the one-time
// keys are gone, the fallback key is returned (and marked used); keys go out oldest first.
func TestClaimKeyConcurrent(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openBackend(t, url)
		const n = 40
		for batch := range 2 {
			var keys []OneTimeKey
			for i := range n / 2 {
				keys = append(keys, OneTimeKey{Algorithm: "signed_curve25519", KeyID: fmt.Sprintf("b%d-%02d", batch, i), KeyJSON: fmt.Sprintf(`{"key":"%d-%d"}`, batch, i)})
			}
			withTx(t, db, func(tx *Tx) error { return tx.AddOneTimeKeys(ctx, "@a:test", "D", keys) })
		}
		withTx(t, db, func(tx *Tx) error {
			return tx.SetFallbackKeys(ctx, "@a:test", "D", []OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "fb", KeyJSON: `{"key":"fb","fallback":true}`}})
		})
		// The first claim takes a key of the first upload.
		var first *OneTimeKey
		withTx(t, db, func(tx *Tx) (err error) {
			first, err = tx.ClaimKey(ctx, "@a:test", "D", "signed_curve25519")
			return err
		})
		if first.KeyID[:2] != "b0" {
			t.Errorf("first claim got %s, want a key of the first upload", first.KeyID)
		}
		var mu sync.Mutex
		got := []string{first.KeyID}
		var wg sync.WaitGroup
		for range n + 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var k *OneTimeKey
				err := db.WithTx(ctx, func(tx *Tx) (err error) { k, err = tx.ClaimKey(ctx, "@a:test", "D", "signed_curve25519"); return err })
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, k.KeyID)
				mu.Unlock()
			}()
		}
		wg.Wait()
		seen := map[string]int{}
		for _, id := range got {
			seen[id]++
		}
		for id, c := range seen {
			if id != "fb" && c > 1 {
				t.Errorf("key %s handed out %d times", id, c)
			}
		}
		if len(seen) != n+1 || seen["fb"] != 6 {
			t.Errorf("got %d distinct keys and the fallback %d times, want %d and 6", len(seen), seen["fb"], n+1)
		}
		unused, err := db.UnusedFallbackKeyTypes(ctx, "@a:test", "D")
		if err != nil || len(unused) != 0 {
			t.Errorf("unused fallback types after use: %v %v", unused, err)
		}
		counts, err := db.OneTimeKeyCounts(ctx, "@a:test", "D")
		if err != nil || len(counts) != 0 {
			t.Errorf("counts after claiming all: %v %v", counts, err)
		}
		// Re-uploading the same fallback key keeps it used; a new one is unused.
		withTx(t, db, func(tx *Tx) error {
			return tx.SetFallbackKeys(ctx, "@a:test", "D", []OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "fb2", KeyJSON: `{"key":"fb2"}`}})
		})
		if unused, _ := db.UnusedFallbackKeyTypes(ctx, "@a:test", "D"); !slices.Equal(unused, []string{"signed_curve25519"}) {
			t.Errorf("unused fallback types after a new key: %v", unused)
		}
	})
}

func TestOneTimeKeyReupload(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openBackend(t, url)
		k := []OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "A", KeyJSON: `{"key":"1"}`}}
		withTx(t, db, func(tx *Tx) error { return tx.AddOneTimeKeys(ctx, "@a:test", "D", k) })
		withTx(t, db, func(tx *Tx) error { return tx.AddOneTimeKeys(ctx, "@a:test", "D", k) })
		k[0].KeyJSON = `{"key":"2"}`
		err := db.WithTx(ctx, func(tx *Tx) error { return tx.AddOneTimeKeys(ctx, "@a:test", "D", k) })
		if err == nil {
			t.Error("changing an uploaded one-time key succeeded")
		}
	})
}

// TestDeviceListChanges: device changes of users sharing a room, joins and leaves.
func TestDeviceListChanges(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openBackend(t, url)
		var room, other int64
		withTx(t, db, func(tx *Tx) (err error) {
			if room, err = tx.InsertRoom(ctx, "!r:test", "11", 1); err != nil {
				return err
			}
			if other, err = tx.InsertRoom(ctx, "!o:test", "11", 1); err != nil {
				return err
			}
			for _, u := range []string{"@a:test", "@b:test"} {
				if err := tx.SetMembership(ctx, room, u, "join", 1); err != nil {
					return err
				}
			}
			return tx.SetMembership(ctx, other, "@c:test", "join", 2)
		})
		var p1, p2, p3 int64
		withTx(t, db, func(tx *Tx) (err error) {
			if p1, err = tx.DeviceListChanged(ctx, "@b:test"); err != nil {
				return err
			}
			if p2, err = tx.DeviceListChanged(ctx, "@c:test"); err != nil {
				return err
			}
			p3, err = tx.DeviceListChanged(ctx, "@a:test")
			return err
		})
		check := func(what string, fromPDU, toPDU, fromDL, toDL int64, wantChanged, wantLeft []string) {
			t.Helper()
			changed, left, err := db.DeviceListChanges(ctx, "@a:test", fromPDU, toPDU, fromDL, toDL)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantChanged, changed); diff != "" {
				t.Errorf("%s: changed (-want +got):\n%s", what, diff)
			}
			if diff := cmp.Diff(wantLeft, left); diff != "" {
				t.Errorf("%s: left (-want +got):\n%s", what, diff)
			}
		}
		check("device changes", 10, 10, 0, p3, []string{"@a:test", "@b:test"}, []string{})
		check("before b's change", 10, 10, p1, p2, []string{}, []string{})
		// c joins the room at event 11: a shares a room with c now.
		withTx(t, db, func(tx *Tx) error { return tx.SetMembership(ctx, room, "@c:test", "join", 11) })
		check("c joined", 10, 11, p3, p3, []string{"@c:test"}, []string{})
		// b leaves at 12: b shares no room with a any more; c leaves too but still... no.
		withTx(t, db, func(tx *Tx) error { return tx.SetMembership(ctx, room, "@b:test", "leave", 12) })
		check("b left", 11, 12, p3, p3, []string{}, []string{"@b:test"})
		// a leaves at 13: c no longer shares a room.
		withTx(t, db, func(tx *Tx) error { return tx.SetMembership(ctx, room, "@a:test", "leave", 13) })
		check("a left", 12, 13, p3, p3, []string{}, []string{"@c:test"})
	})
}

// TestToDeviceMessages: positions, limit and acknowledgement.
func TestToDeviceMessages(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openBackend(t, url)
		var positions []int64
		for i := range 3 {
			withTx(t, db, func(tx *Tx) error {
				p, err := tx.InsertToDeviceMessages(ctx, []ToDeviceMessage{
					{UserID: "@a:test", DeviceID: "D", Sender: "@b:test", Type: "m.x", Content: fmt.Sprintf(`{"i":%d}`, i)},
					{UserID: "@a:test", DeviceID: "E", Sender: "@b:test", Type: "m.x", Content: fmt.Sprintf(`{"i":%d}`, i)},
				})
				positions = append(positions, p)
				return err
			})
		}
		msgs, err := db.ToDeviceMessages(ctx, "@a:test", "D", 0, positions[2], 2)
		if err != nil || len(msgs) != 2 || msgs[0].Content != `{"i":0}` || msgs[1].StreamPos != positions[1] {
			t.Fatalf("first page: %+v %v", msgs, err)
		}
		if err := tx1(db, func(tx *Tx) error { return tx.InsertToDeviceTxn(ctx, "@b:test", "B", "t", 1) }); err != nil {
			t.Fatal(err)
		}
		if err := tx1(db, func(tx *Tx) error { return tx.InsertToDeviceTxn(ctx, "@b:test", "B", "t", 1) }); err != ErrConflict {
			t.Errorf("repeated txn: %v, want ErrConflict", err)
		}
		withTx(t, db, func(tx *Tx) error { return tx.DeleteToDeviceMessages(ctx, "@a:test", "D", positions[1]) })
		if has, _ := db.HasToDeviceMessagesUpTo(ctx, "@a:test", "D", positions[1]); has {
			t.Error("acknowledged messages are still there")
		}
		msgs, _ = db.ToDeviceMessages(ctx, "@a:test", "D", 0, positions[2], 10)
		if len(msgs) != 1 || msgs[0].StreamPos != positions[2] {
			t.Errorf("after the acknowledgement: %+v", msgs)
		}
		withTx(t, db, func(tx *Tx) error { _, err := tx.DeleteDeviceE2EE(ctx, "@a:test", "E"); return err })
		if msgs, _ := db.ToDeviceMessages(ctx, "@a:test", "E", 0, positions[2], 10); len(msgs) != 0 {
			t.Errorf("messages of a deleted device: %+v", msgs)
		}
	})
}

func tx1(db *DB, fn func(tx *Tx) error) error { return db.WithTx(context.Background(), fn) }

// TestBackupReplacement follows the spec's rule for keeping the better of two session keys.
func TestBackupReplacement(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openBackend(t, url)
		var v int64
		withTx(t, db, func(tx *Tx) (err error) { v, err = tx.CreateKeyBackupVersion(ctx, "@a:test", "alg", `{}`); return err })
		put := func(s BackupSession) {
			t.Helper()
			s.RoomID, s.SessionID = "!r:test", "s"
			withTx(t, db, func(tx *Tx) error { return tx.PutBackupSessions(ctx, "@a:test", v, []BackupSession{s}) })
		}
		stored := func() string {
			t.Helper()
			ss, err := db.BackupSessions(ctx, "@a:test", v, "!r:test", "s")
			if err != nil || len(ss) != 1 {
				t.Fatalf("sessions: %v %v", ss, err)
			}
			return ss[0].SessionData
		}
		put(BackupSession{FirstMessageIndex: 5, ForwardedCount: 1, SessionData: `{"n":1}`})
		for _, tc := range []struct {
			s    BackupSession
			want string
		}{
			{BackupSession{FirstMessageIndex: 6, ForwardedCount: 0, SessionData: `{"n":2}`}, `{"n":1}`},                   // higher index: kept
			{BackupSession{FirstMessageIndex: 5, ForwardedCount: 0, SessionData: `{"n":3}`}, `{"n":3}`},                   // lower forwarded count
			{BackupSession{FirstMessageIndex: 9, ForwardedCount: 9, IsVerified: true, SessionData: `{"n":4}`}, `{"n":4}`}, // verified wins
			{BackupSession{FirstMessageIndex: 0, ForwardedCount: 0, SessionData: `{"n":5}`}, `{"n":4}`},                   // unverified loses
			{BackupSession{FirstMessageIndex: 1, ForwardedCount: 0, IsVerified: true, SessionData: `{"n":6}`}, `{"n":6}`}, // lower index
		} {
			put(tc.s)
			if got := stored(); got != tc.want {
				t.Errorf("after %+v: stored %s, want %s", tc.s, got, tc.want)
			}
		}
		ver, err := db.KeyBackupVersion(ctx, "@a:test", v)
		if err != nil || ver.ETag != 4 {
			t.Errorf("etag after 4 replacements and 1 insert... got %+v %v, want 4", ver, err)
		}
	})
}
