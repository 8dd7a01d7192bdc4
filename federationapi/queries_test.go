package federationapi

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage"
)

// TestSignedQueries drives the authenticated queries through the router with a signed
// request each: directory, public rooms, device list, key query and claim.
func TestSignedQueries(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	const alice = "@alice:lattice.test"
	err := ts.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertAccount(ctx, storage.Account{UserID: alice, PasswordHash: "x", CreatedTS: 1}); err != nil {
			return err
		}
		if err := tx.UpsertDevice(ctx, storage.Device{UserID: alice, DeviceID: "PHONE", DisplayName: "Alice's phone"}, "hash"); err != nil {
			return err
		}
		if err := tx.UpsertDevice(ctx, storage.Device{UserID: alice, DeviceID: "NOKEYS"}, "hash2"); err != nil {
			return err
		}
		if _, err := tx.SetDeviceKeys(ctx, alice, "PHONE", `{"device_id":"PHONE","user_id":"@alice:lattice.test"}`); err != nil {
			return err
		}
		if err := tx.AddOneTimeKeys(ctx, alice, "PHONE", []storage.OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "AAAA", KeyJSON: `{"key":"k1"}`}}); err != nil {
			return err
		}
		if err := tx.SetCrossSigningKey(ctx, alice, storage.KeyMaster, `{"user_id":"@alice:lattice.test","keys":{"ed25519:M":"M"}}`); err != nil {
			return err
		}
		// A signature by alice is shared; one by another user is not.
		if err := tx.AddKeySignature(ctx, storage.KeySignature{TargetUserID: alice, TargetKeyID: "M", SignerUserID: alice, SignerKeyID: "ed25519:PHONE", Signature: "own"}); err != nil {
			return err
		}
		if err := tx.AddKeySignature(ctx, storage.KeySignature{TargetUserID: alice, TargetKeyID: "M", SignerUserID: "@bob:lattice.test", SignerKeyID: "ed25519:B", Signature: "bobs"}); err != nil {
			return err
		}
		nid, err := tx.InsertRoom(ctx, "!room:lattice.test", "12", 1)
		if err != nil {
			return err
		}
		if err := tx.SetRoomVisibility(ctx, nid, "public"); err != nil {
			return err
		}
		return tx.InsertAlias(ctx, "#room:lattice.test", "!room:lattice.test", alice)
	})
	if err != nil {
		t.Fatal(err)
	}
	remote := newIdentity(t, "remote.test", "ed25519:r1")
	ts.cacheKeys(t, remote.keys(t, ts.now.Add(time.Hour)))
	master := map[string]any{"user_id": alice, "keys": map[string]any{"ed25519:M": "M"},
		"signatures": map[string]any{alice: map[string]any{"ed25519:PHONE": "own"}}}
	phone := map[string]any{"device_id": "PHONE", "user_id": alice}

	tests := []struct {
		name, method, uri string
		content           any
		wantStatus        int
		want              map[string]any
	}{
		{"directory", "GET", "/_matrix/federation/v1/query/directory?room_alias=%23room%3Alattice.test", nil, 200,
			map[string]any{"room_id": "!room:lattice.test", "servers": []any{"lattice.test"}}},
		{"directory, unknown alias", "GET", "/_matrix/federation/v1/query/directory?room_alias=%23nope%3Alattice.test", nil, 404,
			map[string]any{"errcode": "M_NOT_FOUND", "error": "room alias not found"}},
		{"public rooms", "GET", "/_matrix/federation/v1/publicRooms?limit=5", nil, 200,
			map[string]any{"total_room_count_estimate": 1.0, "chunk": []any{map[string]any{"room_id": "!room:lattice.test",
				"num_joined_members": 0.0, "world_readable": false, "guest_can_join": false, "join_rule": "public"}}}},
		{"public rooms, filtered", "POST", "/_matrix/federation/v1/publicRooms", map[string]any{"filter": map[string]any{"generic_search_term": "other"}}, 200,
			map[string]any{"total_room_count_estimate": 0.0, "chunk": []any{}}},
		{"devices", "GET", "/_matrix/federation/v1/user/devices/%40alice%3Alattice.test", nil, 200,
			map[string]any{"user_id": alice, "stream_id": 0.0, "devices": []any{map[string]any{"device_id": "PHONE", "keys": phone}}, "master_key": master}},
		{"keys query", "POST", "/_matrix/federation/v1/user/keys/query", map[string]any{"device_keys": map[string]any{alice: []any{}, "@x:remote.test": []any{}}}, 200,
			map[string]any{"device_keys": map[string]any{alice: map[string]any{"PHONE": phone}}, "master_keys": map[string]any{alice: master}, "self_signing_keys": map[string]any{}}},
		{"keys claim", "POST", "/_matrix/federation/v1/user/keys/claim", map[string]any{"one_time_keys": map[string]any{alice: map[string]any{"PHONE": "signed_curve25519"}}}, 200,
			map[string]any{"one_time_keys": map[string]any{alice: map[string]any{"PHONE": map[string]any{"signed_curve25519:AAAA": map[string]any{"key": "k1"}}}}}},
		{"keys claim again: none left", "POST", "/_matrix/federation/v1/user/keys/claim", map[string]any{"one_time_keys": map[string]any{alice: map[string]any{"PHONE": "signed_curve25519"}}}, 200,
			map[string]any{"one_time_keys": map[string]any{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := ts.do(t, signedRequest(t, remote, ourName, tt.method, tt.uri, tt.content))
			if code != tt.wantStatus {
				t.Fatalf("status %d %v, want %d", code, body, tt.wantStatus)
			}
			if diff := cmp.Diff(tt.want, body); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}
