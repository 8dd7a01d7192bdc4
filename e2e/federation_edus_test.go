package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestFederationEDUs: between two servers sharing a room, typing notifications, read
// receipts, to-device messages and device list changes of one server's users reach the
// other's /sync, and /keys/query and /keys/claim reach the other server's users' keys.
func TestFederationEDUs(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	if r := joinRoom(bob, roomID, a.Name); r.Status != 200 {
		t.Fatalf("bob joining over federation: %d %s", r.Status, r.Raw)
	}
	since := bob.Sync("", "", 0).Body["next_batch"].(string)
	// waitFor syncs as c until found reports true for a response, or fails.
	waitFor := func(c *Client, since *string, what string, found func(Resp) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			r := c.Sync(*since, "", 2000)
			*since = r.Body["next_batch"].(string)
			if found(r) {
				return
			}
		}
		t.Fatalf("%s never reached %s's /sync", what, c.UserID)
	}
	ephemeralOf := func(r Resp) []event {
		return list(obj(obj(r.Body, "rooms", "join"), roomID, "ephemeral"), "events")
	}

	alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/typing/"+esc(alice.UserID), map[string]any{"typing": true, "timeout": 20000})
	waitFor(bob, &since, "alice's typing", func(r Resp) bool {
		for _, e := range onlyType(ephemeralOf(r), "m.typing") {
			users, _ := obj(e, "content")["user_ids"].([]any)
			if slices.Contains(users, any(alice.UserID)) {
				return true
			}
		}
		return false
	})

	eventID := alice.Send(roomID, "read me")
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/receipt/m.read/"+esc(eventID), map[string]any{})
	waitFor(bob, &since, "alice's read receipt", func(r Resp) bool {
		for _, e := range onlyType(ephemeralOf(r), "m.receipt") {
			if obj(e, "content", eventID, "m.read", alice.UserID) != nil {
				return true
			}
		}
		return false
	})

	sendToDevice(alice, "m.fed_test", "edu1", map[string]any{bob.UserID: map[string]any{"*": map[string]any{"n": 1}}})
	waitFor(bob, &since, "alice's to-device message", func(r Resp) bool {
		for _, e := range toDeviceEvents(r) {
			if evType(e) == "m.fed_test" && str(e, "sender") == alice.UserID {
				return true
			}
		}
		return false
	})

	// Bob's new keys: alice sees bob in device_lists.changed, then queries and claims them.
	aliceSince := alice.Sync("", "", 0).Body["next_batch"].(string)
	key := newSigningKey(t)
	if r := uploadKeys(bob, map[string]any{"device_keys": deviceKeys(t, bob, key), "one_time_keys": otks(t, bob, key, "K", 1)}); r.Status != 200 {
		t.Fatalf("bob's key upload: %d %s", r.Status, r.Raw)
	}
	waitFor(alice, &aliceSince, "bob's device list change", func(r Resp) bool {
		changed, _ := obj(r.Body, "device_lists")["changed"].([]any)
		return slices.Contains(changed, any(bob.UserID))
	})
	q := queryKeys(alice, map[string][]string{bob.UserID: {}})
	got, _ := json.Marshal(obj(q.Body, "device_keys", bob.UserID, bob.DeviceID)["keys"])
	if want := fmt.Sprintf(`{"curve25519:%[1]s":"curve-%[1]s","ed25519:%[1]s":"%[2]s"}`, bob.DeviceID, key.pub); string(got) != want {
		t.Errorf("bob's keys through A: %s, want %s (response %s)", got, want, q.Raw)
	}
	if f := obj(q.Body, "failures"); len(f) != 0 {
		t.Errorf("query failures: %v", f)
	}
	if id, _ := claimOne(alice, bob); id != "signed_curve25519:K0" {
		t.Errorf("claimed %q of bob's keys through A, want signed_curve25519:K0", id)
	}
}
