package storage

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// populateRTC fills the tables of migration 0025 for the port test.
func populateRTC(ctx context.Context, tx *Tx) error {
	if _, err := tx.exec(ctx, `INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ('h', '@alice:test', 9000)`); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `INSERT INTO delayed_events (delay_id, user_id, device_id, room_id, event_type, state_key,
		content, delay_ms, running_since, send_ts, status) VALUES ('d1', '@alice:test', 'DEV', '!room:test', 'm.rtc.member',
		'@alice:test', '{}', 1000, 5000, 6000, 'scheduled')`)
	return err
}

// TestOpenIDTokenExpiry: a token names its user until it expires, then nobody.
func TestOpenIDTokenExpiry(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.InsertOpenIDToken(ctx, "tok", "@alice:test", 2000, 1000); err != nil {
			t.Fatal(err)
		}
		if u, err := db.OpenIDUser(ctx, "tok", 2000); err != nil || u != "@alice:test" {
			t.Errorf("OpenIDUser before expiry = %q, %v", u, err)
		}
		if _, err := db.OpenIDUser(ctx, "tok", 2001); !errors.Is(err, ErrNotFound) {
			t.Errorf("OpenIDUser after expiry: %v, want ErrNotFound", err)
		}
		if _, err := db.OpenIDUser(ctx, "other", 1000); !errors.Is(err, ErrNotFound) {
			t.Errorf("OpenIDUser of an unknown token: %v, want ErrNotFound", err)
		}
		// Expired tokens go when the next one is made.
		if err := db.InsertOpenIDToken(ctx, "tok2", "@bob:test", 9000, 5000); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.queryRow(ctx, `SELECT COUNT(*) FROM openid_tokens`).Scan(&n); err != nil || n != 1 {
			t.Errorf("%d tokens kept (%v), want 1", n, err)
		}
	})
}

// TestDelayedEventClaims: a delayed event is claimed once when due, a claimed one again (a
// crash's retry), and a state write by another user cancels it while scheduled.
func TestDelayedEventClaims(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		sk := "@alice:test"
		d := &DelayedEvent{DelayID: "d1", UserID: "@alice:test", DeviceID: "DEV", RoomID: "!r:test", Type: "m.rtc.member",
			StateKey: &sk, Content: []byte(`{}`), DelayMS: 1000, RunningSince: 1000, SendTS: 2000}
		if ok, _, err := db.InsertDelayedEvent(ctx, d, 1, 0); err != nil || !ok {
			t.Fatalf("insert: %v %v", ok, err)
		}
		d2 := *d
		d2.DelayID = "d2"
		if ok, next, err := db.InsertDelayedEvent(ctx, &d2, 1, 0); err != nil || ok || next != 2000 {
			t.Errorf("insert over the limit: ok %v next %d err %v, want refused with next 2000", ok, next, err)
		}
		if _, err := db.ClaimDelayedEvent(ctx, "d1", 1999); !errors.Is(err, ErrNotFound) {
			t.Errorf("claim before its time: %v, want ErrNotFound", err)
		}
		if _, err := db.RestartDelayedEvent(ctx, "d1", 1500); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ClaimDelayedEvent(ctx, "d1", 2000); !errors.Is(err, ErrNotFound) {
			t.Errorf("claim at its old time after a restart: %v, want ErrNotFound", err)
		}
		if got, err := db.ClaimDelayedEvent(ctx, "d1", 2500); err != nil || got.Status != DelayedSending {
			t.Fatalf("claim when due: %+v %v", got, err)
		}
		if _, err := db.ClaimDelayedEvent(ctx, "d1", 0); err != nil {
			t.Errorf("claim of a claimed one (after a crash): %v", err)
		}
		if err := db.CancelDelayedEvent(ctx, "d1", 2600); !errors.Is(err, ErrNotFound) {
			t.Errorf("cancel of a claimed one: %v, want ErrNotFound", err)
		}
		if err := db.FinishDelayedEvent(ctx, "d1", DelayedSent, "delay", "$ev", nil, 2600); err != nil {
			t.Fatal(err)
		}
		// Another user's state write cancels a scheduled one; the same user's does not.
		d3 := d2
		d3.DelayID = "d3"
		if ok, _, err := db.InsertDelayedEvent(ctx, &d3, 1, 0); err != nil || !ok {
			t.Fatalf("insert: %v %v", ok, err)
		}
		for _, sender := range []string{"@alice:test", "@bob:test"} {
			if err := db.WithTx(ctx, func(tx *Tx) error {
				return tx.CancelDelayedStateBy(ctx, "!r:test", "m.rtc.member", sk, sender, 3000)
			}); err != nil {
				t.Fatal(err)
			}
			got, err := db.DelayedEvent(ctx, "d3")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"@alice:test": DelayedScheduled, "@bob:test": DelayedCancelled}[sender]
			if got.Status != want {
				t.Errorf("after a state write by %s: status %s, want %s", sender, got.Status, want)
			}
		}
		// A repeated transaction ID of the same device gets the first delay ID back.
		t1 := DelayedEvent{DelayID: "t1", UserID: "@carol:test", DeviceID: "C", RoomID: "!r:test", Type: "m.room.message",
			Content: []byte(`{}`), DelayMS: 1000, RunningSince: 1000, SendTS: 2000, TxnID: "txn"}
		t2 := t1
		t2.DelayID = "t2"
		for _, d := range []*DelayedEvent{&t1, &t2} {
			if ok, _, err := db.InsertDelayedEvent(ctx, d, 5, 0); err != nil || !ok {
				t.Fatalf("insert: %v %v", ok, err)
			}
		}
		if t2.DelayID != "t1" {
			t.Errorf("retried transaction got delay ID %s, want t1", t2.DelayID)
		}
		page, err := db.DelayedEventsOfUser(ctx, "@alice:test", DelayedFilter{Status: "finalised"}, 0, 10)
		if err != nil || len(page) != 2 {
			t.Errorf("finalised: %d, %v; want 2", len(page), err)
		}
		for _, c := range []struct {
			f    DelayedFilter
			want []string
		}{
			{DelayedFilter{Outcome: "send"}, []string{"d1"}},
			{DelayedFilter{Outcome: "error"}, []string{"d3"}},
			{DelayedFilter{Outcome: "cancel"}, nil},
			{DelayedFilter{Reason: "delay"}, []string{"d1"}},
			{DelayedFilter{RoomID: "!other:test"}, nil},
			{DelayedFilter{Type: "m.rtc.member", OrderBy: "running_since", Backward: true}, []string{"d1", "d3"}},
			{DelayedFilter{Type: "m.rtc.member", OrderBy: "running_since"}, []string{"d3", "d1"}},
		} {
			page, err := db.DelayedEventsOfUser(ctx, "@alice:test", c.f, 0, 10)
			var got []string
			for _, d := range page {
				got = append(got, d.DelayID)
			}
			if err != nil || strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("%+v: %v %v, want %v", c.f, got, err, c.want)
			}
		}
	})
}
