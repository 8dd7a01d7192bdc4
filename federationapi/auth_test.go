package federationapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// TestXMatrix checks request authentication through a signed endpoint: only a request
// signed by the origin's current key, for this server, over what was sent, gets through.
func TestXMatrix(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	err := ts.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertAccount(ctx, storage.Account{UserID: "@alice:lattice.test", PasswordHash: "x", CreatedTS: 1}); err != nil {
			return err
		}
		return tx.SetProfile(ctx, "@alice:lattice.test", storage.Profile{DisplayName: "Alice"})
	})
	if err != nil {
		t.Fatal(err)
	}
	remote := newIdentity(t, "remote.test", "ed25519:r1")
	ts.cacheKeys(t, remote.keys(t, ts.now.Add(time.Hour)))
	// expired.test's key was replaced an hour ago: an old key verifies nothing new.
	expired := newIdentity(t, "expired.test", "ed25519:e1")
	err = ts.keys.StoreKeys(ctx, map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult{
		{ServerName: expired.name, KeyID: expired.keyID}: {VerifyKey: gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(expired.public())}, ExpiredTS: spec.AsTimestamp(ts.now.Add(-time.Hour))},
	})
	if err != nil {
		t.Fatal(err)
	}
	// stale.test's response ran out an hour ago, and the server cannot be reached.
	stale := newIdentity(t, "stale.test", "ed25519:s1")
	ts.cacheKeys(t, stale.keys(t, ts.now.Add(-time.Hour)))
	// fetched.test is not cached but answers: its key is fetched and cached.
	fetched := newIdentity(t, "fetched.test", "ed25519:f1")
	ts.fake.set(fetched.keys(t, ts.now.Add(time.Hour)))

	const uri = "/_matrix/federation/v1/query/profile?user_id=%40alice%3Alattice.test"
	forger := newIdentity(t, remote.name, remote.keyID) // same name and key ID, other key
	unknownKey := newIdentity(t, remote.name, "ed25519:unknown")
	tampered := signedRequest(t, remote, ourName, "GET", uri+"&field=avatar_url", nil)
	tampered.URL.RawQuery = "user_id=%40alice%3Alattice.test"
	noHeader := httptest.NewRequest("GET", uri, nil)
	tests := []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"good", func() *http.Request { return signedRequest(t, remote, ourName, "GET", uri, nil) }, 200},
		{"key fetched from the origin", func() *http.Request { return signedRequest(t, fetched, ourName, "GET", uri, nil) }, 200},
		{"bad signature", func() *http.Request { return signedRequest(t, forger, ourName, "GET", uri, nil) }, 401},
		{"wrong destination", func() *http.Request { return signedRequest(t, remote, "other.test", "GET", uri, nil) }, 401},
		{"unknown key", func() *http.Request { return signedRequest(t, unknownKey, ourName, "GET", uri, nil) }, 401},
		{"expired key", func() *http.Request { return signedRequest(t, expired, ourName, "GET", uri, nil) }, 401},
		{"stale key, origin unreachable", func() *http.Request { return signedRequest(t, stale, ourName, "GET", uri, nil) }, 401},
		{"uri changed after signing", func() *http.Request { return tampered }, 401},
		{"no Authorization header", func() *http.Request { return noHeader }, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := ts.do(t, tt.req())
			if code != tt.want {
				t.Fatalf("status %d %v, want %d", code, body, tt.want)
			}
			if tt.want == 401 && body["errcode"] != "M_UNAUTHORIZED" {
				t.Errorf("errcode %v, want M_UNAUTHORIZED", body["errcode"])
			}
			if tt.want == 200 && body["displayname"] != "Alice" {
				t.Errorf("profile %v", body)
			}
		})
	}
	got, err := ts.keys.FetchKeys(ctx, map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp{{ServerName: fetched.name, KeyID: fetched.keyID}: 0})
	if err != nil || len(got) != 1 {
		t.Errorf("fetched key not cached: %v, %v", got, err)
	}
}
