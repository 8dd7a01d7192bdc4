package storage

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

type lookup = gomatrixserverlib.PublicKeyLookupRequest
type result = gomatrixserverlib.PublicKeyLookupResult

func TestServerKeyCache(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := Open(ctx, url, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		now := time.UnixMilli(1_000_000)
		cache := db.ServerKeyCache(func() time.Time { return now })
		keyA := gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes("0123456789abcdef0123456789abcdef")}
		keyB := gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes("fedcba9876543210fedcba9876543210")}
		a1 := lookup{ServerName: "a.test", KeyID: "ed25519:1"}
		a2 := lookup{ServerName: "a.test", KeyID: "ed25519:2"}
		b1 := lookup{ServerName: "b.test", KeyID: "ed25519:1"}

		// Empty cache: nothing found, no error.
		got, err := cache.FetchKeys(ctx, map[lookup]spec.Timestamp{a1: 1})
		if err != nil || len(got) != 0 {
			t.Fatalf("empty cache: %v, %v", got, err)
		}
		if _, err := cache.LatestServerKeyResponse(ctx, "a.test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("response from an empty cache: %v, want ErrNotFound", err)
		}

		// A signed response stores its current and old keys with the response.
		raw := `{"server_name":"a.test","valid_until_ts":5000000,"verify_keys":{"ed25519:1":{"key":"` + keyA.Key.Encode() +
			`"}},"old_verify_keys":{"ed25519:2":{"key":"` + keyB.Key.Encode() + `","expired_ts":900000}}}`
		var keys gomatrixserverlib.ServerKeys
		if err := json.Unmarshal([]byte(raw), &keys); err != nil {
			t.Fatal(err)
		}
		if err := cache.StoreServerKeys(ctx, keys); err != nil {
			t.Fatal(err)
		}
		// A key learnt without a response (the keyring's StoreKeys).
		if err := cache.StoreKeys(ctx, map[lookup]result{b1: {VerifyKey: keyB, ValidUntilTS: 7000000}}); err != nil {
			t.Fatal(err)
		}
		got, err = cache.FetchKeys(ctx, map[lookup]spec.Timestamp{a1: 1, a2: 1, b1: 1, {ServerName: "c.test", KeyID: "ed25519:1"}: 1})
		if err != nil {
			t.Fatal(err)
		}
		want := map[lookup]result{
			a1: {VerifyKey: keyA, ValidUntilTS: 5000000},
			a2: {VerifyKey: keyB, ExpiredTS: 900000},
			b1: {VerifyKey: keyB, ValidUntilTS: 7000000},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("cached keys (-want +got):\n%s", diff)
		}
		resp, err := cache.LatestServerKeyResponse(ctx, "a.test")
		if err != nil || string(resp) != raw {
			t.Errorf("response of a.test: %s, %v", resp, err)
		}
		if _, err := cache.LatestServerKeyResponse(ctx, "b.test"); !errors.Is(err, ErrNotFound) {
			t.Errorf("b.test has no signed response, got %v", err)
		}

		// The keyring stores what it used again: the response is kept, validity never shrinks.
		if err := cache.StoreKeys(ctx, map[lookup]result{a1: {VerifyKey: keyA, ValidUntilTS: 4000000}}); err != nil {
			t.Fatal(err)
		}
		got, err = cache.FetchKeys(ctx, map[lookup]spec.Timestamp{a1: 1})
		if err != nil || got[a1].ValidUntilTS != 5000000 {
			t.Errorf("after storing a staler copy: %+v, %v; want valid_until_ts 5000000", got[a1], err)
		}
		if resp, err := cache.LatestServerKeyResponse(ctx, "a.test"); err != nil || string(resp) != raw {
			t.Errorf("response after StoreKeys: %s, %v", resp, err)
		}

		// The key expires: it stays, marked expired.
		if err := cache.StoreKeys(ctx, map[lookup]result{a1: {VerifyKey: keyA, ExpiredTS: 6000000}}); err != nil {
			t.Fatal(err)
		}
		got, err = cache.FetchKeys(ctx, map[lookup]spec.Timestamp{a1: 1})
		if err != nil || got[a1].ExpiredTS != 6000000 {
			t.Errorf("expired key: %+v, %v", got[a1], err)
		}
		var fetched int64
		if err := db.queryRow(ctx, `SELECT fetched_ts FROM server_keys WHERE server_name = 'a.test' AND key_id = 'ed25519:1'`).Scan(&fetched); err != nil || fetched != now.UnixMilli() {
			t.Errorf("fetched_ts %d (%v), want %d", fetched, err, now.UnixMilli())
		}
	})
}
